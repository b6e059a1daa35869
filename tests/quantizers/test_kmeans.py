"""Golden and behaviour tests for the k-means quantizers (vq-wav2vec ``kmeans``, DinoSR
``online_kmeans``). Expected values are re-derived in numpy from REFERENCE.md §3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqlearn.quantizers.kmeans import kmeans, online_kmeans

EPS = 1e-5  # torch GroupNorm eps


# ----------------------------------------------------------------------------------------------
# numpy references
# ----------------------------------------------------------------------------------------------

def ref_project(x, mask, kernel, scale, bias, xp=np):
  """Grouped 1x1 conv + GroupNorm, looping over examples and groups.

  x (B, P, d), mask (B, P) concrete numpy. Works with xp=np (values) or xp=jnp (gradients).
  """
  b_size, _, d = x.shape
  g_size, c, _ = kernel.shape
  examples = []
  for b in range(b_size):
    real = np.nonzero(np.asarray(mask[b]) > 0)[0]
    blocks = []
    for g in range(g_size):
      block = x[b, :, g * c:(g + 1) * c] @ kernel[g]  # (P, c)
      if len(real):
        vals = block[real]
        mu = vals.mean()
        var = ((vals - mu) ** 2).mean()
      else:
        mu, var = 0.0, 0.0
      normed = (block - mu) / xp.sqrt(var + EPS)
      blocks.append(normed * scale[None, g * c:(g + 1) * c] + bias[None, g * c:(g + 1) * c])
    examples.append(xp.concatenate(blocks, axis=-1))
  return xp.stack(examples)


def ref_quantize(z, codebook, groups):
  """z (N, d); codebook (G', V, c) -> codes (N, G), zq (N, d) by brute-force argmin (float64)."""
  n, d = z.shape
  c = d // groups
  codes = np.zeros((n, groups), np.int64)
  zq = np.zeros((n, d))
  for g in range(groups):
    book = np.asarray(codebook[0 if codebook.shape[0] == 1 else g], np.float64)
    zg = np.asarray(z[:, g * c:(g + 1) * c], np.float64)
    dist = ((zg[:, None, :] - book[None]) ** 2).sum(-1)
    codes[:, g] = dist.argmin(-1)
    zq[:, g * c:(g + 1) * c] = book[codes[:, g]]
  return codes, zq


def ref_perplexity(codes, mask, vocab):
  total = 0.0
  real = codes[mask > 0]
  for s in range(codes.shape[1]):
    p = np.bincount(real[:, s], minlength=vocab) / len(real)
    total += np.exp(-np.sum(p * np.log(p + 1e-7)))
  return total


def random_params(rng, d, groups, vocab, shared=False, projection=True):
  c = d // groups
  params = {"codebook": rng.normal(size=(1 if shared else groups, vocab, c)).astype(np.float32)}
  if projection:
    params |= {"projection": rng.normal(size=(groups, c, c)).astype(np.float32),
               "norm_scale": rng.uniform(0.5, 1.5, d).astype(np.float32),
               "norm_bias": rng.normal(scale=0.1, size=d).astype(np.float32)}
  return params


def jitted(q):
  """The quantizer with a jitted apply: one compiled program instead of op-by-op dispatch."""
  return q._replace(apply=jax.jit(q.apply, static_argnames="train"))


def eval_apply(q, params, state, x):
  """apply(train=False), jitted, asserting (at trace time) that the state object comes back."""
  def run(p, s, xx):
    out, same = q.apply(p, s, xx)
    assert same is s
    return out
  return jax.jit(run)(params, state, x)


def tree_close(a, b, **kw):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), **kw), a, b)


# ----------------------------------------------------------------------------------------------
# kmeans (vq-wav2vec)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shared", [False, True])
def test_kmeans_golden_without_projection(shared):
  rng = np.random.default_rng(0)
  d, groups, vocab = 6, 2, 5
  x = rng.normal(size=(3, 4, d)).astype(np.float32)
  mask = np.ones((3, 4), np.float32)
  mask[1, 2:] = 0
  q = jitted(kmeans(vocab, num_groups=groups, shared_codebook=shared, gamma=0.25,
                    projection=False))
  _, state = q.init(jax.random.key(0), x)
  params = random_params(rng, d, groups, vocab, shared, projection=False)
  out, _ = q.apply(params, state, x, mask=mask)

  z, m = x.reshape(-1, d), mask.reshape(-1)
  codes, zq = ref_quantize(z, params["codebook"], groups)
  real = m > 0
  mse = np.mean((zq - z)[real] ** 2)
  np.testing.assert_array_equal(np.asarray(out.codes).reshape(-1, groups),
                                np.where(real[:, None], codes, -1))
  np.testing.assert_allclose(np.asarray(out.quantized).reshape(-1, d),
                             zq * real[:, None], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out.losses["kmeans"], 1.25 * mse, rtol=1e-5)
  np.testing.assert_allclose(out.metrics["quantization_error"],
                             np.mean(((zq - z) ** 2).sum(-1)[real]), rtol=1e-5)
  np.testing.assert_allclose(out.metrics["perplexity"],
                             ref_perplexity(codes, m, vocab), rtol=1e-5)
  assert set(out.losses) == {"kmeans"}
  assert q.spec == (groups, vocab)


