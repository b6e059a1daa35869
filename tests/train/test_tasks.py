"""The task registry (every registered model reaches a Task the trainer can run) and the
evaluation helpers the tasks share."""

import ml_collections
import numpy as np
import pytest

from vqlearn import models
from vqlearn.train import tasks


@pytest.mark.parametrize("name", models.names())
def test_every_model_has_a_modality_with_a_task(name):
  assert name in models.MODALITY, f"model {name!r} has no entry in models.MODALITY"
  config = ml_collections.ConfigDict({"model": {"name": name}})
  task = tasks.get(config)
  assert isinstance(task, tasks.Task)
  assert all(callable(part) for part in task)


def test_every_modality_names_a_task_module():
  assert set(models.MODALITY.values()) <= set(tasks.TASKS)


def test_unknown_model_names_the_field():
  config = ml_collections.ConfigDict({"model": {"name": "nope"}})
  with pytest.raises(ValueError, match=r"config.model.name"):
    tasks.get(config)


def test_padded_chunks_cover_every_row_once_with_zero_padding():
  arrays = {"x": np.arange(14, dtype=np.float32).reshape(7, 2), "mask": np.ones(7, np.float32)}
  chunks = list(tasks.padded_chunks(arrays, 3))
  assert [real for _, real in chunks] == [3, 3, 1]
  assert all(chunk["x"].shape == (3, 2) and chunk["mask"].shape == (3,) for chunk, _ in chunks)
  kept = np.concatenate([chunk["x"][:real] for chunk, real in chunks])
  np.testing.assert_array_equal(kept, arrays["x"])
  last, _ = chunks[-1]
  np.testing.assert_array_equal(last["mask"], [1.0, 0.0, 0.0])  # padded rows are padding
  np.testing.assert_array_equal(last["x"][1:], 0.0)


def test_check_finite_names_the_set():
  tasks.check_finite(np.zeros(3), "GunPoint")
  with pytest.raises(FloatingPointError, match="GunPoint.*not finite"):
    tasks.check_finite(np.array([0.0, np.nan]), "GunPoint")
