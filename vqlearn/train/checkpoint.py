"""Preemption-safe checkpoints: the train state and the data iterator, saved together.

orbax writes each step into a temporary directory and renames it when complete, so a process
killed mid-save leaves the previous checkpoint as the latest one. Saves are asynchronous: the
arrays are copied to host memory before ``save`` returns, so the donated state may be reused.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves when the loop says so (every ``checkpoint_every`` steps, on preemption, at the end)
  and keeps the last ``keep``."""

  def __init__(self, directory: str, *, keep: int):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))
    self._preempted = False
    if jax.process_count() == 1:  # multi-host runs learn of preemption through orbax
      signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self._preempted = True

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def preempted(self, step: int) -> bool:
    """True when this process got SIGTERM or the cluster's preemption notice reached ``step``."""
    return self._preempted or self._manager.reached_preemption(step)

  def save(self, step: int, state: Any, data_iterator: grain.DatasetIterator) -> None:
    """Saves the state and the iterator position at ``step``, asynchronously."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)

  def restore(self, step: int, abstract_state: Any, data_iterator: grain.DatasetIterator
              ) -> Any:
    """The state at ``step`` laid out like ``abstract_state`` (shapes and shardings); the
    iterator is repositioned in place."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return restored.state

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
