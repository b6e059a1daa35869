"""EEG data: the spkit builder, EDF/BDF/FIF round trips, montages, preprocessing, errors,
windows and the training iterator."""

import ml_collections
import numpy as np
import pytest
import spkit

from vqlearn.data import eeg

EMOTIV = ("AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("eeg_tfds"))


def config(data_dir, **fields):
  return ml_collections.ConfigDict({"name": "spkit", "dir": data_dir, **fields})


def spkit_recording(montage="standard_1005", channels=EMOTIV, extra=()) -> eeg.Recording:
  """The spkit 14-channel sample as a Recording (positions from ``montage``), a subset or
  reordering of its channels, plus ``extra`` (name, type, signal) channels."""
  x, rate, names = spkit.data.eeg_sample_14ch()
  index = [names.index(c) for c in channels]
  table = eeg.montage_positions(montage)
  signal = [x[:, index].astype(np.float32)] + [s[:, None].astype(np.float32) for *_, s in extra]
  return eeg.Recording(
      signal=np.concatenate(signal, axis=1), sample_rate=float(rate),
      channel_names=tuple(channels) + tuple(n for n, *_ in extra),
      channel_types=("eeg",) * len(channels) + tuple(t for _, t, _ in extra),
      positions=np.concatenate([np.stack([table[c.lower()] for c in channels]),
                                np.full((len(extra), 3), np.nan, np.float32)]),
      source="test")


def test_spkit_builder_stores_what_spkit_ships(data_dir):
  builder = eeg.storage.prepare(lambda: eeg.SpkitEeg(config="spkit", data_dir=data_dir))
  stored = eeg.read_recordings(builder)
  x, rate, names = spkit.data.eeg_sample_14ch()
  artifact = spkit.data.eeg_sample_artifact()
  expected = [x] + [artifact[k] for k in ("X_raw", "X_ica", "X_atar_soft", "X_atar_elim")]
  assert len(stored) == 5
  for r, signal in zip(stored, expected):
    np.testing.assert_array_equal(r.signal, signal.astype(np.float32))
    assert r.sample_rate == rate == 128
    assert r.channel_names == tuple(names) == EMOTIV
    assert r.channel_types == ("eeg",) * 14
    assert np.isnan(r.positions).all()  # spkit gives names only


@pytest.mark.parametrize("suffix,bits", [(".edf", 16), (".bdf", 24), (".fif", None)])
def test_files_read_back_what_was_written(tmp_path, suffix, bits):
  # A reordered subset plus an EOG channel: names, types, rate and values survive.
  channels = ("O2", "AF3", "T8", "F7", "P7")
  eog = np.sin(np.arange(2048) / 9.0).astype(np.float32) * 80.0
  recording = spkit_recording(channels=channels, extra=[("VEOG", "eog", eog)])
  path = tmp_path / f"rec{suffix}"
  eeg.write_file(path, recording)
  got = eeg.read_file(path)
  assert got.channel_names == channels + ("VEOG",)
  assert got.channel_types == ("eeg",) * 5 + ("eog",)
  assert got.sample_rate == 128.0
  if bits is None:  # FIF: float32 samples and the electrode positions
    np.testing.assert_allclose(got.signal, recording.signal, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(got.positions[:5], recording.positions[:5], atol=1e-6)
    assert np.isnan(got.positions[5]).all()
  else:  # EDF/BDF: integer samples over each channel's physical range, no positions
    step = np.ptp(recording.signal, axis=0) / 2 ** bits
    assert (np.abs(got.signal - recording.signal) <= step + 1e-3).all()
    assert np.isnan(got.positions).all()


def _write_folder(folder):
  """A FIF file with all 14 channels and positions, an EDF file with 6 reordered channels
  plus ECG (no positions)."""
  folder.mkdir()
  eeg.write_file(folder / "a.fif", spkit_recording())
  ecg = np.cos(np.arange(2048) / 5.0).astype(np.float32) * 300.0
  (folder / "sub").mkdir()  # the importer searches sub-folders too
  eeg.write_file(folder / "sub" / "b.edf",
                 spkit_recording(channels=("T8", "O1", "AF4", "F3", "P8", "FC5"),
                                 extra=[("EKG", "ecg", ecg)]))
  return folder


def test_folder_with_two_montages_needs_a_montage_for_edf(tmp_path, data_dir):
  folder = _write_folder(tmp_path / "eeg")
  cfg = config(str(tmp_path / "tfds"), name="files", path=str(folder))
  with pytest.raises(ValueError, match=r"sub/b\.edf.*no electrode position.*config\.data\.montage"):
    eeg.load_recordings(cfg)
  cfg.montage = "standard_1005"
  recordings = eeg.load_recordings(cfg)
  assert [r.channel_names for r in recordings] == [EMOTIV, ("T8", "O1", "AF4", "F3", "P8", "FC5")]
  assert [r.channel_types for r in recordings] == [("eeg",) * 14, ("eeg",) * 6]  # ECG dropped
  windows = eeg.split_windows(cfg, "train", recordings)
  assert windows.signal.shape[1:] == (128, 14)
  np.testing.assert_array_equal(windows.channel_mask.sum(1),
                                np.where(windows.recording == 0, 14, 6))
  cfg.channel_types = "eeg,ecg"
  assert eeg.load_recordings(cfg)[1].channel_types == ("eeg",) * 6 + ("ecg",)


def test_montage_overrides_and_unknown_names(tmp_path):
  recording = spkit_recording()._replace(positions=np.full((14, 3), np.nan, np.float32))
  placed = eeg.assign_positions(recording, "standard_1020")
  assert np.isfinite(placed.positions).all()
  np.testing.assert_allclose(placed.positions, spkit_recording("standard_1020").positions)
  with pytest.raises(ValueError, match="unknown montage 'nope'.*biosemi64"):
    eeg.assign_positions(recording, "nope")
  # PhysioNet EEGMMI and TUH spell electrodes "Af3." and "F7-REF"; the montage still finds them.
  spelled = recording._replace(channel_names=("Af3.", "F7-REF") + EMOTIV[2:])
  np.testing.assert_array_equal(eeg.assign_positions(spelled, "standard_1020").positions,
                                placed.positions)
  renamed = recording._replace(channel_names=("XX1",) + EMOTIV[1:])
  with pytest.raises(ValueError, match=r"\['XX1'\] are not in montage"):
    eeg.assign_positions(renamed, "standard_1005")


@pytest.mark.parametrize("fill,message", [(np.nan, "'F3' holds NaN"), (0.0, "'F3' is flat")])
def test_bad_channels_are_named(fill, message):
  recording = spkit_recording()
  recording.signal[100:, 2] = fill
  if fill == 0.0:
    recording.signal[:, 2] = 5.0
  with pytest.raises(ValueError, match=message):
    eeg.preprocess_recording(recording, eeg.check_config(config("")))


def test_sampling_rates_the_config_cannot_use():
  recording = spkit_recording()
  with pytest.raises(ValueError, match="128 Hz, below config.data.sample_rate = 256"):
    eeg.preprocess_recording(recording, eeg.check_config(config("", sample_rate=256.0)))
  with pytest.raises(ValueError, match="bandpass_high"):
    eeg.check_config(config("", sample_rate=64.0))  # 45 Hz is above Nyquist (32 Hz)
  with pytest.raises(ValueError, match="notch"):
    eeg.check_config(config("", sample_rate=100.0, bandpass_high=40.0))  # 50 Hz = Nyquist
  with pytest.raises(ValueError, match="window_seconds"):
    eeg.check_config(config("", sample_rate=100.0, bandpass_high=40.0, notch=0.0,
                            window_seconds=1.005))


def test_robust_scale_by_hand():
  x = np.asarray([[1.0], [2.0], [3.0], [4.0], [100.0]], np.float32)
  # median 3; numpy's linear percentiles give q25 = 2, q75 = 4, so IQR / 1.349 = 2 / 1.349.
  np.testing.assert_allclose(eeg.robust_scale(x)[:, 0], (x[:, 0] - 3.0) / (2.0 / 1.3489795),
                             rtol=1e-6)


def _amplitude(x, t, frequency):
  """Amplitude of the frequency component of x (a lock-in over whole cycles)."""
  return np.hypot(2 * np.mean(x * np.sin(2 * np.pi * frequency * t)),
                  2 * np.mean(x * np.cos(2 * np.pi * frequency * t)))


def test_filters_and_resampling_on_sines():
  t = np.arange(0, 8, 1 / 256)
  alpha, mains = np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 50 * t)
  drift = 3.0 + np.sin(2 * np.pi * 0.1 * t)  # offset and a slow drift, below the band
  x = (alpha + mains + drift)[:, None].astype(np.float32)
  filtered = eeg.notch(eeg.bandpass(x, 256.0, 0.5, 45.0), 256.0, 50.0)[:, 0]
  middle = slice(512, -512)  # 4 s away from the edges' transients, whole cycles of each sine
  assert _amplitude(filtered[middle], t[middle], 50.0) < 0.01  # mains: 1 -> < 1%
  assert abs(_amplitude(filtered[middle], t[middle], 10.0) - 1.0) < 0.01  # alpha kept
  assert abs(np.mean(filtered[middle])) < 0.01  # offset removed
  assert np.sqrt(np.mean(np.square(filtered - alpha)[middle])) < 0.03  # only alpha is left
  down = eeg.resample(alpha[:, None].astype(np.float32), 256.0, 128.0, "test")[:, 0]
  np.testing.assert_allclose(down[64:-64], alpha[::2][64:-64], atol=0.01)


def test_time_split_keeps_test_windows_unseen(data_dir):
  cfg = config(data_dir)
  recordings = eeg.load_recordings(cfg)
  train, test = (eeg.split_windows(cfg, s, recordings) for s in ("train", "test"))
  boundary = 1536  # 2048 samples, last quarter held out
  assert (train.start + 128 <= boundary).all() and (test.start >= boundary).all()
  # 5 recordings: (1536 - 128) / 32 + 1 = 45 train windows each, 512 / 128 = 4 test windows.
  assert train.signal.shape == (225, 128, 14) and test.signal.shape == (20, 128, 14)
  np.testing.assert_array_equal(test.signal[0], recordings[0].signal[1536:1664])
  subset = eeg.split_windows(config(data_dir, input_channels="O1,AF3"), "train", recordings)
  np.testing.assert_array_equal(subset.signal[3], train.signal[3][:, [6, 0]])


def test_iterator_same_global_batches_for_any_process_count_and_resumes(data_dir):
  cfg = config(data_dir)
  one = eeg.train_iterator(cfg, global_batch_size=8, seed=3)
  two = [eeg.train_iterator(cfg, global_batch_size=8, seed=3, process_index=p, process_count=2)
         for p in range(2)]
  for _ in range(30):  # beyond one epoch of 225 windows
    whole = next(one)
    halves = [next(it) for it in two]
    for key in whole:
      np.testing.assert_array_equal(whole[key], np.concatenate([h[key] for h in halves]))
  state = one.get_state()
  expected = next(one)
  resumed = eeg.train_iterator(cfg, global_batch_size=8, seed=3)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["signal"], expected["signal"])


def test_config_errors_name_the_field(tmp_path):
  with pytest.raises(ValueError, match="config.data.name"):
    eeg.check_config(config("", name="tuh"))
  with pytest.raises(ValueError, match="config.data.path"):
    eeg.check_config(config("", name="files"))
  with pytest.raises(ValueError, match="config.data.channel_types"):
    eeg.check_config(config("", channel_types="eeg,meg"))
  with pytest.raises(FileNotFoundError, match="no such folder"):
    eeg.load_recordings(config("", name="files", path=str(tmp_path / "missing")))
  with pytest.raises(ValueError, match="no .edf/.bdf/.fif files"):
    eeg.load_recordings(config("", name="files", path=str(tmp_path)))