def test_shared_codebook_is_one_codebook_for_all_groups():
  d, groups, vocab = 8, 4, 3
  x = jax.ShapeDtypeStruct((2, d), jnp.float32)
  separate, _ = kmeans(vocab, num_groups=groups).init(jax.random.key(1), x)
  shared, _ = kmeans(vocab, num_groups=groups, shared_codebook=True).init(jax.random.key(1), x)
  assert separate["codebook"].shape == (groups, vocab, d // groups)
  assert shared["codebook"].shape == (1, vocab, d // groups)
  # Every group of the shared quantizer can pick the same codeword: the identical inputs per
  # group get identical codes, and lookup of code j in any group is codeword j.
  q = jitted(kmeans(vocab, num_groups=groups, shared_codebook=True, projection=False))
  params = {"codebook": np.arange(vocab * 2, dtype=np.float32).reshape(1, vocab, 2)}
  _, state = q.init(jax.random.key(0), x)
  row = np.tile(np.array([2.1, 3.2], np.float32), groups)[None]
  out, _ = q.apply(params, state, row)
  np.testing.assert_array_equal(out.codes, [[1] * groups])
  vecs = q.lookup(params, state, jnp.array([[0, 1, 2, 0]]))
  np.testing.assert_array_equal(vecs, [[0, 1, 2, 3, 4, 5, 0, 1]])


def test_kmeans_golden_with_projection_and_masked_positions():
  rng = np.random.default_rng(1)
  b, t, d, groups, vocab = 3, 5, 8, 2, 6
  x = rng.normal(size=(b, t, d)).astype(np.float32)
  mask = np.ones((b, t), np.float32)
  mask[0, 3:] = 0
  mask[2, 1] = 0
  x[mask == 0] = 1e3  # padding with huge values: must not touch the statistics
  q = jitted(kmeans(vocab, num_groups=groups, gamma=0.5))
  params, state = q.init(jax.random.key(0), x)
  params = random_params(rng, d, groups, vocab)
  out, new_state = q.apply(params, state, x, mask=mask, train=True)

  z = ref_project(x.astype(np.float64), mask, *(params[k].astype(np.float64) for k in
                                                  ("projection", "norm_scale", "norm_bias")))
  z, m = z.reshape(-1, d), mask.reshape(-1)
  real = m > 0
  codes, zq = ref_quantize(z, params["codebook"], groups)
  np.testing.assert_array_equal(np.asarray(out.codes).reshape(-1, groups)[real], codes[real])
  np.testing.assert_allclose(np.asarray(out.quantized).reshape(-1, d),
                             zq * real[:, None], rtol=1e-5, atol=1e-5)
  mse = np.mean((zq - z)[real] ** 2)
  np.testing.assert_allclose(out.losses["kmeans"], 1.5 * mse, rtol=1e-4)
  # quantization_error is measured in the projected space z.
  np.testing.assert_allclose(out.metrics["quantization_error"],
                             np.mean(((zq - z) ** 2).sum(-1)[real]), rtol=1e-4)
  assert int(new_state["step"]) == 1
  assert new_state["last_used"].shape == (groups, vocab)


def test_kmeans_rank2_rows_are_their_own_examples():
  rng = np.random.default_rng(2)
  n, d, groups, vocab = 6, 8, 2, 4
  x = rng.normal(size=(n, d)).astype(np.float32)
  q = jitted(kmeans(vocab, num_groups=groups))
  _, state = q.init(jax.random.key(0), x)
  params = random_params(rng, d, groups, vocab)
  out, _ = q.apply(params, state, x)
  z = ref_project(x[:, None].astype(np.float64), np.ones((n, 1)),
                  *(params[k].astype(np.float64)
                    for k in ("projection", "norm_scale", "norm_bias")))[:, 0]
  _, zq = ref_quantize(z, params["codebook"], groups)
  np.testing.assert_allclose(out.quantized, zq, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.metrics["quantization_error"],
                             np.mean(((zq - z) ** 2).sum(-1)), rtol=1e-4)


def test_kmeans_gradients_gamma_and_copy_without_projection():
  rng = np.random.default_rng(3)
  n, d, groups, vocab, gamma = 7, 4, 2, 3, 0.3
  x = rng.normal(size=(n, d)).astype(np.float32)
  mask = np.ones(n, np.float32)
  mask[-2:] = 0
  q = jitted(kmeans(vocab, num_groups=groups, gamma=gamma, projection=False))
  _, state = q.init(jax.random.key(0), x)
  params = random_params(rng, d, groups, vocab, projection=False)
  codes, zq = ref_quantize(x, params["codebook"], groups)
  real = mask > 0
  count = real.sum() * d

  loss = lambda p, xx: q.apply(p, state, xx, mask=mask)[0].losses["kmeans"]
  g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
  # d/dx: only the commitment term, gamma * 2 (z - zq) / (N d).
  np.testing.assert_allclose(g_x, gamma * 2 * (x - zq) * real[:, None] / count,
                             rtol=1e-5, atol=1e-7)
  # d/dcodebook: only the codebook term, 2 (e - z) / (N d) summed over the rows that chose e.
  c = d // groups
  expected = np.zeros(params["codebook"].shape)
  for i in np.nonzero(real)[0]:
    for g in range(groups):
      expected[g, codes[i, g]] += 2 * (zq[i, g * c:(g + 1) * c] - x[i, g * c:(g + 1) * c]) / count
  np.testing.assert_allclose(g_params["codebook"], expected, rtol=1e-5, atol=1e-7)

  # Gradient copy: d quantized / d x is the identity at real rows, zero at padding.
  cot = rng.normal(size=(n, d)).astype(np.float32)
  out_fn = lambda xx: jnp.sum(q.apply(params, state, xx, mask=mask)[0].quantized * cot)
  np.testing.assert_allclose(jax.grad(out_fn)(x), cot * real[:, None], rtol=1e-6)


def test_kmeans_gradient_copy_through_projection():
  rng = np.random.default_rng(4)
  b, t, d, groups, vocab = 2, 4, 4, 2, 3
  x = rng.normal(size=(b, t, d)).astype(np.float32)
  mask = np.ones((b, t), np.float32)
  mask[1, 3] = 0
  q = jitted(kmeans(vocab, num_groups=groups))
  _, state = q.init(jax.random.key(0), x)
  params = random_params(rng, d, groups, vocab)
  cot = rng.normal(size=(b, t, d)).astype(np.float32) * mask[..., None]
  keys = ("projection", "norm_scale", "norm_bias")

  got = jax.grad(lambda p, xx: jnp.sum(q.apply(p, state, xx, mask=mask)[0].quantized * cot),
                 argnums=(0, 1))(params, x)
  # d out / d z = identity, so the gradient equals that of <z(x), cot>.
  want = jax.grad(lambda p, xx: jnp.sum(
      ref_project(xx, mask, *(p[k] for k in keys), xp=jnp) * cot), argnums=(0, 1))(params, x)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)
  for k in keys:
    np.testing.assert_allclose(got[0][k], want[0][k], rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got[0]["codebook"], 0.0)  # the output carries no codebook grad


def test_kmeans_padding_appended_changes_nothing():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(3, 4, 8)).astype(np.float32)
  mask = np.ones((3, 4), np.float32)
  mask[2, 2:] = 0
  q = jitted(kmeans(5, num_groups=2))
  params, state = q.init(jax.random.key(0), x)
  out, s1 = q.apply(params, state, x, mask=mask, train=True)
  x_pad = np.concatenate([x, rng.normal(size=(2, 4, 8)).astype(np.float32) * 50])
  mask_pad = np.concatenate([mask, np.zeros((2, 4), np.float32)])
  out_pad, s2 = q.apply(params, state, x_pad, mask=mask_pad, train=True)
  tree_close(out.losses, out_pad.losses, rtol=1e-6)
  tree_close(out.metrics, out_pad.metrics, rtol=1e-6)
  tree_close(s1, s2)
  np.testing.assert_allclose(out.quantized, out_pad.quantized[:3], rtol=1e-6)
  np.testing.assert_array_equal(out.codes, out_pad.codes[:3])
  np.testing.assert_array_equal(out_pad.codes[3:], -1)
  np.testing.assert_array_equal(out_pad.quantized[3:], 0)


