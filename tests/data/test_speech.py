"""Speech data: FSDD and folder builders read back what they wrote, the TTS corpus and its
voice split, padding masks, the iterator's determinism, and clear errors for bad audio."""

import csv
import pathlib
import shutil

import ml_collections
import numpy as np
import pytest
import soundfile
from scipy import signal

from vqlearn.data import preprocess, speech, tts


def config(data_dir, **fields):
  base = dict(name="files", path="", labels="", sample_rate=16000, resample=True,
              test_fraction=0.2, crop=0, dir=str(data_dir))
  base.update(fields)
  return ml_collections.ConfigDict(base)


def tone(seconds, rate, freq, amplitude=0.5):
  t = np.arange(int(seconds * rate)) / rate
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_folder(root: pathlib.Path):
  """Six clips (two speakers per split, WAV and FLAC, one stereo, one at 8 kHz) + labels."""
  folder = root / "clips"
  folder.mkdir(parents=True)
  rows = []
  for i, (speaker, split) in enumerate([("ann", "train"), ("ann", "train"), ("bob", "train"),
                                        ("bob", "train"), ("cy", "test"), ("cy", "test")]):
    name = f"{speaker}_{i}" + (".flac" if i == 1 else ".wav")
    x = tone(0.05 + 0.01 * i, 16000, 200 + 50 * i)
    if i == 2:
      x = np.stack([x, -0.5 * x], axis=1)  # stereo: mono is the mean, 0.25 x
    if i == 3:
      soundfile.write(folder / name, tone(0.05, 8000, 300), 8000, subtype="PCM_16")
    else:
      soundfile.write(folder / name, x, 16000, subtype="PCM_16")
    rows.append([name, str(i % 2), speaker, split])
  labels = root / "labels.csv"
  with open(labels, "w", newline="") as f:
    csv.writer(f).writerows([["file", "label", "speaker", "split"]] + rows)
  return folder, labels, rows


def test_fsdd_reads_back_sequentias_mfccs(tmp_path):
  with np.load(speech.fsdd_path()) as z:
    x, lengths, y = z["X"], z["lengths"], z["y"]
  sequences = np.split(x, np.cumsum(lengths)[:-1])
  train_index, test_index = preprocess.stratified_split(y, 0.2, speech.SPLIT_SEED)
  assert len(test_index) == 600 and not set(train_index) & set(test_index)
  for split, index in (("train", train_index), ("test", test_index)):
    got = speech.load_split(config(tmp_path, name="fsdd_mfcc"), split)
    assert got.kind == "features" and got.rate == 100 and got.series.shape[2] == 13
    assert (got.speakers == -1).all()  # digits.npz has no speaker ids
    for row, i in enumerate(index[:50]):
      n = lengths[i]
      np.testing.assert_array_equal(got.series[row, :n], sequences[i])
      assert got.mask[row].sum() == n and not got.series[row, n:].any()
    assert [int(got.label_names[k]) for k in got.labels] == y[index].tolist()


def test_folder_import_reads_back_resamples_and_downmixes(tmp_path):
  folder, labels, rows = write_folder(tmp_path)
  cfg = config(tmp_path, path=str(folder), labels=str(labels))
  train = speech.load_split(cfg, "train", pad_multiple=160)
  test = speech.load_split(cfg, "test", pad_multiple=160)
  assert train.series.shape[1] % 160 == 0 and len(train.series) == 4 and len(test.series) == 2
  assert [train.speaker_names[s] for s in train.speakers] == ["ann", "ann", "bob", "bob"]
  assert {test.speaker_names[s] for s in test.speakers} == {"cy"}
  for row, (name, label, _, _) in enumerate(rows[:4]):
    x, rate = soundfile.read(folder / name, dtype="float32", always_2d=True)
    expected = x.mean(axis=1)
    if rate != 16000:
      expected = signal.resample_poly(expected.astype(np.float64), 2, 1).astype(np.float32)
    n = len(expected)
    assert train.mask[row].sum() == n
    np.testing.assert_allclose(train.series[row, :n, 0], expected, atol=1e-6)
    assert train.label_names[train.labels[row]] == label
  assert train.rate == 16000 and train.kind == "waveform"


def test_folder_without_split_column_holds_out_whole_speakers(tmp_path):
  folder, labels, rows = write_folder(tmp_path)
  with open(labels, "w", newline="") as f:  # drop the split column
    csv.writer(f).writerows([["file", "label", "speaker"]] + [r[:3] for r in rows])
  cfg = config(tmp_path, path=str(folder), labels=str(labels), test_fraction=0.34)
  train, test = (speech.load_split(cfg, s) for s in ("train", "test"))
  names = lambda s: {s.speaker_names[i] for i in s.speakers}
  assert names(test) and not names(train) & names(test)  # every 3rd speaker in sorted order
  assert names(test) == {"cy"}


