"""Independent random streams per (node, purpose), all spawned from one run seed.

No global RNG is used anywhere in the twin. A stream is keyed by names rather
than by position, so adding a node or a purpose never changes the draws of
another one; two runs with the same seed see the same demand and lead times
whatever their policies do (common random numbers).
"""

from __future__ import annotations

import zlib

import numpy as np


class Streams:
    """A factory of `numpy.random.Generator`s keyed by (owner, purpose) under one seed."""

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: {seed!r} is not allowed; allowed: an integer >= 0")
        self.seed = int(seed)

    def generator(self, owner: str, purpose: str) -> np.random.Generator:
        """The stream of `purpose` ('demand', 'lead_time', 'promotion', ...) for `owner` (a node name or 'network')."""
        key = (zlib.crc32(owner.encode()), zlib.crc32(purpose.encode()))
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))
