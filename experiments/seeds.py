"""Seed ranges: which seeds a run simulates, tunes, validates and evaluates on, and the rule that keeps them apart.

A range is `count` consecutive seeds from `first`. Simulation replications and
tuning start at the run's `seed`; RL training starts there too, but its episodes
draw their seeds from that seed's stream (anywhere below 2**31). What is kept
apart, and checked, is validation (checkpoints, from 900,000) and held-out
evaluation (from 1,000,000), so a policy is never scored on the seeds it was
selected on.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.config import ConfigReader, SpecError

VALIDATION_FIRST_SEED = 900_000
HELD_OUT_FIRST_SEED = 1_000_000


@dataclass(frozen=True)
class SeedRange:
    """Seeds first, first + 1, ..., first + count - 1."""

    first: int
    count: int

    def __post_init__(self) -> None:
        if self.first < 0 or self.count < 1:
            raise ValueError(f"SeedRange: first {self.first} and count {self.count}; allowed: first >= 0, count >= 1")

    @classmethod
    def read(cls, r: ConfigReader, *, count: int, first: int, high: int = 10000, count_key: str = "seeds",
             first_key: str = "first_seed") -> SeedRange:
        """`count_key` seeds from `first_key` of reader `r` (defaults `count` and `first`); SpecError naming the key."""
        n = r.integer(count_key, count, low=1, high=high)
        return cls(first=r.integer(first_key, first, low=0), count=n)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.first, self.first + self.count))

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def overlaps(self, other: SeedRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return f"{self.first}..{self.last}"


def check_apart(validation: SeedRange, held_out: SeedRange, key: str = "validation.first_seed") -> None:
    """SpecError naming `key` if the validation seeds overlap the held-out evaluation seeds."""
    if validation.overlaps(held_out):
        raise SpecError(f"{key}: seeds {validation} overlap the evaluation's {held_out}; allowed: validation seeds "
                        f"apart from the held-out ones")
