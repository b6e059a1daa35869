"""A tour of every quantizer family on real time series, at equal bits per vector.

    python experiments/quantizer_tour.py [--dataset GunPoint] [--window 16] [--bits 8]

Data: a UCR series set that the ``aeon`` package ships (no download). Each series is cut into
windows of ``--window`` samples (stride window/4); each window is one vector to quantize. Train
series fit the codebooks, test series are scored. Every configuration spends ``--bits`` bits per
window (checked against ``q.spec``). A quantizer is fitted as a standalone codebook learner: the
loss is the reconstruction ||x - quantized||^2 (the decoder is the identity) plus the family's
own loss terms at their reference weights, optimised with Adam; EMA/online families also update
their state. The table reports, on the test windows: quantisation error relative to the mean
||x||^2, the perplexity and number of distinct values of the whole code of a window (comparable
across one codebook, groups, levels and bits), and the median time of one jitted training step
(forward + backward + Adam) on this machine.
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vqlearn import quantizers


def load_windows(dataset: str, window: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, test) arrays of windows (n, window) from aeon's bundled copy of ``dataset``."""
  from aeon.datasets import load_classification  # heavy import; only the tour needs it

  def windows(split):
    series, _ = load_classification(dataset, split=split)
    series = np.asarray(series, np.float32)[:, 0]  # univariate sets: (n, 1, length)
    stride = max(window // 4, 1)
    starts = range(0, series.shape[1] - window + 1, stride)
    return np.concatenate([series[:, s:s + window] for s in starts])

  return windows("train"), windows("test")


def configurations(bits: int) -> dict[str, tuple[str, dict, dict]]:
  """name -> (registry name, options, loss weights) at ``bits`` bits per vector."""
  k, half = 2 ** bits, 2 ** (bits // 2)
  vq_weights = {"codebook": 1.0, "commitment": 0.25}
  return {
      "vq": ("vq", dict(codebook_size=k), vq_weights),
      "vq +kmeans init +revival": ("vq", dict(codebook_size=k, kmeans_init=True,
                                              revive_dead=True, usage_window=50), vq_weights),
      "ema_vq": ("ema_vq", dict(codebook_size=k), {"commitment": 0.25}),
      "ema_vq +kmeans init": ("ema_vq", dict(codebook_size=k, kmeans_init=True),
                              {"commitment": 0.25}),
      f"kmeans (vq-wav2vec) 2x{half}": ("kmeans", dict(codebook_size=half, num_groups=2,
                                                       projection=False), {"kmeans": 1.0}),
      "online_kmeans (DinoSR)": ("online_kmeans", dict(codebook_size=k),
                                 {"commitment": 0.25}),
      f"gumbel 2x{half}": ("gumbel", dict(codebook_size=half, num_groups=2),
                           {"diversity": 0.1, "kl": 0.0}),
      "wasserstein (VQ-WAE)": ("wasserstein", dict(codebook_size=k, weights="global"),
                               {"ot": 1e-3, "kl": 1.0}),
      f"binary {bits} bits": ("binary", dict(num_bits=bits), {"code": 0.0}),
      f"residual vq 2x{half}": ("residual", dict(base="vq", levels=2, codebook_size=half),
                                vq_weights),
      f"product ema_vq 2x{half}": ("product", dict(base="ema_vq", groups=2,
                                                   codebook_size=half), {"commitment": 0.25}),
  }


def fit_and_score(q, weights, train, test, steps, batch_size, learning_rate, seed):
  rng = jax.random.PRNGKey(seed)
  params, state = q.init(rng, jax.ShapeDtypeStruct((batch_size, train.shape[1]), jnp.float32))
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  def loss_fn(params, state, x, rng):
    out, state = q.apply(params, state, x, rng=rng, train=True)
    missing = set(weights) - set(out.losses)
    if missing:
      raise ValueError(f"loss weights name terms the quantizer does not return: {missing}")
    loss = jnp.mean(jnp.square(x - out.quantized))
    loss += sum(weights[name] * out.losses[name] for name in weights)
    return loss, state

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
  def train_step(params, state, opt_state, x, rng):
    (_, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state, opt_state

  sampler = np.random.default_rng(seed)
  times = []
  for step in range(steps):
    x = jnp.asarray(train[sampler.integers(0, len(train), batch_size)])
    start = time.perf_counter()
    params, state, opt_state = train_step(params, state, opt_state, x,
                                          jax.random.fold_in(rng, step))
    jax.block_until_ready(params)
    if step >= 5:  # skip compilation and warm-up
      times.append(time.perf_counter() - start)

  out, _ = jax.jit(functools.partial(q.apply, train=False))(params, state, jnp.asarray(test))
  return out, 1e3 * float(np.median(times))


def joint_code_stats(codes: np.ndarray) -> tuple[float, int]:
  """Perplexity and number of distinct values of the whole code tuple of each vector, so that
  one 256-entry codebook, 2 groups x 16 and 8 bits are measured on the same scale."""
  _, counts = np.unique(codes.reshape(len(codes), -1), axis=0, return_counts=True)
  p = counts / counts.sum()
  return float(np.exp(-np.sum(p * np.log(p)))), len(counts)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", default="GunPoint")
  parser.add_argument("--window", type=int, default=16)
  parser.add_argument("--bits", type=int, default=8)
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--batch_size", type=int, default=512)
  parser.add_argument("--learning_rate", type=float, default=3e-3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.bits < 2 or args.bits % 2:
    parser.error(f"--bits must be an even integer >= 2 (split over two groups), got {args.bits}")

  train, test = load_windows(args.dataset, args.window)
  signal = float(np.mean(np.sum(test ** 2, axis=1)))
  print(f"data: {args.dataset} (UCR, bundled with aeon), windows of {args.window} samples; "
        f"{len(train)} train / {len(test)} test windows; {args.bits} bits per window; "
        f"{args.steps} Adam steps of {args.batch_size} at lr {args.learning_rate}; "
        f"{jax.devices()[0].platform}, {jax.device_count()} device(s)\n")
  print(f"| quantizer | bits | rel. quantisation error | code perplexity (of {2**args.bits}) "
        f"| distinct codes | ms/step |")
  print("|---|---|---|---|---|---|")
  for name, (registry_name, options, weights) in configurations(args.bits).items():
    q = quantizers.get(registry_name, **options)
    assert math.isclose(q.spec.bits, args.bits), (name, q.spec)
    out, ms = fit_and_score(q, weights, train, test, args.steps, args.batch_size,
                            args.learning_rate, args.seed)
    perplexity, distinct = joint_code_stats(np.asarray(out.codes))
    error = float(out.metrics["quantization_error"]) / signal
    print(f"| {name} | {q.spec.bits:g} | {error:.4f} | {perplexity:.1f} | {distinct} "
          f"| {ms:.2f} |", flush=True)


if __name__ == "__main__":
  main()