def test_kmeans_init_eval_lookup_and_errors():
  x = jax.ShapeDtypeStruct((2, 10, 12), jnp.bfloat16)
  q = kmeans(7, num_groups=3)
  params, state = q.init(jax.random.key(0), x)
  assert params["projection"].shape == (3, 4, 4)
  np.testing.assert_array_equal(params["norm_scale"], 1.0)
  np.testing.assert_array_equal(params["norm_bias"], 0.0)
  assert 0.005 < float(jnp.std(params["codebook"])) < 0.02
  xs = jax.random.normal(jax.random.key(1), x.shape, jnp.bfloat16)
  out = eval_apply(q, params, state, xs)
  assert out.quantized.dtype == jnp.bfloat16 and out.codes.shape == (2, 10, 3)
  again = eval_apply(q, params, state, xs)
  np.testing.assert_array_equal(out.codes, again.codes)
  # lookup == quantized (in float32 before the cast) and -1 gives zeros.
  np.testing.assert_allclose(q.lookup(params, state, out.codes).astype(jnp.bfloat16),
                             out.quantized)
  np.testing.assert_array_equal(q.lookup(params, state, -jnp.ones((1, 3), jnp.int32)), 0)
  with pytest.raises(ValueError, match="num_groups"):
    kmeans(4, num_groups=5).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="codebook_size"):
    kmeans(1)
  with pytest.raises(ValueError, match="gamma"):
    kmeans(4, gamma=-1.0)


