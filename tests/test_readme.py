"""The README's quantizer example runs as printed and does what its comments say."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert blocks, "README.md has no python example"
  scope = {}
  exec(compile(blocks[0], str(README), "exec"), scope)  # noqa: S102 — our own README
  out, x_hat = scope["out"], scope["x_hat"]
  assert out.codes.shape == (8, 50, 2)
  np.testing.assert_allclose(x_hat, out.quantized, atol=1e-6)
