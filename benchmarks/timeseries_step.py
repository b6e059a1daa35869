"""The whole TOTEM tokenizer training step on real ACSF1 windows: vqlearn against TOTEM's PyTorch.

    python benchmarks/timeseries_step.py                       # batch 256 and 4096 (~4 minutes)
    python benchmarks/timeseries_step.py --quick               # batch 256 only, fewer repeats
    python benchmarks/timeseries_step.py --no-torch-compile    # skip the torch.compile peer
    python benchmarks/timeseries_step.py --breakdown           # also time the step's parts

A step is forward + backward + Adam (lr 1e-3, float32) of REFERENCE.md section 8's VQ-VAE:
RevIN, conv encoder, nearest-neighbour VQ (K=256, d=64, STE), conv decoder, loss = recon MSE +
codebook MSE + 0.25 commitment MSE. Batches are real windows of 96 from aeon's bundled ACSF1
(`vqlearn.data.training_examples` with configs/timeseries.py's ACSF1 config, channels split),
drawn with a fixed seed; every implementation sees the same batches in the same order.

vqlearn: exactly what the trainer runs (vqlearn/train/loop.py, one device):
`configs/timeseries.py:quantizer=vq,dataset=ACSF1`, `build_model`, `make_optimizer`,
`init_train_state`, `make_train_step`, `jax.jit(..., donate_argnums=0).lower(...).compile()`;
its compile time is that lower + compile. Batches are put on the device before timing (the
trainer's host->device copy of a batch is ~1.5 MB at 4096 and not what is measured here).

PyTorch peer: TOTEM's VQ-VAE as its code builds it (forecasting/lib/models/vqvae.py): in-place
ReLUs in the residual blocks, the expanded ||x||^2 + ||e||^2 - 2xe distance, argmin, a one-hot
`scatter_` and a matmul for the lookup, perplexity; RevIN (no affine terms, eps 1e-5) inside the
step (TOTEM applies it while preparing windows), `torch.optim.Adam(lr=1e-3)`, eager and
`torch.compile`d (the forward + loss; backward through AOTAutograd; skipped with a note when
compiling fails or takes over 3 minutes).

Everyone runs in this process with 2 threads, interleaved, after a warm-up, and the ratio is the
median of per-round ratios (benchmarks/harness.py). Absolute times on the shared 2-core machines
swing with other load; the side-by-side ratios are the figures to quote.

Run it on an idle machine. Under load from other processes, torch's OpenMP threads spin-wait
(libgomp's default OMP_WAIT_POLICY) and TOTEM's eager step became ~10x slower (2.1 s instead of
0.21 s at batch 256 with another process using ~1.3 of the 2 cores), while XLA's did not: the
ratio then flatters vqlearn several-fold. The benchmark measures the other processes' CPU use
before and after, prints a warning when it is high, and records OMP_WAIT_POLICY;
`OMP_WAIT_POLICY=PASSIVE python benchmarks/timeseries_step.py` removes most of that penalty when
an idle machine is not available (say so when quoting such a number).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as F

import harness

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from configs import timeseries  # noqa: E402
from vqlearn import data  # noqa: E402
from vqlearn.train import loop, step as train_step_lib, tasks, train_state  # noqa: E402

CONFIG = "quantizer=vq,dataset=ACSF1"
TORCH_COMPILE_LIMIT_S = 180.0
TARGET_RATIO = 3.0  # issue 7: vqlearn windows/s >= 3x TOTEM's PyTorch
TARGET_COMPILE_S = 15.0
ANCHORS_S = {256: 0.052, 4096: 1.69}  # PERF_NOTES.md, TOTEM's own step on the reference machine
POOL = 4  # distinct batches per batch size, cycled through by every implementation
BUSY_WARNING_CORES = 0.3  # other processes' CPU use above which the numbers are not trusted


def other_cpu_use(seconds: float = 1.0) -> float:
  """Cores kept busy by everything else while this process sleeps (from /proc/stat)."""
  def sample():
    with open("/proc/stat") as f:
      fields = [float(v) for v in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait, total (clock ticks)
  try:
    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
  except (OSError, ValueError, IndexError):
    return float("nan")
  busy = 1.0 - (idle1 - idle0) / max(total1 - total0, 1.0)
  return busy * (os.cpu_count() or 1)


def busy_warning(cores: float) -> str:
  if not cores > BUSY_WARNING_CORES:
    return ""
  text = (f"WARNING: other processes kept {cores:.1f} of {os.cpu_count()} cores busy: timings "
          "are slow and noisy")
  if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
    text += (", and torch's OpenMP threads spin-wait under contention (TOTEM's eager step "
             "measured ~10x slower at batch 256), which flatters vqlearn's ratio several-fold. "
             "Rerun on an idle machine, or with OMP_WAIT_POLICY=PASSIVE and say so")
  else:
    text += " (OMP_WAIT_POLICY=PASSIVE: torch's spin-wait penalty is mostly removed)"
  return text + "."


# ------------------------------------------------------------------------------------- the data

def load_windows(config) -> data.SeriesSet:
  """The trainer's training windows of ACSF1: (N, 96, 1) float32, all real (mask 1)."""
  model = loop.build_model(config)
  examples = data.training_examples(config.data, pad_multiple=model.compression)
  if examples.mask.min() < 1:
    raise RuntimeError("expected ACSF1 windows of 96 without padding")
  return examples


