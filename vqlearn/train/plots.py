"""PNG plots of a run: reconstructions, code usage and training curves.

The trainer and ``experiments/compare.py`` call these on host arrays (``np.asarray`` of the
evaluation outputs) and on ``writers.read_metrics`` records. Figures are built with
matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never ``pyplot``: no global
backend is selected and no figure registry grows, so a notebook that imports vqlearn keeps its
own backend, and a long run that plots every evaluation leaks nothing.

Every function writes its PNG atomically (a temporary file in the same directory, then
``os.replace``), so a reader or a preempted run never sees half a file, and returns the path.
matplotlib is imported on the first plot, so ``vqlearn.train`` imports without it.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

_RESERVED = ("step", "kind", "time")  # Fields of a metrics record that are not metrics.
_DPI = 100


def _figure(width: float, height: float):
  """A matplotlib Figure with its own Agg canvas, ``width`` x ``height`` inches."""
  try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
  except ImportError as e:
    raise ImportError("vqlearn.train.plots needs matplotlib (pip install matplotlib)") from e
  figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
  FigureCanvasAgg(figure)
  return figure


def _save(figure, path: str | os.PathLike) -> str:
  """Writes ``figure`` as a PNG to ``path`` atomically; returns the path."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                   suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      figure.savefig(f, format="png", dpi=_DPI)
    os.chmod(temporary, 0o644)  # mkstemp makes owner-only files; a plot is for everyone.
    os.replace(temporary, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(temporary)
    raise
  return path


def _grid(count: int, max_columns: int) -> tuple[int, int]:
  columns = min(count, max_columns)
  return math.ceil(count / columns), columns


def _message(figure, text: str) -> None:
  """Shows ``text`` on an empty figure, for plots that have nothing to draw."""
  axes = figure.add_subplot()
  axes.set_axis_off()
  axes.text(0.5, 0.5, text, ha="center", va="center", wrap=True)


def plot_reconstructions(path: str | os.PathLike, inputs: Any, reconstructions: Any, mask: Any,
                         *, max_series: int = 8, max_channels: int = 4,
                         title: str | None = None) -> str:
  """Plots input against reconstruction for the first series, real samples only.

  One panel per series, titled with its MSE over real samples and all channels. Channel 0 is
  drawn fully and channels 1 to ``max_channels - 1`` lightly; padding (``mask == 0``) is left
  out, and each panel's time axis ends at the series' last real sample.

  Args:
    path: the PNG to write; its directory is created if missing.
    inputs: (n, T, C) series.
    reconstructions: (n, T, C), the model's output in the same space as ``inputs``.
    mask: (n, T), 1 = real sample.
    max_series: at most this many series (the first ones) are drawn.
    max_channels: at most this many channels per series are drawn.
    title: the figure's title.

  Returns:
    ``path``.

  Raises:
    ValueError: the shapes disagree, there is no series, or a maximum is below 1.
  """
  inputs = np.asarray(inputs, np.float32)
  reconstructions = np.asarray(reconstructions, np.float32)
  mask = np.asarray(mask)
  if inputs.ndim != 3 or inputs.shape[0] == 0:
    raise ValueError(f"inputs must have shape (n, T, C) with n >= 1, got {inputs.shape}")
  if reconstructions.shape != inputs.shape:
    raise ValueError(f"reconstructions must have the shape of inputs {inputs.shape}, got "
                     f"{reconstructions.shape}")
  if mask.shape != inputs.shape[:2]:
    raise ValueError(f"mask must have shape (n, T) = {inputs.shape[:2]}, got {mask.shape}")
  if max_series < 1 or max_channels < 1:
    raise ValueError(f"max_series and max_channels must be >= 1, got {max_series} and "
                     f"{max_channels}")
  count = min(inputs.shape[0], max_series)
  channels = min(inputs.shape[2], max_channels)
  rows, columns = _grid(count, 2)
  figure = _figure(5.0 * columns, 2.2 * rows)
  time_axis = np.arange(inputs.shape[1])
  for i in range(count):
    axes = figure.add_subplot(rows, columns, i + 1)
    real = mask[i] > 0
    if not real.any():
      axes.set_title(f"series {i}: all padding", fontsize=9)
      axes.set_axis_off()
      continue
    # NaN breaks the line, so a gap in the mask shows as a gap rather than a jump to zero.
    shown_input = np.where(real[:, None], inputs[i], np.nan)
    shown_output = np.where(real[:, None], reconstructions[i], np.nan)
    for c in range(channels):
      strong = c == 0
      axes.plot(time_axis, shown_input[:, c], color="C0", lw=1.2 if strong else 0.8,
                alpha=1.0 if strong else 0.35, label="input" if strong else None)
      axes.plot(time_axis, shown_output[:, c], color="C3", lw=1.2 if strong else 0.8,
                alpha=1.0 if strong else 0.35, ls="--", label="reconstruction" if strong else None)
    mse = float(np.mean((inputs[i][real] - reconstructions[i][real]) ** 2))
    axes.set_title(f"series {i}: mse {mse:.4g}", fontsize=9)
    axes.set_xlim(0, max(int(np.nonzero(real)[0][-1]), 1))
    axes.tick_params(labelsize=7)
    if i == 0:
      axes.legend(fontsize=7, loc="best")
  if title:
    figure.suptitle(title)
  return _save(figure, path)


def _perplexity(frequencies: np.ndarray) -> float:
  """exp(entropy) of a distribution, 0 log 0 = 0."""
  used = frequencies[frequencies > 0]
  return float(np.exp(-np.sum(used * np.log(used))))


def plot_code_usage(path: str | os.PathLike, counts: Any, *, title: str | None = None) -> str:
  """Plots each symbol's code frequencies sorted from most to least used, log-scale y.

  A flat curve at ``1 / V`` (drawn dashed) is perfect usage; a curve that drops to nothing
  early means dead codes. The title gives the perplexity ``exp(H)``, summed over symbols when
  there are several (shared/DESIGN.md's convention, so its maximum is S x V).

  Args:
    path: the PNG to write; its directory is created if missing.
    counts: (S, V) non-negative counts of each code per symbol (``(V,)`` is one symbol), e.g.
      ``evaluators.codebook.code_counts_per_symbol``.
    title: prefix of the figure's title.

  Returns:
    ``path``.

  Raises:
    ValueError: ``counts`` is not (S, V) / (V,), is empty, or has negative or non-finite values.
  """
  counts = np.asarray(counts, np.float64)
  if counts.ndim == 1:
    counts = counts[None]
  if counts.ndim != 2 or counts.size == 0:
    raise ValueError(f"counts must have shape (S, V) or (V,) with V >= 1, got {counts.shape}")
  if not np.all(np.isfinite(counts)) or np.any(counts < 0):
    raise ValueError("counts must be finite and non-negative")
  symbols, vocab_size = counts.shape
  figure = _figure(6.0, 3.5)
  prefix = f"{title}: " if title else ""
  totals = counts.sum(axis=1)
  if not np.any(totals > 0):
    _message(figure, "no codes counted")
    figure.suptitle(f"{prefix}code usage, perplexity n/a")
    return _save(figure, path)
  axes = figure.add_subplot()
  perplexities = []
  for s in range(symbols):
    if totals[s] == 0:
      continue
    frequencies = np.sort(counts[s] / totals[s])[::-1]
    used = int(np.count_nonzero(frequencies))
    perplexities.append(_perplexity(frequencies))
    # Zeros have no place on a log axis: the curve stops at the last used code instead.
    axes.stairs(frequencies[:used], np.arange(used + 1), baseline=None,
                label=f"symbol {s}: perplexity {perplexities[-1]:.1f}, used {used}/{vocab_size}")
  axes.axhline(1.0 / vocab_size, color="gray", ls="--", lw=0.8, label="uniform")
  axes.set_yscale("log")
  axes.set_xlim(0, vocab_size)
  axes.xaxis.get_major_locator().set_params(integer=True)  # Ranks are whole numbers.
  axes.set_xlabel("code rank (most used first)")
  axes.set_ylabel("frequency")
  if symbols <= 8:
    axes.legend(fontsize=7)
  total = sum(perplexities)
  if symbols == 1:
    figure.suptitle(f"{prefix}code usage, perplexity {total:.1f} of {vocab_size} codes")
  else:
    figure.suptitle(f"{prefix}code usage, perplexity {total:.1f} (sum over {symbols} symbols, "
                    f"max {symbols * vocab_size})")
  return _save(figure, path)


def plot_curves(path: str | os.PathLike, records: Iterable[Mapping[str, Any]],
                keys: Sequence[str] | str, *, title: str | None = None) -> str:
  """Plots metrics against step, one panel per key that has data.

  Args:
    path: the PNG to write; its directory is created if missing.
    records: metrics records, as ``writers.read_metrics`` returns them.
    keys: ``f"{kind}/{metric}"`` names (the TensorBoard tags), e.g. ``"train/loss"``,
      ``"eval/perplexity"``. Keys without any value are left out; if none has one, the PNG
      says so.
    title: the figure's title.

  Returns:
    ``path``.
  """
  if isinstance(keys, str):
    keys = [keys]
  wanted = {key: ([], []) for key in keys}
  for record in records:
    for name, value in record.items():
      tag = f"{record['kind']}/{name}"
      if name in _RESERVED or tag not in wanted or isinstance(value, (str, bool)) or value is None:
        continue
      wanted[tag][0].append(int(record["step"]))
      wanted[tag][1].append(float(value))
  present = [key for key in keys if wanted[key][0]]
  if not present:
    figure = _figure(6.0, 2.0)
    _message(figure, f"no data for {', '.join(keys) if keys else 'any key (none given)'}")
  else:
    rows, columns = _grid(len(present), 3)
    figure = _figure(4.0 * columns, 3.0 * rows)
    for i, key in enumerate(present):
      steps, values = (np.asarray(v) for v in wanted[key])
      order = np.argsort(steps, kind="stable")
      steps, values = steps[order], values[order]
      finite = np.isfinite(values)
      axes = figure.add_subplot(rows, columns, i + 1)
      # Non-finite points become gaps (and are counted) rather than breaking the autoscale.
      axes.plot(steps, np.where(finite, values, np.nan), marker="." if len(steps) <= 50 else None)
      bad = int(np.count_nonzero(~finite))
      axes.set_title(key + (f" ({bad} non-finite)" if bad else ""), fontsize=9)
      axes.set_xlabel("step", fontsize=8)
      axes.tick_params(labelsize=7)
      axes.grid(alpha=0.3)
  if title:
    figure.suptitle(title)
  return _save(figure, path)


def plot_run(workdir: str | os.PathLike, *, curves: Sequence[str], code_counts: Any,
             inputs: Any = None, reconstructions: Any = None, mask: Any = None) -> None:
  """A finished run's PNGs in ``workdir``: ``curves.png`` (the ``curves`` keys from its
  metrics.jsonl), ``code_usage.png`` and, when inputs are given, ``reconstructions.png``."""
  from vqlearn.train import writers  # plots stays importable on its own
  if inputs is not None:
    plot_reconstructions(os.path.join(workdir, "reconstructions.png"), inputs, reconstructions,
                         mask)
  plot_code_usage(os.path.join(workdir, "code_usage.png"), code_counts)
  records = writers.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  plot_curves(os.path.join(workdir, "curves.png"), records, curves)