def test_a_changed_clip_prepares_a_new_dataset(tmp_path):
  folder, labels, _ = write_folder(tmp_path)
  cfg = config(tmp_path, path=str(folder), labels=str(labels))
  before = speech.builder(cfg).data_dir
  soundfile.write(folder / "cy_4.wav", tone(0.2, 16000, 500), 16000, subtype="PCM_16")
  after = speech.builder(cfg)
  assert after.data_dir != before
  assert speech.load_split(cfg, "test").mask.sum(axis=1).max() == 3200


def test_train_iterator_pads_to_the_hop_and_ignores_process_count(tmp_path):
  folder, labels, _ = write_folder(tmp_path)
  cfg = config(tmp_path, path=str(folder), labels=str(labels))
  one = speech.train_iterator(cfg, global_batch_size=4, seed=3, pad_multiple=160)
  halves = [speech.train_iterator(cfg, global_batch_size=4, seed=3, pad_multiple=160,
                                  process_index=p, process_count=2) for p in range(2)]
  for _ in range(3):  # crosses an epoch boundary (4 training clips)
    batch = next(one)
    parts = [next(h) for h in halves]
    assert batch["series"].shape[1] % 160 == 0
    for key in batch:
      np.testing.assert_array_equal(batch[key], np.concatenate([p[key] for p in parts]))
    lengths = batch["mask"].sum(axis=1).astype(int)
    for row, n in enumerate(lengths):
      assert batch["mask"][row, :n].all() and not batch["series"][row, n:].any()


def test_bad_audio_gives_clear_errors(tmp_path):
  bad = tmp_path / "bad.wav"
  bad.write_bytes(b"this is not audio")
  with pytest.raises(ValueError, match=r"bad\.wav: could not read it as audio"):
    speech.read_audio(bad, 16000, True)
  empty = tmp_path / "empty.wav"
  soundfile.write(empty, np.zeros((0,), np.float32), 16000)
  with pytest.raises(ValueError, match=r"empty\.wav: the clip is empty"):
    speech.read_audio(empty, 16000, True)
  slow = tmp_path / "slow.wav"
  soundfile.write(slow, tone(0.01, 8000, 100), 8000)
  with pytest.raises(ValueError, match=r"slow\.wav: sample rate 8000 Hz differs from "
                                       r"config\.data\.sample_rate = 16000 Hz; set "
                                       r"config\.data\.resample=True"):
    speech.read_audio(slow, 16000, False)
  # Inside a folder import the error comes before anything is written.
  folder, labels, _ = write_folder(tmp_path / "f")
  shutil.copy(bad, folder / "ann_0.wav")
  with pytest.raises(ValueError, match="ann_0.wav: could not read"):
    speech.load_split(config(tmp_path, path=str(folder), labels=str(labels)), "train")
  assert not (tmp_path / "audio_folder").exists()


@pytest.mark.parametrize("field,value,message", [
    ("name", "librispeech", "config.data.name must be one of"),
    ("path", "", "config.data.path must be a folder"),
    ("resample", "yes", "config.data.resample must be True or False"),
    ("test_fraction", 1.0, r"config.data.test_fraction must be a number in \(0, 1\)"),
])
def test_config_errors_name_the_field(tmp_path, field, value, message):
  fields = {"name": "fsdd_mfcc"} if field != "path" else {}
  with pytest.raises(ValueError, match=message):
    speech.check_config(config(tmp_path, **(fields | {field: value})))


def test_missing_tts_tools_say_what_to_install():
  with pytest.raises(RuntimeError, match=r"needs espeak-ng, sox on PATH.*apt-get install -y "
                                         r"espeak-ng sox"):
    tts.check_tools(which=lambda tool: None if tool != "flite" else "/usr/bin/flite")


def test_tts_recipe_holds_out_test_voices():
  clips = tts.recipe()
  speakers = {split: {c.speaker for c in clips if c.split == split} for split in ("train", "test")}
  assert speakers["train"] and speakers["test"] and not speakers["train"] & speakers["test"]
  assert len(speakers["train"]) + len(speakers["test"]) == (
      len(tts.ESPEAK_ACCENTS) * len(tts.ESPEAK_VARIANTS) + len(tts.FLITE_VOICES))
  for speaker in speakers["train"] | speakers["test"]:  # every voice says every digit
    assert {c.digit for c in clips if c.speaker == speaker} == set(range(10))


@pytest.mark.skipif(any(shutil.which(t) is None for t in tts.TOOLS),
                    reason="espeak-ng, flite and sox are not installed")
def test_tts_generation_writes_trimmed_16khz_mono(tmp_path):
  clips = tts.recipe()
  chosen = [clips[0], next(c for c in clips if c.command[0] == "flite")]
  labels = tts.generate(tmp_path, clips=chosen)
  rows = list(csv.DictReader(open(labels)))
  assert [r["speaker"] for r in rows] == [c.speaker for c in chosen]
  for row in rows:
    x, rate = soundfile.read(tmp_path / row["file"], always_2d=True)
    assert rate == 16000 and x.shape[1] == 1 and 0.1 < len(x) / rate < 1.5
    assert np.abs(x[:16]).max() > 0.005  # leading silence trimmed (sox: below 1% of full scale)
