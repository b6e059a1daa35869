"""The trainer: ``train_and_evaluate(config, workdir)`` and its parts."""

from vqlearn.train.loop import Preempted, build_model, train_and_evaluate
from vqlearn.train.train_state import TrainState

__all__ = ["train_and_evaluate", "build_model", "Preempted", "TrainState"]
