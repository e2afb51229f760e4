"""The safety factor z of the baseline policies: a level is the mean demand over the protection period plus z
standard deviations of it.

One default and one allowed range for every policy that has a z (BaseStock, EchelonBaseStock, (s, S),
ReorderPointEOQ, the forecast-driven base-stock), every config that sets one (conf/policy, evaluate's
`forecast_z`) and the tuner's grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from twin.config import ConfigReader

SAFETY_FACTOR = 1.65  # the default z: the standard normal's 95% quantile (a 95% cycle-service target)
# the z a config may set: down to 3 sd below the mean, up to 10 sd above it (a learned forecaster's spread can
# be far too narrow, which a large z makes up for)
SAFETY_FACTOR_BOUNDS = (-3.0, 10.0)


def safety_factors(kinds: Sequence[str], z: Mapping[str, float] | None = None) -> np.ndarray:
    """A (nodes, 1) column of z: `z[kind]` for each node's kind, SAFETY_FACTOR for kinds `z` leaves out."""
    z = z or {}
    return np.array([z.get(kind, SAFETY_FACTOR) for kind in kinds], dtype=float)[:, None]


def read_safety_factors(r: ConfigReader, kinds: Sequence[str] = ("store", "dc"),
                        defaults: Mapping[str, float] | None = None) -> dict[str, float]:
    """z per node kind from a config section such as `{store: 1.65, dc: 1.0}` (`defaults[kind]`, else
    SAFETY_FACTOR, where left out); a SpecError names the key of a z outside SAFETY_FACTOR_BOUNDS or of a kind not
    in `kinds`."""
    low, high = SAFETY_FACTOR_BOUNDS
    defaults = defaults or {}
    z = {kind: r.number(kind, defaults.get(kind, SAFETY_FACTOR), low=low, high=high) for kind in kinds}
    r.done()
    return z
