"""Fixtures shared by the trainer tests."""

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """Prepared datasets, shared by the xdist workers (the data layer locks preparation)."""
  return str(tmp_path_factory.getbasetemp().parent / "tfds")
