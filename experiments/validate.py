"""Validate the twin against reference cases with known optimal costs.

    python -m experiments.validate tests/reference_cases/*.json [--periods 100000] [--warmup 1000] [--seed 0]

Each case is mapped onto the twin (scenarios/reference.py documents the timing
convention), its stated optimal policy is run for `--periods` days, and the
simulated cost per period (mean +- standard error by batch means) is printed next
to the analytic optimum (plus the timing-convention adjustment of serial cases,
documented in scenarios/reference.py). The exit status is 1 when any case differs by more than
1% AND by more than 3 standard errors, 2 for a bad case file.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from agents.baselines.catalog import optimal_policy
from scenarios.reference import ReferenceCase, load_case
from twin import Engine, SpecError
from twin.costs import COST_KINDS

RELATIVE_TOLERANCE = 0.01
STANDARD_ERRORS = 3.0
BATCHES = 50


@dataclass(frozen=True)
class Validation:
    """Simulated against analytic cost of one case."""

    case: ReferenceCase
    mean: float
    standard_error: float
    periods: int
    seconds: float

    @property
    def difference(self) -> float:
        return self.mean - self.case.optimal_cost

    @property
    def relative(self) -> float:
        return self.difference / self.case.optimal_cost

    @property
    def z(self) -> float:
        return self.difference / self.standard_error if self.standard_error > 0 else float("inf")

    @property
    def passed(self) -> bool:
        return abs(self.relative) <= RELATIVE_TOLERANCE or abs(self.z) <= STANDARD_ERRORS


def validate(case: ReferenceCase, periods: int, warmup: int, seed: int) -> Validation:
    """Run the case's optimal policy on the twin and compare the cost per period with the optimum."""
    started = time.perf_counter()
    network = case.network()
    engine = Engine(network, horizon=periods + warmup, seed=seed, warmup=warmup, invariants="warn")
    result = engine.run(optimal_policy(case, network))
    daily = sum(result.series[f"cost_{c}"] for c in COST_KINDS).sum(axis=1)[warmup:]
    batches = np.array_split(daily, BATCHES)
    means = np.array([b.mean() for b in batches])
    se = float(means.std(ddof=1) / np.sqrt(BATCHES))
    mean = float(daily.mean()) + case.convention_adjustment
    return Validation(case, mean, se, periods, time.perf_counter() - started)


def format_row(v: Validation) -> str:
    verdict = "ok" if v.passed else "FAIL"
    return (f"{v.case.case_id:<36} {v.case.kind:<10} {v.case.optimal_cost:>10.4f} {v.mean:>10.4f} "
            f"{v.standard_error:>8.4f} {100 * v.relative:>+7.2f}% {v.z:>+6.2f} {v.seconds:>6.1f}s  {verdict}")


HEADER = (f"{'case':<36} {'kind':<10} {'analytic':>10} {'simulated':>10} {'+-SE':>8} {'diff':>8} {'z':>6} "
          f"{'time':>7}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", help="reference case JSON files (schema of tests/reference_cases)")
    parser.add_argument("--periods", type=int, default=100_000, help="simulated periods (days) after warm-up")
    parser.add_argument("--warmup", type=int, default=1_000, help="periods discarded at the start")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.periods < BATCHES * 10:
        parser.error(f"--periods: {args.periods} is too few; allowed: >= {BATCHES * 10}")
    if args.warmup < 0:
        parser.error("--warmup: allowed: >= 0")
    try:
        cases = [load_case(path) for path in args.cases]  # all read and checked before any simulation
        for case in cases:
            case.network()
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(HEADER)
    failed = 0
    for case in cases:
        v = validate(case, args.periods, args.warmup, args.seed)
        print(format_row(v), flush=True)
        failed += not v.passed
    print(f"{len(cases) - failed} of {len(cases)} cases within {100 * RELATIVE_TOLERANCE:g}% or "
          f"{STANDARD_ERRORS:g} standard errors of the analytic optimum")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
