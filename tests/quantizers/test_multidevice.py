"""Sharded calls equal the unsharded call on the whole batch (8 fake CPU devices).

Three ways to run data-parallel: ``jax.jit`` over a batch sharded on a mesh (XLA inserts the
reductions), and ``shard_map`` / ``jax.pmap`` with the factory's ``axis_name`` (the code psums).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from tests.quantizers.cases import CASES, batch, make
from vqlearn import quantizers

DEVICES = 8
KEY = jax.random.PRNGKey(3)
SHAPE = (2 * DEVICES, 6, 8)


def _mesh():
  return jax.make_mesh((DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _reference(case, steps=2):
  """Two unsharded training steps, then an eval step; returns everything that must match."""
  q = make(case)
  x, mask = batch(SHAPE)
  params, state = q.init(jax.random.PRNGKey(0), x)
  step = jax.jit(functools.partial(q.apply, train=True))
  outs = []
  for i in range(steps):
    out, state = step(params, state, x, rng=jax.random.fold_in(KEY, i), mask=mask)
    outs.append(out)
  return params, state, x, mask, outs


def _close(a, b, atol=2e-5, rtol=2e-4):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(v, np.float64),
                               atol=atol, rtol=rtol)


def _summary(out):
  return out.losses, out.metrics, out.codes, out.quantized


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == DEVICES, "tests/conftest.py forces 8 CPU devices"
  return _mesh()


@pytest.mark.parametrize("case", sorted(CASES))
def test_jit_over_sharded_batch(case, mesh):
  params, state_ref, x, mask, outs = _reference(case)
  q = make(case)
  _, state = q.init(jax.random.PRNGKey(0), x)
  data = NamedSharding(mesh, P("data"))
  x_s, mask_s = jax.device_put(x, data), jax.device_put(mask, data)
  step = jax.jit(functools.partial(q.apply, train=True))
  for i, ref in enumerate(outs):
    out, state = step(params, state, x_s, rng=jax.random.fold_in(KEY, i), mask=mask_s)
    _close(_summary(out), _summary(ref))
  _close(state, state_ref)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shard_map_with_axis_name(case, mesh):
  params, state_ref, x, mask, outs = _reference(case)
  q = make(case, axis_name="data")
  _, state = q.init(jax.random.PRNGKey(0), x)

  def local(params, state, x, mask, rng):
    out, state = q.apply(params, state, x, rng=rng, mask=mask, train=True)
    return _summary(out), state

  sharded = jax.jit(jax.shard_map(
      local, mesh=mesh, in_specs=(P(), P(), P("data"), P("data"), P()),
      out_specs=((P(), P(), P("data"), P("data")), P()), check_vma=False))
  for i, ref in enumerate(outs):
    summary, state = sharded(params, state, x, mask, jax.random.fold_in(KEY, i))
    _close(summary, _summary(ref))
  _close(state, state_ref)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pmap_with_axis_name_keeps_replicas_identical(case):
  params, state_ref, x, mask, outs = _reference(case)
  q = make(case, axis_name="data")
  _, state = q.init(jax.random.PRNGKey(0), x)
  split = lambda a: a.reshape((DEVICES, -1) + a.shape[1:])
  replicate = lambda tree: jax.tree.map(lambda a: jnp.broadcast_to(a, (DEVICES,) + a.shape),
                                        tree)

  @functools.partial(jax.pmap, axis_name="data", in_axes=(0, 0, 0, 0, None))
  def step(params, state, x, mask, rng):
    out, state = q.apply(params, state, x, rng=rng, mask=mask, train=True)
    return (out.losses, out.metrics), state

  params_r, state_r = replicate(params), replicate(state)
  for i, ref in enumerate(outs):
    (losses, metrics), state_r = step(params_r, state_r, split(x), split(mask),
                                      jax.random.fold_in(KEY, i))
    for leaf in jax.tree.leaves((losses, metrics, state_r)):
      leaf = np.asarray(leaf)
      np.testing.assert_array_equal(leaf, np.broadcast_to(leaf[:1], leaf.shape))
    _close(jax.tree.map(lambda a: a[0], (losses, metrics)), (ref.losses, ref.metrics))
  _close(jax.tree.map(lambda a: a[0], state_r), state_ref)


@pytest.mark.parametrize("name,options", [
    ("vq", dict(revive_dead=True, usage_window=1)),
    ("ema_vq", dict(revive_dead=True, dead_threshold=2.0)),
])
def test_revival_of_a_collapsed_codebook_is_identical_on_every_replica(name, options):
  k = 8
  x, mask = batch(SHAPE)
  def collapsed(q):
    params, state = q.init(jax.random.PRNGKey(0), x)
    far = jnp.zeros((k, x.shape[-1])).at[1:, 0].set(1e4)  # entry 0 takes every row
    if name == "vq":
      return {"codebook": far}, state
    return params, dict(state, codebook=far)

  q_ref = quantizers.get(name, codebook_size=k, **options)
  q = quantizers.get(name, codebook_size=k, axis_name="data", **options)
  params, state = collapsed(q_ref)
  step = jax.jit(functools.partial(q_ref.apply, train=True))
  ref_state = state
  for i in range(2):
    out, ref_state = step(params, ref_state, x, rng=jax.random.fold_in(KEY, i), mask=mask)
  assert float(out.metrics["usage"]) > 1 / k  # revival after step 0 spread the rows

  split = lambda a: a.reshape((DEVICES, -1) + a.shape[1:])
  replicate = lambda tree: jax.tree.map(lambda a: jnp.broadcast_to(a, (DEVICES,) + a.shape),
                                        tree)
  pstep = jax.pmap(lambda p, s, x, m, r: q.apply(p, s, x, rng=r, mask=m, train=True)[1],
                   axis_name="data", in_axes=(0, 0, 0, 0, None))
  params_r, state_r = replicate(params), replicate(state)
  for i in range(2):
    state_r = pstep(params_r, state_r, split(x), split(mask), jax.random.fold_in(KEY, i))
  for leaf in jax.tree.leaves(state_r):
    leaf = np.asarray(leaf)
    np.testing.assert_array_equal(leaf, np.broadcast_to(leaf[:1], leaf.shape))
  _close(jax.tree.map(lambda a: a[0], state_r), ref_state)
