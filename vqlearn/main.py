r"""Command line entry point: flags and config, then ``train.train_and_evaluate``.

    python -m vqlearn.main --config configs/timeseries.py:quantizer=gumbel,smoke \
        --workdir runs/smoke --config.quantizer.codebook_size=512

Multi-host (one command per process; on TPU pods and SLURM the flags can stay empty):

    python -m vqlearn.main --config ... --workdir ... --distributed \
        --coordinator_address=host0:1234 --num_processes=2 --process_id=0
"""

from __future__ import annotations

import logging

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (file.py:arg).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and plots go; a "
                               "run resumes from it.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize().")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
  logging.getLogger("vqlearn").setLevel(logging.INFO)
  from vqlearn import sharding  # noqa: PLC0415  (JAX must not start before distributed init)
  if _DISTRIBUTED.value:
    sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from vqlearn.train import Preempted, train_and_evaluate  # noqa: PLC0415
  try:
    metrics = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except Preempted as e:
    logging.getLogger("vqlearn").warning("%s", e)
    return
  if metrics:
    width = max(map(len, metrics))
    print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items())))


if __name__ == "__main__":
  app.run(main)
