"""TFDS builders: bundled sets read back exactly, labels, versions, safe concurrent preparation."""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.data.helpers import config
from vqlearn import data
from vqlearn.data import storage, ucr

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["GunPoint", "JapaneseVowels", "BasicMotions"])
def test_bundled_set_reads_back_what_aeon_returns(tmp_path, name):
  from aeon.datasets import load_classification

  for split in ("train", "test"):
    x, y = load_classification(name, split=split)
    got = data.load_split(config(tmp_path, name=name), split)
    assert got.series.shape[0] == len(x) and got.name == name
    for i, xi in enumerate(x):  # aeon gives (C, T_i); we store channels last, float32
      length = xi.shape[1]
      np.testing.assert_array_equal(got.series[i, :length], xi.T.astype(np.float32))
      assert got.mask[i].sum() == length and got.mask[i, :length].all()
      assert not got.series[i, length:].any()
    assert [got.label_names[k] for k in got.labels] == [str(v) for v in y]
    np.testing.assert_array_equal(got.series_index, np.arange(len(x)))


def test_label_names_sort_numerically_and_live_in_metadata(tmp_path):
  b = ucr.builder("PickupGestureWiimoteZ", str(tmp_path))
  names = b.info.metadata["label_names"]
  assert names == [str(k) for k in range(1, 11)]  # '10' after '9', not after '1'
  # The prepared directory is self-describing: readable without our builder class.
  again = tfds.builder_from_directory(b.data_dir)
  assert again.info.metadata["label_names"] == names
  assert len(again.as_data_source(split="train")) == 50
  # The builder is registered, so TFDS's own entry point reads it too.
  source = tfds.data_source("ucr_uea/PickupGestureWiimoteZ", data_dir=str(tmp_path),
                            download=False)
  assert len(source["test"]) == 50


def test_on_disk_layout_and_data_dir_resolution(tmp_path, monkeypatch):
  data.load_split(config(tmp_path, name="GunPoint"), "test")
  version_dir = tmp_path / "ucr_uea" / "GunPoint" / str(ucr.UcrUea.VERSION)
  assert (version_dir / "dataset_info.json").exists()
  assert sorted(p.name for p in version_dir.glob("*.array_record*")) == [
      "ucr_uea-test.array_record-00000-of-00001", "ucr_uea-train.array_record-00000-of-00001"]
  monkeypatch.setenv(storage.ENV_DATA_DIR, str(tmp_path / "env"))
  assert storage.resolve_data_dir("") == tmp_path / "env"
  assert storage.resolve_data_dir(str(tmp_path / "cfg")) == tmp_path / "cfg"
  monkeypatch.delenv(storage.ENV_DATA_DIR)
  assert storage.resolve_data_dir("") == pathlib.Path("~/.cache/vqlearn/tfds").expanduser()


def test_version_bump_prepares_a_new_directory(tmp_path, monkeypatch):
  old = data.load_split(config(tmp_path, name="ItalyPowerDemand"), "train")
  monkeypatch.setattr(ucr.UcrUea, "VERSION", tfds.core.Version("1.0.1"))
  new = data.load_split(config(tmp_path, name="ItalyPowerDemand"), "train")
  versions = sorted(p.name for p in (tmp_path / "ucr_uea" / "ItalyPowerDemand").iterdir()
                    if not p.name.startswith("."))
  assert versions == ["1.0.0", "1.0.1"]
  np.testing.assert_array_equal(old.series, new.series)


def test_mixture_offsets_labels_and_needs_split_channels(tmp_path):
  cfg = config(tmp_path, name="GunPoint+ArrowHead")
  mix = data.load_split(cfg, "train")
  gun = data.load_split(config(tmp_path, name="GunPoint"), "train")
  arrow = data.load_split(config(tmp_path, name="ArrowHead"), "train")
  assert mix.label_names == tuple(f"GunPoint:{n}" for n in gun.label_names) + tuple(
      f"ArrowHead:{n}" for n in arrow.label_names)
  np.testing.assert_array_equal(mix.labels, np.concatenate([gun.labels, arrow.labels + 2]))
  np.testing.assert_array_equal(mix.series_index, np.arange(36 + 50))
  np.testing.assert_array_equal(mix.series[50:, :251], arrow.series)
  with pytest.raises(ValueError, match="config.data.split_channels"):
    data.load_split(config(tmp_path, name="GunPoint+BasicMotions"), "train")
  split = data.load_split(config(tmp_path, name="GunPoint+BasicMotions", split_channels=True),
                          "test")
  assert split.series.shape == (150 + 40 * 6, 150, 1)