# ----------------------------------------------------------------------------------------------
# online_kmeans (DinoSR)
# ----------------------------------------------------------------------------------------------

def ref_online_step(sums, counts, x, mask, decay):
  """One DinoSR update in float32; returns (codes, centroids used, new sums, new counts)."""
  cent = sums / counts[:, None]
  codes = ((x[:, None, :].astype(np.float64) - cent[None]) ** 2).sum(-1).argmin(-1)
  k = sums.shape[0]
  n = np.zeros(k, np.float32)
  s = np.zeros_like(sums)
  for i in range(len(x)):
    if mask[i] > 0:
      n[codes[i]] += 1
      s[codes[i]] += x[i]
  alpha = np.where(n > 0, np.float32(decay), np.float32(1)).astype(np.float32)
  new_counts = alpha * counts + (1 - alpha) * n
  new_sums = alpha[:, None] * sums + (1 - alpha)[:, None] * s
  return codes, cent, new_sums.astype(np.float32), new_counts.astype(np.float32)


def online_setup(decay=0.9, dtype=np.float32):
  rng = np.random.default_rng(6)
  k, d = 4, 3
  q = jitted(online_kmeans(k, decay=decay))
  _, state = q.init(jax.random.key(0), jax.ShapeDtypeStruct((1, d), jnp.float32))
  # Hand-set centroids: code 3 is far from all data, so it stays absent.
  cent = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [50, 50, 50]], np.float32)
  counts = np.array([1.0, 2.0, 0.5, 3.0], np.float32)
  state = dict(state, sums=jnp.asarray(cent * counts[:, None]), counts=jnp.asarray(counts))
  batches = [(rng.normal(size=(2, 5, d)) + rng.choice([0, 4], (2, 5, 1))).astype(dtype)
             for _ in range(2)]
  masks = [np.ones((2, 5), np.float32), np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], np.float32)]
  return q, state, batches, masks