def batches(examples, batch_size: int, seed: int) -> list[dict[str, np.ndarray]]:
  """POOL batches of real windows, the trainer's batch layout (series, mask, label)."""
  rng = np.random.default_rng([seed, batch_size])
  out = []
  for _ in range(POOL):
    idx = rng.choice(len(examples.series), size=batch_size, replace=False)
    out.append({"series": examples.series[idx], "mask": examples.mask[idx],
                "label": examples.labels[idx]})
  return out


def cycle(items: list):
  position = [0]

  def next_item():
    item = items[position[0] % len(items)]
    position[0] += 1
    return item
  return next_item


# -------------------------------------------------------------------------------------- vqlearn

def vqlearn_step(config, host_batches: list[dict[str, np.ndarray]]):
  """(run, compile seconds, compiled step, model): the trainer's jitted step; the state is
  donated from call to call."""
  model = loop.build_model(config)
  tx, schedule = train_state.make_optimizer(config.optimizer, config.total_steps)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  batch_spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in host_batches[0].items()}
  task = tasks.get(config)
  init = lambda rng: train_state.init_train_state(
      lambda key: task.init(model, key, batch_spec), tx, rng)
  abstract_state = jax.eval_shape(init, init_rng)
  state = jax.jit(init)(init_rng)
  step = train_step_lib.make_train_step(task, model, tx, config.loss_weights.to_dict(),
                                        schedule, step_rng)
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=0).lower(abstract_state, batch_spec).compile()
  compile_s = time.perf_counter() - start

  next_batch = cycle([jax.device_put(b) for b in host_batches])
  holder = {"state": harness.block(state)}

  def run():
    holder["state"], metrics = compiled(holder["state"], next_batch())
    return holder["state"].step, metrics
  return run, compile_s, compiled, model


# ----------------------------------------------------------------------- TOTEM's PyTorch VQ-VAE

class Residual(tnn.Module):
  def __init__(self, hidden: int, res_hidden: int):
    super().__init__()
    self._block = tnn.Sequential(
        tnn.ReLU(True), tnn.Conv1d(hidden, res_hidden, 3, 1, 1, bias=False),
        tnn.ReLU(True), tnn.Conv1d(res_hidden, hidden, 1, 1, bias=False))

  def forward(self, x):
    return x + self._block(x)  # TOTEM: the in-place ReLU has overwritten x by now


