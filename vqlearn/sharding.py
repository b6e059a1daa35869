"""Meshes from config, the batch and replicated shardings, and multi-host batches.

Meshes use Auto axis types (GSPMD propagation): under the Explicit default of recent
``jax.make_mesh`` plain jnp code on sharded arrays fails (DESIGN.md, Training).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vqlearn.types import Array


def make_mesh(axes: Sequence[tuple[str, int]], devices: Sequence[jax.Device] | None = None
              ) -> Mesh:
  """A mesh from ``[(name, size), ...]``; one size may be -1 (the devices left over).

  Fixed sizes that need fewer devices than a single process has take the first ones, so a
  run can be compared with itself on fewer devices.

  Raises:
    ValueError: a malformed axis list, or sizes that do not multiply to the device count.
  """
  devices = list(jax.devices() if devices is None else devices)
  try:
    names = tuple(str(name) for name, _ in axes)
    sizes = [int(size) for _, size in axes]
  except (TypeError, ValueError):
    raise ValueError(f"config.mesh must be a list of (axis name, size) pairs, got {axes!r}"
                     ) from None
  if not names or sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh needs axis sizes >= 1 and at most one -1, got {axes!r}")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"config.mesh {axes!r}: {len(devices)} devices are not divisible by "
                       f"{known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if jax.process_count() == 1 and int(np.prod(sizes)) < len(devices):
    devices = devices[:int(np.prod(sizes))]
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(f"config.mesh {axes!r} has {int(np.prod(sizes))} devices, but "
                     f"{len(devices)} are available")
  return jax.make_mesh(tuple(sizes), names, devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh's ``data`` axis; the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def global_batch(local: Mapping[str, np.ndarray], sharding: NamedSharding) -> dict[str, Array]:
  """Host-local batches (this process's consecutive slice) -> one global array per key."""
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for key, value in local.items()}


def local_copy(tree: Any) -> Any:
  """A replicated global pytree as arrays on this process's first device.

  Lets a single process evaluate without collectives, also in a multi-host run where the
  global arrays are not fully addressable.
  """
  return jax.tree.map(lambda a: a.addressable_data(0), tree)


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                           process_id: int = -1) -> None:
  """``jax.distributed.initialize``; empty arguments let JAX detect the cluster (TPU, SLURM).

  On CPU the cross-process collectives go through gloo. Call before any other JAX use.
  """
  if jax.distributed.is_initialized():
    return
  kwargs: dict[str, Any] = {}
  if coordinator_address:
    kwargs.update(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
