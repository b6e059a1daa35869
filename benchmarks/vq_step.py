"""One VQ training step: vqlearn's `vq` and `ema_vq` against PyTorch peers, same process.

    python benchmarks/vq_step.py            # N=16384, d=64, K=1024 and 8192
    python benchmarks/vq_step.py --quick    # K=1024 only, fewer repeats

A step is forward + backward (w.r.t. x and, where it is a parameter, the codebook) with the
straight-through estimator, losses and a perplexity metric. Everyone starts from the same x
and codebook (both N(0, 1)). Losses: codebook + 0.25 commitment + sum(quantized) for the
learnable-codebook quantizers, 0.25 commitment + sum(quantized) for the EMA ones; sum(quantized)
makes the STE gradient reach x.

Peers: vector-quantize-pytorch `VectorQuantize` with its EMA codebook (decay 0.99) and with a
learnable codebook (`learnable_codebook=True, ema_update=False`), both with
`rotation_trick=False` so they use the same STE; and a plain PyTorch VQ written to
REFERENCE.md section 1, eager and `torch.compile`d (compiled once, untimed).
The limit is a jitted fused (N x d)(d x K) matmul + row-min; vqlearn's fraction of it is
2NKd / (its step time) over the limit's GFLOP/s, i.e. t_limit / t_step.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from vector_quantize_pytorch import VectorQuantize

import harness

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from vqlearn import quantizers  # noqa: E402

N, D = 16384, 64
BETA = 0.25


# ------------------------------------------------------------------------------- vqlearn steps

def vqlearn_step(name: str, x: np.ndarray, codebook: np.ndarray):
  """Returns a no-argument callable running one jitted train step; the state is donated."""
  k = codebook.shape[0]
  q = quantizers.get(name, codebook_size=k)
  rng = jax.random.PRNGKey(0)
  params, state = q.init(rng, jnp.asarray(x))
  if name == "vq":
    params = {"codebook": jnp.asarray(codebook)}
  else:
    state = dict(state, codebook=jnp.asarray(codebook))

  def loss_fn(params, x, state):
    out, new_state = q.apply(params, state, x, rng=rng, train=True)
    weighted = BETA * out.losses["commitment"] + out.losses.get("codebook", 0.0)
    return weighted + jnp.sum(out.quantized), (new_state, out.metrics)

  @functools.partial(jax.jit, donate_argnums=(2,))
  def step(params, x, state):
    (loss, (new_state, metrics)), grads = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(params, x, state)
    return new_state, (loss, grads, metrics)

  xs = jnp.asarray(x)
  holder = {"state": state}

  def run():
    holder["state"], result = step(params, xs, holder["state"])
    return result
  return run


# ------------------------------------------------------------------------------- PyTorch peers

def plain_forward(x: torch.Tensor, e: torch.Tensor):
  """REFERENCE.md section 1 in PyTorch: squared-L2 argmin, STE, both losses, perplexity."""
  k = e.shape[0]
  dist = torch.addmm((e * e).sum(1)[None], x, e.t(), alpha=-2.0) + (x * x).sum(1, keepdim=True)
  idx = dist.argmin(1)
  q = F.embedding(idx, e)
  codebook_loss = F.mse_loss(q, x.detach())
  commitment = F.mse_loss(q.detach(), x)
  quantized = x + (q - x).detach()
  # index_add rather than bincount: its output shape does not depend on the data, so
  # torch.compile keeps one graph.
  ones = torch.ones_like(idx, dtype=x.dtype)
  counts = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, idx, ones)
  p = counts / idx.shape[0]
  perplexity = torch.exp(-(p * torch.log(p + 1e-10)).sum())
  loss = codebook_loss + BETA * commitment + quantized.sum()
  return loss, perplexity, idx


def plain_step(x: np.ndarray, codebook: np.ndarray, compiled: bool):
  forward = torch.compile(plain_forward, dynamic=False) if compiled else plain_forward
  xt = harness.tensor(x, requires_grad=True)
  et = harness.tensor(codebook, requires_grad=True)

  def run():
    loss, perplexity, idx = forward(xt, et)
    return torch.autograd.grad(loss, (xt, et)), perplexity
  return run


def vqp_step(x: np.ndarray, codebook: np.ndarray, ema: bool):
  """vector-quantize-pytorch in training mode; gradients of every trainable tensor and x."""
  k = codebook.shape[0]
  options = dict(decay=0.99) if ema else dict(ema_update=False, learnable_codebook=True)
  module = VectorQuantize(dim=D, codebook_size=k, commitment_weight=BETA, rotation_trick=False,
                          **options).to(harness.TORCH_DEVICE)
  with torch.no_grad():
    module._codebook.embed.copy_(harness.tensor(codebook)[None])
  module.train()
  xt = harness.tensor(x, requires_grad=True)
  inputs = [xt] + [p for p in module.parameters() if p.requires_grad]

  def run():
    quantized, indices, loss = module(xt[None])
    return torch.autograd.grad(loss.sum() + quantized.sum(), inputs), indices
  return run


# ------------------------------------------------------------------------------------- driver

VQLEARN = ("vqlearn vq", "vqlearn ema_vq")
PEERS = {  # peer -> the vqlearn step it is compared with (same codebook training rule)
    "vq-pytorch EMA": "vqlearn ema_vq",
    "vq-pytorch learnable": "vqlearn vq",
    "plain torch eager": "vqlearn vq",
    "plain torch.compile": "vqlearn vq",
}


def measure(k: int, rounds: int, calls: int) -> dict:
  rng = np.random.default_rng(k)
  x = rng.standard_normal((N, D), dtype=np.float32)
  codebook = rng.standard_normal((k, D), dtype=np.float32)

  # Compile time: first call of a fresh jit minus a steady call.
  compile_s = {}
  fns = {}
  for label, name in zip(VQLEARN, ("vq", "ema_vq")):
    fns[label] = vqlearn_step(name, x, codebook)
    first, steady = harness.first_call_seconds(fns[label])
    compile_s[label] = first - steady
  fns["vq-pytorch EMA"] = vqp_step(x, codebook, ema=True)
  fns["vq-pytorch learnable"] = vqp_step(x, codebook, ema=False)
  fns["plain torch eager"] = plain_step(x, codebook, compiled=False)
  fns["plain torch.compile"] = plain_step(x, codebook, compiled=True)
  first, steady = harness.first_call_seconds(fns["plain torch.compile"])  # compiles, untimed
  compile_s["plain torch.compile"] = first - steady
  fns["limit"] = harness.limit_fn(N, k, D)

  times = harness.interleave(fns, rounds, calls)
  medians = {name: statistics.median(t) for name, t in times.items()}
  limit_gflops = harness.gflops(N, k, D, medians["limit"])
  result = {"K": k, "rounds": rounds, "calls_per_round": calls,
            "median_ms": {n: harness.ms(t) for n, t in medians.items()},
            "compile_s": compile_s, "limit_gflops": limit_gflops,
            "fraction_of_limit": {v: harness.median_ratio(times, "limit", v) for v in VQLEARN},
            "ratios": {f"{p} / {v}": harness.median_ratio(times, p, v) for p, v in PEERS.items()},
            "vqlearn_vs_other": {f"{p} / {v}": harness.median_ratio(times, p, v)
                                 for p in ("vq-pytorch EMA", "vq-pytorch learnable")
                                 for v in VQLEARN}}
  return result


def targets(result: dict) -> dict:
  r = result["ratios"]
  vqp = min(r["vq-pytorch EMA / vqlearn ema_vq"], r["vq-pytorch learnable / vqlearn vq"])
  out = {">=5x vs vector-quantize-pytorch": (vqp, vqp >= 5.0),
         ">=1.5x vs torch.compile": (r["plain torch.compile / vqlearn vq"],
                                     r["plain torch.compile / vqlearn vq"] >= 1.5)}
  if result["K"] == 8192:
    frac = min(result["fraction_of_limit"].values())
    out[">=50% of limit at K=8192"] = (frac, frac >= 0.5)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="K=1024 only, fewer repeats")
  args = parser.parse_args()
  harness.set_threads()
  plan = [(1024, 3, 2)] if args.quick else [(1024, 7, 2), (8192, 3, 1)]

  results, rows, target_rows = [], [], []
  for k, rounds, calls in plan:
    result = measure(k, rounds, calls)
    results.append(result)
    ms_ = result["median_ms"]
    for name in list(VQLEARN) + list(PEERS):
      ratio = (f"{result['ratios'][f'{name} / {PEERS[name]}']:.2f}x vs {PEERS[name]}"
               if name in PEERS else "")
      frac = (f"{100 * result['fraction_of_limit'][name]:.1f}%" if name in VQLEARN else "")
      compile_ = f"{result['compile_s'][name]:.2f}" if name in result["compile_s"] else ""
      rows.append([k, name, ms_[name], ratio, frac, compile_])
    rows.append([k, f"limit (matmul+min, {result['limit_gflops']:.0f} GFLOP/s)",
                 ms_["limit"], "", "100%", ""])
    for target, (value, ok) in targets(result).items():
      target_rows.append([k, target, f"{value:.2f}", harness.met(ok)])
    result["targets"] = {t: {"value": v, "met": ok} for t, (v, ok) in targets(result).items()}

  table = harness.markdown_table(
      ["K", "implementation", "median ms/step", "peer/vqlearn", "fraction of limit",
       "compile s"], rows)
  table += "\n\n" + harness.markdown_table(["K", "target", "value", "status"], target_rows)
  harness.emit("vq_step", f"N={N}, d={D}, threads={harness.THREADS}\n\n" + table,
               {"N": N, "d": D, "quick": args.quick, "results": results})


if __name__ == "__main__":
  main()
