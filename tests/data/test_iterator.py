"""train_iterator: the multi-process determinism contract, epochs, and exact resumption."""

import numpy as np
import orbax.checkpoint as ocp
import grain
import pytest

from tests.data.helpers import config, write_npz
from vqlearn import data

BATCH = 8


@pytest.fixture
def cfg(tmp_path):
  # 7 series of lengths 3..12 cut into windows of 4, stride 2: a few dozen distinct windows.
  path, *_ = write_npz(tmp_path / "d.npz", n=7, length=12, channels=2, min_length=3)
  return config(tmp_path, train_path=str(path), window=4, stride=2, normalize="zscore")


def _global_batches(cfg, steps, process_count, seed=0, start_state=None):
  its = [data.train_iterator(cfg, global_batch_size=BATCH, seed=seed, pad_multiple=2,
                             process_index=p, process_count=process_count)
         for p in range(process_count)]
  if start_state is not None:
    for it in its:
      it.set_state(start_state)
  out = []
  for _ in range(steps):
    local = [next(it) for it in its]
    assert all(b["series"].shape == (BATCH // process_count, 4, 2) for b in local)
    out.append({k: np.concatenate([b[k] for b in local]) for k in local[0]})
  return out


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    for k in ("series", "mask", "label"):
      np.testing.assert_array_equal(x[k], y[k])


def _window_ids(cfg, batches):
  """Which training window each batch row is (windows are distinct random vectors)."""
  examples = data.training_examples(cfg, pad_multiple=2)
  index = {row.tobytes(): k for k, row in enumerate(examples.series)}
  assert len(index) == len(examples.series)
  return np.concatenate([[index[row.tobytes()] for row in b["series"]] for b in batches]), examples


def test_global_batch_is_the_same_for_every_process_count(cfg):
  one = _global_batches(cfg, 12, 1)
  _assert_same(one, _global_batches(cfg, 12, 2))
  _assert_same(one, _global_batches(cfg, 12, 4))
  assert one[0]["series"].dtype == np.float32 and one[0]["label"].dtype == np.int32


def test_every_epoch_is_a_fresh_permutation_of_all_windows(cfg):
  batches = _global_batches(cfg, 20, 1)
  ids, examples = _window_ids(cfg, batches)
  n = len(examples.series)
  epochs = [ids[e * n:(e + 1) * n] for e in range(len(ids) // n)]
  assert len(epochs) >= 2
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1])
  # Rows carry their window's mask and label.
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]),
                                examples.labels[ids])
  np.testing.assert_array_equal(np.concatenate([b["mask"] for b in batches]),
                                examples.mask[ids])


def test_seed_changes_the_order_only(cfg):
  a, b = _global_batches(cfg, 5, 1, seed=0), _global_batches(cfg, 5, 1, seed=1)
  ids_a, _ = _window_ids(cfg, a)
  ids_b, _ = _window_ids(cfg, b)
  assert not np.array_equal(ids_a, ids_b)
  _assert_same(a, _global_batches(cfg, 5, 1, seed=0))


def test_get_state_set_state_resumes_exactly_even_with_another_process_count(cfg):
  it = data.train_iterator(cfg, global_batch_size=BATCH, seed=3, pad_multiple=2)
  for _ in range(5):
    next(it)
  state = it.get_state()
  rest = [next(it) for _ in range(7)]
  _assert_same(rest, _global_batches(cfg, 7, 1, seed=3, start_state=state))
  _assert_same(rest, _global_batches(cfg, 7, 2, seed=3, start_state=state))


@pytest.mark.parametrize("async_save", [True, False])
def test_orbax_round_trip_continues_with_identical_batches(cfg, tmp_path, async_save):
  it = data.train_iterator(cfg, global_batch_size=BATCH, seed=0, pad_multiple=2)
  for _ in range(3):
    next(it)
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=async_save)
  params = {"w": np.arange(3.0)}
  with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as manager:
    manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave(params),
                                            data=grain.checkpoint.CheckpointSave(it)))
    expected = [next(it) for _ in range(6)]  # advancing before the async save commits
    manager.wait_until_finished()
  fresh = data.train_iterator(cfg, global_batch_size=BATCH, seed=0, pad_multiple=2)
  with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as manager:
    restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(params), data=grain.checkpoint.CheckpointRestore(fresh)))
  assert restored["data"] is fresh
  np.testing.assert_array_equal(restored["state"]["w"], params["w"])
  _assert_same(expected, [next(fresh) for _ in range(6)])


def test_bad_iterator_arguments(cfg):
  with pytest.raises(ValueError, match=r"global_batch_size \(6\) must be divisible by "
                                       r"process_count \(4\)"):
    data.train_iterator(cfg, global_batch_size=6, seed=0, process_count=4)
  with pytest.raises(ValueError, match=r"process_index must be in \[0, process_count\)"):
    data.train_iterator(cfg, global_batch_size=8, seed=0, process_index=2, process_count=2)
  with pytest.raises(ValueError, match="seed must be an integer >= 0"):
    data.train_iterator(cfg, global_batch_size=8, seed=-1)
