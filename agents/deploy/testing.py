"""A twin day in ERP terms, for anyone who exercises a bundle: tests, the bench, a shadow run.

    day = twin_day(bundle, 30)      # the bundle's network under its own policy to day 30
    decide(bundle, day.state)       # ... which orders day.orders, what the policy placed in the twin that day
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.deploy.bundle import Bundle
from agents.deploy.conversion import snapshot_to_state
from agents.deploy.erp_state import ErpState
from agents.forecasting.live import DemandForecast, OracleForecaster, forecast_over_protection
from twin.engine import Engine
from twin.snapshot import Snapshot


@dataclass(frozen=True, eq=False)
class TwinDay:
    """The network at one decision point: as a snapshot, as an ERP state, and the orders placed there."""

    snapshot: Snapshot
    forecast: DemandForecast  # the oracle's over each node's protection period (with its spread)
    state: ErpState           # the snapshot and forecast in ERP terms (snapshot_to_state)
    orders: np.ndarray        # (nodes, SKUs) what `policy` orders at this decision point


def twin_day(bundle: Bundle, day: int, *, seed: int = 3, horizon: int | None = None, shocks=(),
             policy=None) -> TwinDay:
    """Run the bundle's network under `policy` (default: the bundle's own, from its training stock) to `day`."""
    policy = policy if policy is not None else bundle.twin_policy()
    engine = Engine(bundle.network, horizon=horizon or day + 30, seed=seed, shocks=shocks,
                    initial_on_hand=getattr(policy, "initial_on_hand", None))
    policy.attach(engine)
    while engine.day < day:
        engine.step(policy.act(engine.snapshot()))
    snapshot = engine.snapshot()
    oracle = OracleForecaster()
    oracle.attach(engine)
    review = bundle.manifest.review_period
    forecast = forecast_over_protection(snapshot, oracle, review, with_spread=True)
    state = snapshot_to_state(snapshot, bundle.network, forecast, review_period=review)
    return TwinDay(snapshot, forecast, state, policy.act(snapshot))