class ResidualStack(tnn.Module):
  def __init__(self, hidden: int, res_hidden: int, blocks: int):
    super().__init__()
    self._layers = tnn.ModuleList([Residual(hidden, res_hidden) for _ in range(blocks)])

  def forward(self, x):
    for layer in self._layers:
      x = layer(x)
    return F.relu(x)


class Encoder(tnn.Module):
  def __init__(self, hidden=128, res_hidden=64, blocks=2, latent=64):
    super().__init__()
    self._conv_1 = tnn.Conv1d(1, hidden // 2, 4, 2, 1)
    self._conv_2 = tnn.Conv1d(hidden // 2, hidden, 4, 2, 1)
    self._conv_3 = tnn.Conv1d(hidden, hidden, 3, 1, 1)
    self._residual_stack = ResidualStack(hidden, res_hidden, blocks)
    self._pre_vq_conv = tnn.Conv1d(hidden, latent, 1, 1)

  def forward(self, x):  # (B, T) -> (B, latent, T / 4)
    x = x.view(x.shape[0], 1, x.shape[-1])
    x = F.relu(self._conv_1(x))
    x = F.relu(self._conv_2(x))
    x = self._conv_3(x)
    x = self._residual_stack(x)
    return self._pre_vq_conv(x)


class Decoder(tnn.Module):
  def __init__(self, hidden=128, res_hidden=64, blocks=2, latent=64):
    super().__init__()
    self._conv_1 = tnn.Conv1d(latent, hidden, 3, 1, 1)
    self._residual_stack = ResidualStack(hidden, res_hidden, blocks)
    self._conv_trans_1 = tnn.ConvTranspose1d(hidden, hidden // 2, 4, 2, 1)
    self._conv_trans_2 = tnn.ConvTranspose1d(hidden // 2, 1, 4, 2, 1)

  def forward(self, x):  # (B, latent, T / 4) -> (B, T)
    x = self._conv_1(x)
    x = self._residual_stack(x)
    x = F.relu(self._conv_trans_1(x))
    return torch.squeeze(self._conv_trans_2(x))


class VectorQuantizer(tnn.Module):
  def __init__(self, num_embeddings=256, embedding_dim=64, commitment_cost=0.25):
    super().__init__()
    self._embedding_dim, self._num_embeddings = embedding_dim, num_embeddings
    self._embedding = tnn.Embedding(num_embeddings, embedding_dim)
    self._embedding.weight.data.uniform_(-1 / num_embeddings, 1 / num_embeddings)
    self._commitment_cost = commitment_cost

  def forward(self, inputs):  # (B, d, T') as TOTEM passes it
    inputs = inputs.permute(0, 2, 1).contiguous()
    input_shape = inputs.shape
    flat_input = inputs.view(-1, self._embedding_dim)
    distances = (torch.sum(flat_input ** 2, dim=1, keepdim=True)
                 + torch.sum(self._embedding.weight ** 2, dim=1)
                 - 2 * torch.matmul(flat_input, self._embedding.weight.t()))
    encoding_indices = torch.argmin(distances, dim=1).unsqueeze(1)
    encodings = torch.zeros(encoding_indices.shape[0], self._num_embeddings,
                            device=inputs.device)
    encodings.scatter_(1, encoding_indices, 1)
    quantized = torch.matmul(encodings, self._embedding.weight).view(input_shape)
    e_latent_loss = F.mse_loss(quantized.detach(), inputs)
    q_latent_loss = F.mse_loss(quantized, inputs.detach())
    loss = q_latent_loss + self._commitment_cost * e_latent_loss
    quantized = inputs + (quantized - inputs).detach()
    avg_probs = torch.mean(encodings, dim=0)
    perplexity = torch.exp(-torch.sum(avg_probs * torch.log(avg_probs + 1e-10)))
    return loss, quantized.permute(0, 2, 1).contiguous(), perplexity


def revin_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
  """RevIN without affine terms over the time axis: biased variance, eps inside the sqrt."""
  mean = x.mean(dim=1, keepdim=True).detach()
  std = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False) + eps).detach()
  return (x - mean) / std


class TotemVQVAE(tnn.Module):
  """series (B, T) -> (loss, recon error, perplexity), TOTEM's `shared_eval` loss."""

  def __init__(self):
    super().__init__()
    self.encoder, self.vq, self.decoder = Encoder(), VectorQuantizer(), Decoder()

  def forward(self, series):
    x = revin_norm(series)
    z = self.encoder(x)
    vq_loss, quantized, perplexity = self.vq(z)
    recon = self.decoder(quantized)
    recon_error = F.mse_loss(recon, x)
    return recon_error + vq_loss, recon_error, perplexity


def torch_step(host_batches: list[dict[str, np.ndarray]], compiled: bool, seed: int = 0):
  """A no-argument callable: one TOTEM training step (zero_grad, forward, backward, Adam)."""
  torch.manual_seed(seed)
  model = TotemVQVAE()
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  forward = torch.compile(model, dynamic=False) if compiled else model
  next_batch = cycle([torch.from_numpy(np.ascontiguousarray(b["series"][..., 0]))
                      for b in host_batches])

  def run():
    optimizer.zero_grad()
    loss, recon_error, perplexity = forward(next_batch())
    loss.backward()
    optimizer.step()
    return loss.detach(), perplexity.detach()
  return run, model


def parameter_count(model: tnn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


class _Timeout(Exception):
  pass


def compile_torch(run, limit_s: float) -> tuple[float | None, str]:
  """The first call (torch.compile's compile plus one step) under an alarm; (seconds or None,
  note)."""
  def on_alarm(signum, frame):
    raise _Timeout()
  previous = signal.signal(signal.SIGALRM, on_alarm)
  signal.setitimer(signal.ITIMER_REAL, limit_s)
  start = time.perf_counter()
  try:
    run()
    return time.perf_counter() - start, ""
  except _Timeout:
    return None, f"torch.compile skipped: compiling took over {limit_s:.0f} s"
  except Exception as e:  # noqa: BLE001  (any compile failure means: skip, with the reason)
    return None, f"torch.compile skipped: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------ breakdown

def breakdown(config, model, host_batch: dict[str, np.ndarray], rounds: int) -> dict:
  """Where a step's time goes: vqlearn's and TOTEM's encoder, quantizer and decoder, each
  forward + backward (w.r.t. parameters and input), timed side by side."""
  from vqlearn.models import timeseries as ts

  m = config.model
  enc = ts.TotemEncoder(m.hidden, m.res_hidden, m.residual_blocks, m.latent_dim, m.compression,
                        m.faithful_relu)
  dec = ts.TotemDecoder(m.hidden, m.res_hidden, m.residual_blocks, m.compression,
                        m.faithful_relu)
  quantizer = model.quantizer
  x = jnp.asarray(host_batch["series"])
  mask = jnp.asarray(host_batch["mask"])
  target, _ = ts.revin_normalize(x, mask)
  rng = jax.random.PRNGKey(0)
  enc_params = enc.init(rng, target, mask)
  latents, latent_mask = enc.apply(enc_params, target, mask)
  q_params, q_state = quantizer.init(rng, jax.ShapeDtypeStruct(latents.shape, jnp.float32))
  dec_params = dec.init(rng, latents)

  def grad_of(f):
    g = jax.jit(jax.grad(lambda p, a: jnp.sum(f(p, a)), argnums=(0, 1)))
    return g

  enc_grad = grad_of(lambda p, a: enc.apply(p, a, mask)[0])
  dec_grad = grad_of(lambda p, a: dec.apply(p, a))

  def q_loss(p, a):
    out, _ = quantizer.apply(p, q_state, a, mask=latent_mask, train=True)
    return jnp.sum(out.quantized) + out.losses["codebook"] + 0.25 * out.losses["commitment"]
  q_grad = grad_of(q_loss)

  torch.manual_seed(0)
  tm = TotemVQVAE()
  tx = torch.from_numpy(np.ascontiguousarray(host_batch["series"][..., 0]))
  tx_norm = revin_norm(tx).requires_grad_(True)
  with torch.no_grad():
    tz = tm.encoder(tx_norm)
  tz.requires_grad_(True)

  def t_enc():
    tm.zero_grad()
    tm.encoder(tx_norm).sum().backward()

  def t_vq():
    tm.zero_grad()
    loss, quantized, _ = tm.vq(tz)
    (loss + quantized.sum()).backward()

  def t_dec():
    tm.zero_grad()
    tm.decoder(tz).sum().backward()

  fns = {"vqlearn encoder": lambda: enc_grad(enc_params, target),
         "torch encoder": t_enc,
         "vqlearn quantizer": lambda: q_grad(q_params, latents),
         "torch quantizer": t_vq,
         "vqlearn decoder": lambda: dec_grad(dec_params, latents),
         "torch decoder": t_dec}
  for fn in fns.values():
    harness.block(fn())
  times = harness.interleave(fns, rounds, calls=1)
  return {name: harness.ms(statistics.median(t)) for name, t in times.items()}


# --------------------------------------------------------------------------------------- driver

def measure(config, examples, batch_size: int, rounds: int, calls: int,
            with_compile: bool) -> dict:
  host = batches(examples, batch_size, config.seed)
  fns, compile_s, notes = {}, {}, []
  fns["vqlearn"], compile_s["vqlearn"], compiled, model = vqlearn_step(config, host)
  harness.block(fns["vqlearn"]())  # first execution, untimed
  fns["TOTEM torch eager"], torch_model = torch_step(host, compiled=False)
  if with_compile:
    run, _ = torch_step(host, compiled=True)
    seconds, note = compile_torch(run, TORCH_COMPILE_LIMIT_S)
    if seconds is None:
      notes.append(note)
      print(note, flush=True)
    else:
      fns["TOTEM torch.compile"] = run
      compile_s["TOTEM torch.compile"] = seconds
  else:
    notes.append("torch.compile skipped (--no-torch-compile)")

  times = harness.interleave(fns, rounds, calls)
  medians = {name: statistics.median(t) for name, t in times.items()}
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  return {
      "batch_size": batch_size, "rounds": rounds, "calls_per_round": calls,
      "median_ms": {n: harness.ms(t) for n, t in medians.items()},
      "steps_per_s": {n: 1.0 / t for n, t in medians.items()},
      "windows_per_s": {n: batch_size / t for n, t in medians.items()},
      "compile_s": compile_s, "notes": notes,
      "ratio_vs_vqlearn": {n: harness.median_ratio(times, n, "vqlearn")
                           for n in fns if n != "vqlearn"},
      "vqlearn_step_gflop": flops / 1e9,
      "vqlearn_gflops_per_s": flops / medians["vqlearn"] / 1e9,
      "anchor_ms": harness.ms(ANCHORS_S[batch_size]) if batch_size in ANCHORS_S else None,
      "torch_parameters": parameter_count(torch_model),
      "vqlearn_parameters": int(sum(x.size for x in jax.tree.leaves(
          jax.eval_shape(model.init, jax.random.PRNGKey(0), host[0]["series"])[0]))),
  }, model


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="batch 256 only, fewer repeats")
  parser.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile")
  parser.add_argument("--breakdown", action="store_true",
                      help="also time encoder / quantizer / decoder fwd+bwd separately")
  args = parser.parse_args()
  harness.set_threads()
  busy_before = other_cpu_use()
  config = timeseries.get_config(CONFIG)
  examples = load_windows(config)
  omp = os.environ.get("OMP_WAIT_POLICY", "<unset>")
  plan = [(256, 3, 3)] if args.quick else [(256, 7, 3), (4096, 3, 1)]

  header = (f"TOTEM tokenizer train step (fwd + bwd + Adam), ACSF1 windows of "
            f"{examples.series.shape[1]} ({len(examples.series)} in the pool), "
            f"threads={harness.THREADS}, OMP_WAIT_POLICY={omp}, "
            f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '<unset>')}, other processes' CPU "
            f"use {busy_before:.2f} cores.\n"
            "Absolute times on a shared 2-core machine are noisy; the interleaved, same-process "
            "ratios are the figures to quote.")
  if busy_warning(busy_before):
    header += "\n" + busy_warning(busy_before)
  print(header, flush=True)

  results, rows, target_rows, breakdowns = [], [], [], {}
  for batch_size, rounds, calls in plan:
    print(f"batch {batch_size}: compiling and measuring ({rounds} rounds of {calls})...",
          flush=True)
    result, model = measure(config, examples, batch_size, rounds, calls,
                            not args.no_torch_compile)
    results.append(result)
    for name in result["median_ms"]:
      ratio = (f"{result['ratio_vs_vqlearn'][name]:.2f}x" if name != "vqlearn" else "1")
      compile_ = f"{result['compile_s'][name]:.1f}" if name in result["compile_s"] else ""
      rows.append([batch_size, name, result["median_ms"][name], result["steps_per_s"][name],
                   round(result["windows_per_s"][name]), ratio, compile_])
    if result["anchor_ms"] is not None:
      rows.append([batch_size, "TOTEM anchor (PERF_NOTES, reference machine)",
                   result["anchor_ms"], 1e3 / result["anchor_ms"],
                   round(batch_size * 1e3 / result["anchor_ms"]), "", ""])
    checks = [(f">= {TARGET_RATIO:g}x windows/s vs {peer}", ratio, "x", ratio >= TARGET_RATIO)
              for peer, ratio in result["ratio_vs_vqlearn"].items()]
    c = result["compile_s"]["vqlearn"]
    checks.append((f"vqlearn compile < {TARGET_COMPILE_S:g} s", c, " s", c < TARGET_COMPILE_S))
    target_rows += [[batch_size, name, f"{value:.2f}{unit}", harness.met(ok)]
                    for name, value, unit, ok in checks]
    result["targets"] = {name: {"value": value, "met": ok} for name, value, _, ok in checks}
    if args.breakdown:
      breakdowns[batch_size] = breakdown(config, model, batches(examples, batch_size,
                                                                config.seed)[0], rounds)

  table = harness.markdown_table(
      ["batch", "implementation", "median ms/step", "steps/s", "windows/s",
       "vqlearn windows/s / its", "compile s"], rows)
  table += "\n\n" + harness.markdown_table(["batch", "target", "value", "status"], target_rows)
  busy_after = other_cpu_use()
  notes = sorted({n for r in results for n in r["notes"]})
  notes.append(f"other processes' CPU use: {busy_before:.2f} cores before, {busy_after:.2f} "
               "after")
  if busy_warning(max(busy_before, busy_after)):
    notes.append(busy_warning(max(busy_before, busy_after)))
  if notes:
    table += "\n\n" + "\n".join(f"- {n}" for n in notes)
  if breakdowns:
    parts = ("encoder", "quantizer", "decoder")
    table += "\n\nfwd + bwd per part (median ms):\n\n" + harness.markdown_table(
        ["batch", "part", "vqlearn", "TOTEM torch eager", "torch / vqlearn"],
        [[b, p, t[f"vqlearn {p}"], t[f"torch {p}"], t[f"torch {p}"] / t[f"vqlearn {p}"]]
         for b, t in breakdowns.items() for p in parts])
  harness.emit("timeseries_step", "\n" + table,
               {"config": CONFIG, "windows": int(len(examples.series)),
                "omp_wait_policy": omp, "other_cpu_cores": [busy_before, busy_after],
                "quick": args.quick, "results": results,
                "breakdown_ms": {str(b): t for b, t in breakdowns.items()}})


if __name__ == "__main__":
  main()
