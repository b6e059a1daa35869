"""The task registry: every registered model reaches a Task the trainer can run."""

import ml_collections
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
