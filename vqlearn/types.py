"""Type aliases used across vqlearn (documentation, not enforcement)."""

from typing import Any, Mapping

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # pytree trained by the optimizer
State = Any  # pytree updated by apply (statistics, counters)
Batch = Mapping[str, Array]
Metrics = dict[str, Array]
