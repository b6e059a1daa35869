"""Helpers shared by the trainer tests: command lines for real runs and their checkpoints."""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main_command(workdir, data_dir, *extra, devices=2, total_steps=200, checkpoint_every=10):
  """``python -m vqlearn.main`` on the smoke config (no evals or plots) and its environment."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return [sys.executable, "-m", "vqlearn.main", "--config", "configs/timeseries.py:smoke",
          "--workdir", workdir, f"--config.data.dir={data_dir}", "--config.eval_every=0",
          "--config.evals.classify=False", "--config.evals.plots=False",
          f"--config.total_steps={total_steps}", f"--config.checkpoint_every={checkpoint_every}",
          "--config.log_every=10", *extra], env


def final_params(workdir):
  """The parameters in a workdir's latest checkpoint, as numpy leaves, whatever devices and
  processes saved it."""
  directory = os.path.join(workdir, "checkpoints")
  step = max(int(name) for name in os.listdir(directory) if name.isdigit())
  path = os.path.join(directory, str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
                        checkpointer.metadata(path).item_metadata.tree)
  restored = checkpointer.restore(path, target)
  return step, [np.asarray(x) for x in jax.tree.leaves(restored["params"])]
