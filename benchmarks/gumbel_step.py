"""One Gumbel-softmax VQ training step: vqlearn's `gumbel` against PyTorch peers, same process.

    python benchmarks/gumbel_step.py            # N=16384, d=64, G=2 groups x V=320
    python benchmarks/gumbel_step.py --quick    # fewer repeats

A step: logits = x W + b reshaped to (N, G, V), hard straight-through Gumbel-softmax at tau=2,
codeword mix per group, code and prob perplexities, diversity loss; forward + backward w.r.t.
x, W, b and the codebook, loss = 0.1 diversity + sum(quantized). Everyone starts from the same
x ~ N(0, 1), W ~ N(0, 1), b = 0, codebook ~ U(0, 1) (REFERENCE.md section 2).

Peers (PyTorch, eager): "fairseq-style" follows fairseq's GumbelVectorQuantizer formulas and mixes
codewords as fairseq does, broadcasting the (N, G*V) one-hot against the (G*V, d/G) codebook and
summing over V; "matmul" is the same step with the mix written as a batched matmul.
The limit is a jitted fused (N x d)(d x G*V) matmul + row-min (the logits' matmul); fractions
are t_limit / t_step.
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

import harness

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from vqlearn import quantizers  # noqa: E402

N, D, G, V = 16384, 64, 2, 320
TAU = 2.0  # tau at step 0 of the (2, 0.5, 0.999995) schedule, which vqlearn's state starts at.
DIVERSITY_WEIGHT = 0.1


def vqlearn_step(x, w, codebook):
  q = quantizers.get("gumbel", codebook_size=V, num_groups=G)
  rng = jax.random.PRNGKey(0)
  params, state = q.init(rng, jnp.asarray(x))
  params = dict(params, logits_w=jnp.asarray(w), logits_b=jnp.zeros((G * V,), jnp.float32),
                codebook=jnp.asarray(codebook))

  def loss_fn(params, x, state, rng):
    out, new_state = q.apply(params, state, x, rng=rng, train=True)
    loss = DIVERSITY_WEIGHT * out.losses["diversity"] + jnp.sum(out.quantized)
    return loss, (new_state, out.metrics)

  @functools.partial(jax.jit, donate_argnums=(2,))
  def step(params, x, state, rng):
    (loss, (new_state, metrics)), grads = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(params, x, state, rng)
    return new_state, (loss, grads, metrics)

  xs = jnp.asarray(x)
  holder = {"state": state, "key": rng}

  def run():
    holder["key"], key = jax.random.split(holder["key"])  # fresh noise each step, as in training
    holder["state"], result = step(params, xs, holder["state"], key)
    return result
  return run


def perplexity_sum(p: torch.Tensor) -> torch.Tensor:
  """sum over groups of exp(entropy) of p (G, V), with fairseq's 1e-7 inside the log."""
  return torch.exp(-(p * torch.log(p + 1e-7)).sum(-1)).sum()


def mix_broadcast(y: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
  """fairseq's mix: (N, G*V, 1) * (1, G*V, d/G) materialised, then summed over V."""
  n = y.shape[0]
  return (y.view(n, G * V, 1) * book.view(1, G * V, -1)).view(n, G, V, -1).sum(-2)


def mix_matmul(y: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
  """The same mix as one batched matmul per group: (G, N, V) @ (G, V, d/G)."""
  return torch.bmm(y.transpose(0, 1), book.view(G, V, -1)).transpose(0, 1)


def torch_forward(x, w, b, book, mix):
  n = x.shape[0]
  logits = torch.addmm(b, x, w).view(n, G, V)
  # Metrics as fairseq computes them: hard perplexity of the noise-free argmax, soft perplexity
  # of softmax(logits) without noise or tau.
  hard = F.one_hot(logits.argmax(-1), V).float()
  code_perplexity = perplexity_sum(hard.mean(0))
  prob_perplexity = perplexity_sum(torch.softmax(logits.float(), -1).mean(0))
  y = F.gumbel_softmax(logits.float(), tau=TAU, hard=True, dim=-1)
  quantized = mix(y, book).reshape(n, -1)
  diversity = (G * V - prob_perplexity) / (G * V)
  loss = DIVERSITY_WEIGHT * diversity + quantized.sum()
  return loss, code_perplexity


def torch_step(x, w, codebook, mix):
  tensors = [harness.tensor(x), harness.tensor(w), harness.tensor(np.zeros(G * V, np.float32)),
             harness.tensor(codebook)]
  for t in tensors:
    t.requires_grad_(True)

  def run():
    loss, code_perplexity = torch_forward(*tensors, mix)
    return torch.autograd.grad(loss, tensors), code_perplexity
  return run


PEERS = ("fairseq-style (broadcast mix)", "torch matmul mix")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="fewer repeats")
  args = parser.parse_args()
  harness.set_threads()
  rounds, calls = (2, 1) if args.quick else (5, 2)

  rng = np.random.default_rng(0)
  x = rng.standard_normal((N, D), dtype=np.float32)
  w = rng.standard_normal((D, G * V), dtype=np.float32)
  codebook = rng.random((G * V, D // G), dtype=np.float32)

  fns = {"vqlearn gumbel": vqlearn_step(x, w, codebook)}
  first, steady = harness.first_call_seconds(fns["vqlearn gumbel"])
  compile_s = first - steady
  fns[PEERS[0]] = torch_step(x, w, codebook, mix_broadcast)
  fns[PEERS[1]] = torch_step(x, w, codebook, mix_matmul)
  fns["limit"] = harness.limit_fn(N, G * V, D)

  times = harness.interleave(fns, rounds, calls)
  medians = {name: harness.ms(statistics.median(t)) for name, t in times.items()}
  ratios = {p: harness.median_ratio(times, p, "vqlearn gumbel") for p in PEERS}
  fraction = harness.median_ratio(times, "limit", "vqlearn gumbel")
  limit_gflops = harness.gflops(N, G * V, D, statistics.median(times["limit"]))
  checks = {">=8x vs fairseq-style": (ratios[PEERS[0]], ratios[PEERS[0]] >= 8.0),
            ">=2x vs torch matmul mix": (ratios[PEERS[1]], ratios[PEERS[1]] >= 2.0)}

  rows = [["vqlearn gumbel", medians["vqlearn gumbel"], "", f"{100 * fraction:.1f}%",
           f"{compile_s:.2f}"]]
  rows += [[p, medians[p], f"{ratios[p]:.2f}x", "", ""] for p in PEERS]
  rows.append([f"limit (matmul+min, {limit_gflops:.0f} GFLOP/s)", medians["limit"], "", "100%",
               ""])
  table = harness.markdown_table(
      ["implementation", "median ms/step", "peer/vqlearn", "fraction of limit", "compile s"],
      rows)
  table += "\n\n" + harness.markdown_table(
      ["target", "value", "status"],
      [[t, f"{v:.2f}", harness.met(ok)] for t, (v, ok) in checks.items()])
  harness.emit("gumbel_step", f"N={N}, d={D}, G={G}, V={V}, tau={TAU}, threads={harness.THREADS}"
               f"\n\n" + table,
               {"N": N, "d": D, "G": G, "V": V, "quick": args.quick, "rounds": rounds,
                "calls_per_round": calls, "median_ms": medians, "ratios": ratios,
                "fraction_of_limit": fraction, "limit_gflops": limit_gflops,
                "compile_s": compile_s,
                "targets": {t: {"value": v, "met": ok} for t, (v, ok) in checks.items()}})


if __name__ == "__main__":
  main()