def test_nan_in_a_bundled_set_names_the_set_and_series(tmp_path, monkeypatch):
  real = ucr.load_aeon

  def with_nan(name, split):
    series, labels = real(name, split)
    series[3] = series[3].copy()
    series[3][5, 0] = np.nan
    return series, labels

  monkeypatch.setattr(ucr, "load_aeon", with_nan)
  with pytest.raises(ValueError, match=r"ItalyPowerDemand \(train split\): series 3 .*NaN"):
    data.load_split(config(tmp_path, name="ItalyPowerDemand"), "train")
  assert not (tmp_path / "ucr_uea" / "ItalyPowerDemand" / "1.0.0").exists()


# ----------------------------------------------------------------------------------------------
# Preparation mechanics, on a tiny synthetic builder that counts how often it generates.
# ----------------------------------------------------------------------------------------------

class Counting(storage.SeriesBuilder, skip_registration=True):
  """Three short series; appends a line to <data_dir>/generated.txt each time it generates."""

  name = "counting"
  VERSION = tfds.core.Version("1.0.0")
  FAIL_AT = None  # series index at which generation crashes, to test atomicity

  def _load_splits(self):
    log = pathlib.Path(self.data_dir_root) / "generated.txt"
    with open(log, "a") as f:
      f.write("x\n")
    series = [np.full((t, 1), t, np.float32) for t in (2, 3, 4)]
    return {"train": (series, ["a", "b", "a"])}

  def _generate_examples(self, series, labels):
    for i, example in enumerate(super()._generate_examples(series, labels)):
      if i == self.FAIL_AT:
        raise RuntimeError("killed mid-way")
      yield example


# Each child imports, says it is ready, and starts preparing when the test says go, so the
# three preparations really overlap. Subprocesses, not fork: forking a process that already
# runs tfds/grain threads can crash the child.
CHILD = """
import json, pathlib, sys, time
from tests.data.test_builders import Counting
from vqlearn.data import storage
data_dir, flags = sys.argv[1], pathlib.Path(sys.argv[2])
(flags / f"ready-{sys.argv[3]}").touch()
while not (flags / "go").exists():
  time.sleep(0.005)
b = storage.prepare(lambda: Counting(data_dir=data_dir))
print(json.dumps([x.tolist() for x in storage.read_split(b, "train").series]))
"""


def test_concurrent_processes_prepare_once(tmp_path):
  flags = tmp_path / "flags"
  flags.mkdir()
  env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "d"), str(flags),
                             str(k)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for k in range(3)]
  deadline = time.time() + 60
  while len(list(flags.glob("ready-*"))) < 3 and time.time() < deadline:
    if any(p.poll() not in (None, 0) for p in procs):
      break
    time.sleep(0.01)
  (flags / "go").touch()
  outputs = [p.communicate(timeout=60) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-2000:]
  assert (tmp_path / "d" / "generated.txt").read_text().count("x") == 1
  expected = [[[2.0]] * 2, [[3.0]] * 3, [[4.0]] * 4]
  # The last line: tfds prints its own progress lines to stdout before it.
  assert all(json.loads(out.splitlines()[-1]) == expected for out, _ in outputs)


def test_crashed_preparation_leaves_nothing_that_loads(tmp_path, monkeypatch):
  monkeypatch.setattr(Counting, "FAIL_AT", 2)
  with pytest.raises(RuntimeError, match="killed"):
    storage.prepare(lambda: Counting(data_dir=str(tmp_path)))
  assert not storage.is_prepared(Counting(data_dir=str(tmp_path)))
  # A SIGKILLed run leaves its temporary directory behind; the next preparation removes it.
  stale = tmp_path / "counting" / "incomplete.abc123_1.0.0"
  stale.mkdir(parents=True)
  (stale / "counting-train.array_record-00000-of-00001").write_bytes(b"junk")
  monkeypatch.setattr(Counting, "FAIL_AT", None)
  b = storage.prepare(lambda: Counting(data_dir=str(tmp_path)))
  assert not stale.exists()
  raw = storage.read_split(b, "train")
  assert [len(x) for x in raw.series] == [2, 3, 4] and raw.label_names == ("a", "b")
  np.testing.assert_array_equal(raw.labels, [0, 1, 0])
  # Prepared once: later calls reuse it.
  storage.prepare(lambda: Counting(data_dir=str(tmp_path)))
  assert (tmp_path / "generated.txt").read_text().count("x") == 2  # crash + success
