r"""Turns finished runs into a table: markdown and CSV, mean ± std over seeds.

    python experiments/compare.py runs/timeseries --rows data.name --columns quantizer.name \
        --metrics mse,perplexity,knn_levenshtein,raw_1nn --out runs/timeseries/table

Reads each run's ``config.json`` and the last evaluation in its ``metrics.jsonl``; runs that
differ only in ``seed`` are averaged.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vqlearn.train import writers  # noqa: E402


def lookup(config: dict, dotted: str):
  for key in dotted.split("."):
    config = config[key]
  return config


def load_runs(root: str) -> list[tuple[dict, dict, dict]]:
  """(config, last eval metrics, info) of every run under ``root`` with an evaluation."""
  runs = []
  for path in sorted(glob.glob(os.path.join(root, "**", "config.json"), recursive=True)):
    workdir = os.path.dirname(path)
    records = writers.read_metrics(os.path.join(workdir, "metrics.jsonl"))
    evals = [r for r in records if r["kind"] == "eval"]
    if evals:
      info = next((r for r in records if r["kind"] == "info"), {})
      train = [r for r in records if r["kind"] == "train"]
      info = {**info, **({"examples_per_second": train[-1].get("examples_per_second")}
                         if train else {})}
      with open(path) as f:
        runs.append((json.load(f), evals[-1], info))
  return runs


def summarise(values: list[float]) -> str:
  values = [v for v in values if v is not None and np.isfinite(v)]
  if not values:
    return "–"
  if len(values) == 1:
    return f"{values[0]:.4g}"
  return f"{np.mean(values):.4g} ± {np.std(values, ddof=1):.2g}"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root")
  parser.add_argument("--rows", default="data.name")
  parser.add_argument("--columns", default="quantizer.name")
  parser.add_argument("--metrics", default="mse,perplexity,usage,linear_probe,knn_histogram,"
                      "knn_levenshtein,raw_1nn")
  parser.add_argument("--out", default="", help="path prefix for the .md and .csv files")
  args = parser.parse_args(argv)

  runs = load_runs(args.root)
  if not runs:
    parser.error(f"no evaluated runs under {args.root}")
  metrics = args.metrics.split(",")
  cells = defaultdict(lambda: defaultdict(list))
  for config, evaluation, _ in runs:
    key = (str(lookup(config, args.rows)), str(lookup(config, args.columns)))
    for metric in metrics:
      cells[key][metric].append(evaluation.get(metric))

  header = [args.rows, args.columns] + metrics
  rows = [[r, c] + [summarise(cells[(r, c)][m]) for m in metrics] for r, c in sorted(cells)]
  table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
                    ["| " + " | ".join(row) + " |" for row in rows])
  print(table)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w") as f:
      f.write(table + "\n")
    with open(args.out + ".csv", "w", newline="") as f:
      csv.writer(f).writerows([header] + rows)


if __name__ == "__main__":
  main()
