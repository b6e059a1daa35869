r"""Expands a config file's ``sweep(add)`` into runs and runs them, or prints their commands.

    python experiments/sweep.py --config configs/timeseries.py --root runs/timeseries
    python experiments/sweep.py --config configs/timeseries.py --root gs://bucket/ts --print
    python experiments/sweep.py --config configs/timeseries.py --root runs/ts \
        --only quantizer=vq --set total_steps=500

Each run's workdir is ``root/<its config argument>``; a run that already finished (its
metrics.jsonl has the final evaluation) is skipped, and an interrupted one resumes. ``--print``
writes one ``python -m vqlearn.main`` command per run instead (for a TPU pod, run it on every
host with ``--distributed``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config_module(path: str):
  spec = importlib.util.spec_from_file_location("sweep_config", path)
  if spec is None or not os.path.exists(path):
    raise FileNotFoundError(f"--config: no config file at {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "sweep"):
    raise ValueError(f"--config: {path} has no sweep(add)")
  return module


def expand(module) -> list[dict]:
  runs = []
  module.sweep(lambda **run: runs.append(run))
  return runs


def run_name(run: dict) -> str:
  return run["config"].replace("=", "-").replace(",", "_").replace("+", "-")


def finished(workdir: str, total_steps: int) -> bool:
  from vqlearn.train import writers  # noqa: PLC0415
  path = os.path.join(workdir, "metrics.jsonl")
  return os.path.exists(path) and any(
      r["kind"] == "eval" and r["step"] == total_steps for r in writers.read_metrics(path))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="config file with get_config and sweep")
  parser.add_argument("--root", required=True, help="directory holding one workdir per run")
  parser.add_argument("--only", default="", help="keep runs whose argument contains this text")
  parser.add_argument("--set", action="append", default=[],
                      help="override for every run, e.g. total_steps=500 or data.dir=/d")
  parser.add_argument("--print", action="store_true", help="print the commands, run nothing")
  parser.add_argument("--reevaluate", action="store_true",
                      help="evaluate finished runs again (after the evaluators change)")
  args = parser.parse_args(argv)

  module = load_config_module(args.config)
  runs = [r for r in expand(module) if args.only in r["config"]]
  if not runs:
    parser.error(f"no run of {args.config}'s sweep matches --only {args.only!r}")
  overrides = dict(item.split("=", 1) for item in args.set)

  for run in runs:
    workdir = os.path.join(args.root, run_name(run))
    if args.print:
      flags = " ".join(f"--config.{k}={shlex.quote(v)}" for k, v in overrides.items())
      print(f"python -m vqlearn.main --config {shlex.quote(args.config + ':' + run['config'])} "
            f"--workdir {shlex.quote(workdir)} {flags}".strip())
      continue
    from vqlearn.train import train_and_evaluate  # noqa: PLC0415
    config = module.get_config(run["config"])
    for key, value in overrides.items():
      current = config
      *parents, leaf = key.split(".")
      for parent in parents:
        current = current[parent]
      current[leaf] = type(current[leaf])(value) if not isinstance(current[leaf], bool) else (
          value.lower() in ("1", "true"))
    if finished(workdir, config.total_steps) and not args.reevaluate:
      print(f"[done] {workdir}")
      continue
    print(f"[run] {workdir}", flush=True)
    train_and_evaluate(config, workdir)


if __name__ == "__main__":
  main()
