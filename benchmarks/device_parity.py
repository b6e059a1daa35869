"""Every registered quantizer configuration on an accelerator against the same call on the CPU.

    python benchmarks/device_parity.py            # needs a GPU/TPU backend besides the CPU

Part 1 (parity): for each configuration of tests/quantizers/cases.py, one training step and one
evaluation step on both backends with float32 and bfloat16 inputs; prints the fraction of codes
that agree and the largest differences of quantized values, losses, metrics and new state.
Distances run at HIGHEST precision, so codes should agree except for exact ties.

Part 2 (speed): one jitted training step (apply + gradient of the quantizer's losses and a
reconstruction term w.r.t. params and x) per family at N=16384 rows, d=64, K=1024 (Gumbel
2 x 320), median of repeats, on each backend in the same process; prints the CPU/accelerator
ratio. The CPU here is the accelerator host's, not the 2-core development machine.
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests.quantizers.cases import CASES, make  # noqa: E402
from vqlearn import quantizers  # noqa: E402


def _max_diff(a, b):
  diffs = [float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
           for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)) if np.size(u)]
  return max(diffs, default=0.0)


def parity(accelerator):
  cpu = jax.devices("cpu")[0]
  rows = []
  for case in sorted(CASES):
    q = make(case)
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 64, 16))
    mask = jnp.ones((32, 64)).at[1::2, 40:].set(0.0)
    params, state = q.init(jax.random.PRNGKey(1), x)
    for dtype in (jnp.float32, jnp.bfloat16):
      results = []
      for device in (cpu, accelerator):
        put = lambda t: jax.device_put(t, device)
        args = put((params, state, x.astype(dtype), mask))
        train = jax.jit(functools.partial(q.apply, train=True))
        out, new_state = train(*args[:3], mask=args[3], rng=put(jax.random.PRNGKey(2)))
        evaluation, _ = jax.jit(functools.partial(q.apply, train=False))(
            args[0], new_state, args[2], mask=args[3])
        results.append(jax.device_get((out, new_state, evaluation)))
      (out_c, state_c, eval_c), (out_a, state_a, eval_a) = results
      row = {"case": case, "dtype": jnp.dtype(dtype).name,
             "codes_agree": float(np.mean(out_c.codes == out_a.codes)),
             "eval_codes_agree": float(np.mean(eval_c.codes == eval_a.codes)),
             "quantized": _max_diff(out_c.quantized, out_a.quantized),
             "losses": _max_diff(out_c.losses, out_a.losses),
             "metrics": _max_diff(out_c.metrics, out_a.metrics),
             "state": _max_diff(state_c, state_a)}
      rows.append(row)
      print(json.dumps(row), flush=True)
  worst = min(r["codes_agree"] for r in rows)
  print(f"parity: {len(rows)} runs, lowest fraction of agreeing codes {worst:.5f}")


def speed(accelerator, repeats=20):
  cpu = jax.devices("cpu")[0]
  families = {
      "vq": dict(codebook_size=1024), "ema_vq": dict(codebook_size=1024),
      "kmeans": dict(codebook_size=1024, num_groups=1),
      "online_kmeans": dict(codebook_size=1024),
      "gumbel": dict(codebook_size=320, num_groups=2),
      "wasserstein": dict(codebook_size=1024, weights="global"),
      "binary": dict(num_bits=10),
  }
  print("| family | cpu ms | accelerator ms | cpu / accelerator |")
  print("|---|---|---|---|")
  for name, kwargs in families.items():
    q = quantizers.get(name, **kwargs)
    x = jax.random.normal(jax.random.PRNGKey(0), (16384, 64))
    params, state = q.init(jax.random.PRNGKey(1), x)

    def loss(params, state, x, rng):
      out, state = q.apply(params, state, x, rng=rng, train=True)
      return jnp.mean(jnp.square(out.quantized - x)) + sum(out.losses.values()), state

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 2), has_aux=True))
    times = {}
    for label, device in (("cpu", cpu), ("acc", accelerator)):
      args = jax.device_put((params, state, x, jax.random.PRNGKey(2)), device)
      jax.block_until_ready(step(*args))
      samples = []
      for _ in range(repeats if label == "acc" else 3):
        start = time.perf_counter()
        jax.block_until_ready(step(*args))
        samples.append(time.perf_counter() - start)
      times[label] = 1e3 * float(np.median(samples))
    print(f"| {name} | {times['cpu']:.2f} | {times['acc']:.3f} | "
          f"{times['cpu'] / times['acc']:.1f} |", flush=True)


def main():
  accelerators = [d for d in jax.devices() if d.platform != "cpu"]
  if not accelerators:
    raise SystemExit("no accelerator backend: this check compares one against the CPU")
  print(f"jax {jax.__version__}; accelerator: {accelerators[0].device_kind}")
  parity(accelerators[0])
  speed(accelerators[0])


if __name__ == "__main__":
  main()