@pytest.mark.parametrize("decay", [0.9, 0.5])
def test_online_two_batches_match_recurrence(decay):
  q, state, batches, masks = online_setup(decay)
  sums, counts = np.asarray(state["sums"]), np.asarray(state["counts"])
  initial_sums, initial_counts = sums.copy(), counts.copy()
  for x, mask in zip(batches, masks):
    out, state = q.apply({}, state, x, mask=mask, train=True)
    rows, m = x.reshape(-1, 3).astype(np.float32), mask.reshape(-1)
    codes, cent, sums, counts = ref_online_step(sums, counts, rows, m, decay)
    np.testing.assert_array_equal(np.asarray(out.codes).reshape(-1), np.where(m > 0, codes, -1))
    np.testing.assert_allclose(np.asarray(out.quantized).reshape(-1, 3),
                               cent[codes] * m[:, None], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.losses["commitment"],
                               np.mean(((cent[codes] - rows) ** 2)[m > 0]), rtol=1e-5)
    np.testing.assert_allclose(state["sums"], sums, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(state["counts"], counts, rtol=1e-6)
  assert int(state["step"]) == 2
  # The absent code is untouched: exactly its initial sums and count.
  np.testing.assert_array_equal(state["sums"][3], initial_sums[3])
  np.testing.assert_array_equal(state["counts"][3], initial_counts[3])
  assert not np.allclose(state["counts"][:3], initial_counts[:3])


def test_online_float32_state_from_bfloat16_inputs():
  q, state, batches, masks = online_setup(dtype=jnp.bfloat16)
  sums, counts = np.asarray(state["sums"]), np.asarray(state["counts"])
  for x, mask in zip(batches, masks):
    out, state = q.apply({}, state, x, mask=mask, train=True)
    rows = np.asarray(x, np.float32).reshape(-1, 3)
    _, _, sums, counts = ref_online_step(sums, counts, rows, mask.reshape(-1), 0.9)
  assert state["sums"].dtype == jnp.float32 and state["counts"].dtype == jnp.float32
  assert out.quantized.dtype == jnp.bfloat16
  np.testing.assert_allclose(state["sums"], sums, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(state["counts"], counts, rtol=1e-6)


def test_online_masked_rows_excluded():
  q, state, batches, masks = online_setup()
  x, mask = batches[1], masks[1]
  out, s1 = q.apply({}, state, x, mask=mask, train=True)
  poisoned = np.where(mask[..., None] > 0, x, 1e4).astype(np.float32)
  out2, s2 = q.apply({}, state, poisoned, mask=mask, train=True)
  tree_close(s1, s2)
  tree_close(out.losses, out2.losses, rtol=1e-6)
  tree_close(out.metrics, out2.metrics, rtol=1e-6)
  np.testing.assert_array_equal(out2.codes[mask == 0], -1)
  np.testing.assert_array_equal(out2.quantized[mask == 0], 0)
  # Appending padded examples at the end changes nothing either.
  x_pad = np.concatenate([x, np.full((3, 5, 3), -7.0, np.float32)])
  m_pad = np.concatenate([mask, np.zeros((3, 5), np.float32)])
  out3, s3 = q.apply({}, state, x_pad, mask=m_pad, train=True)
  tree_close(s1, s3)
  tree_close(out.metrics, out3.metrics, rtol=1e-6)
  np.testing.assert_allclose(out.quantized, out3.quantized[:2])


def test_online_straight_through_and_commitment_gradient():
  q, state, batches, masks = online_setup()
  x, mask = batches[0].reshape(-1, 3), masks[1].reshape(-1)
  cent = np.asarray(state["sums"] / state["counts"][:, None])
  codes = ((x[:, None] - cent[None]) ** 2).sum(-1).argmin(-1)
  cot = np.random.default_rng(7).normal(size=x.shape).astype(np.float32)
  g_out = jax.grad(lambda xx: jnp.sum(q.apply({}, state, xx, mask=mask)[0].quantized * cot))(x)
  np.testing.assert_allclose(g_out, cot * mask[:, None], rtol=1e-6)
  g_loss = jax.grad(lambda xx: q.apply({}, state, xx, mask=mask)[0].losses["commitment"])(x)
  want = 2 * (x - cent[codes]) * mask[:, None] / (mask.sum() * 3)
  np.testing.assert_allclose(g_loss, want, rtol=1e-5, atol=1e-7)


def test_online_init_eval_lookup_and_errors():
  k, d = 16, 5
  q = online_kmeans(k)
  params, state = q.init(jax.random.key(0), jax.ShapeDtypeStruct((3, 7, d), jnp.bfloat16))
  assert params == {} and q.spec == (1, k)
  assert state["sums"].shape == (k, d) and state["sums"].dtype == jnp.float32
  np.testing.assert_array_equal(state["counts"], 1.0)
  # DinoSR init: each feature standardised across the K entries.
  np.testing.assert_allclose(jnp.mean(state["sums"], 0), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(state["sums"], 0), 1.0, rtol=1e-4)
  x = jax.random.normal(jax.random.key(1), (3, 7, d))
  out = eval_apply(q, params, state, x)
  np.testing.assert_allclose(q.lookup(params, state, out.codes), out.quantized, atol=1e-6)
  all_codes = jnp.arange(k)[:, None]
  np.testing.assert_allclose(q.lookup(params, state, all_codes),
                             state["sums"] / state["counts"][:, None])
  np.testing.assert_array_equal(q.lookup(params, state, jnp.array([[-1]])), 0)
  for bad in (-0.1, 1.5):
    with pytest.raises(ValueError, match="decay"):
      online_kmeans(4, decay=bad)
  with pytest.raises(ValueError, match="codebook_size"):
    online_kmeans(1)
