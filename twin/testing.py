"""Checks that ship with the twin, so anyone can test a network, a policy or a change to the engine.

In the spirit of `pettingzoo.test`: plain functions that raise `AssertionError`
with a clear message, usable from pytest, a notebook or a CI script. Only numpy
and simpy are needed (no pytest).

- `check_state(engine)`: the state at a decision point is sound (no negative
  stock, network conservation, in-transit stock equals the pending shipments).
- `check_ledger(engine_or_result, network=None)`: the ledger balances, from
  the engine's own records or independently from a result's daily series.
- `check_kpis(kpis)`: KPIs are finite and in range (fill rates in [0, 1], costs >= 0, ...).
- `run_with_invariants(network, policy, horizon, seed, shocks)`: a run with
  invariants='error' that also runs `check_state` at every decision point.
- `check_determinism(...)`: same seed => identical KPIs and series.
- `check_common_random_numbers(...)`: two policies, one seed => the same demand
  and lead-time draws.
- `check_step_matches_run(...)`: stepping with a policy's orders equals `run(policy)`.
- `check_continuation(...)`: a run snapshotted at day d and continued from the snapshot (through its JSON)
  is bit-identical, from day d on, to the uninterrupted run.
- `OrderUpTo(levels)`: a tiny installation base-stock policy, so the twin can be tested without agents/.
- `two_dc_network()`: a small network mapping (two DCs, three demand laws, random lead times) for tests;
  `two_dc_shocks()`: one shock of each kind on it.

These read a few of the engine's internals on purpose (`bought`, `sold_total`,
`flows_outflow`, `shipments`, `lead_times`, `ledger`): they are the twin's own
test kit, and a change to those internals must keep them passing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from twin.engine import Engine, OrderPolicy, RunResult
from twin.shocks import DcClosure, DemandShock, LeadTimeShock, Shock, SupplierOutage
from twin.snapshot import Snapshot, snapshot_from_dict
from twin.spec import NetworkSpec
from twin.state import NetworkState, orders_up_to

__all__ = [
    "OrderUpTo", "assert_identical", "check_common_random_numbers", "check_continuation", "check_determinism",
    "check_kpis", "check_ledger", "check_state", "check_step_matches_run", "run_with_invariants", "two_dc_network",
    "two_dc_shocks",
]

TOLERANCE = 1e-6
STATE_FIELDS = ("on_hand", "backorders", "in_transit", "on_order")
PolicyFactory = Callable[[], OrderPolicy]


def _tol(scale: float) -> float:
    return TOLERANCE * max(1.0, abs(scale))


def _where(names: Sequence[str], index: tuple) -> str:
    i, k = (int(x) for x in index)
    return f"node {names[i]!r} SKU {k}"


# ---------------------------------------------------------------------------
# State and ledger
# ---------------------------------------------------------------------------

def pending_shipments(engine: Engine) -> np.ndarray:
    """Sum of the quantities of the engine's pending shipments, per receiving node and SKU."""
    total = np.zeros((engine.n_nodes, engine.n_sku))
    for child, pending in enumerate(engine.shipments):
        for shipment in (pending.values() if isinstance(pending, Mapping) else pending):
            total[child] += shipment.quantity
    return total


def check_state(engine: Engine) -> None:
    """Check the engine's state now (meant for a decision point or the end of a run).

    No state is negative; in_transit equals the sum of the pending shipments per node
    and SKU; units bought from suppliers == on hand + in transit + sold so far.
    """
    names = engine.topology.names
    day = f"day {engine.day}"
    scale = max(1.0, float(engine.bought))
    tol = _tol(scale)
    for label in STATE_FIELDS:
        array = getattr(engine, label)
        if not np.all(np.isfinite(array)):
            where = _where(names, np.argwhere(~np.isfinite(array))[0])
            raise AssertionError(f"{day}: {where}: {label} is not finite")
        if array.size and array.min() < -tol:
            where = _where(names, np.unravel_index(np.argmin(array), array.shape))
            raise AssertionError(f"{day}: {where}: {label} is negative ({array.min():g})")
    supplier = engine.topology.is_supplier
    if np.abs(engine.on_hand[supplier]).max(initial=0) > tol:
        raise AssertionError(f"{day}: a supplier holds stock; suppliers ship from outside the network")
    pending = pending_shipments(engine)
    gap = np.abs(pending - engine.in_transit)
    if gap.size and gap.max() > tol:
        where = _where(names, np.unravel_index(np.argmax(gap), gap.shape))
        i, k = np.unravel_index(np.argmax(gap), gap.shape)
        raise AssertionError(f"{day}: {where}: in_transit is {engine.in_transit[i, k]:g} but the pending shipments "
                             f"sum to {pending[i, k]:g}")
    # units sold so far: closed days plus what stores sold today before the books close
    sold = float(engine.sold_total) + float(engine.flows_outflow[engine.topology.is_store].sum())
    held = float(engine.on_hand[~supplier].sum() + engine.in_transit.sum())
    if abs(engine.bought - held - sold) > tol * max(1, engine.n_sku):
        raise AssertionError(f"{day}: network conservation: bought {engine.bought:g} units from suppliers but on hand "
                             f"{engine.on_hand[~supplier].sum():g} + in transit {engine.in_transit.sum():g} "
                             f"+ sold {sold:g} = {held + sold:g}")


def check_ledger(subject: Engine | RunResult, network: NetworkSpec | None = None) -> None:
    """Check that every unit is accounted for.

    An `Engine`: its recorded ledger violations are empty and `check_state` holds.
    A `RunResult` (with its `network`): no recorded violations, and the daily
    series balance on their own: per node, on_hand[t] = on_hand[t-1] + received[t]
    - outflow[t] (stock starts at zero), and network-wide, cumulative supplier
    shipments = on hand + in transit + cumulative store sales, every day.
    """
    if isinstance(subject, Engine):
        if subject.ledger.violations:
            raise AssertionError(f"ledger violations recorded: {subject.ledger.violations[0]}")
        check_state(subject)
        return
    if not isinstance(subject, RunResult):
        raise TypeError(f"check_ledger: expected an Engine or a RunResult, got {type(subject).__name__}")
    if network is None:
        raise TypeError("check_ledger: a RunResult needs the network it was run on (network=...)")
    if subject.violations:
        raise AssertionError(f"ledger violations recorded: {subject.violations[0]}")
    kinds = np.array([n.kind for n in network.nodes])
    names = network.node_names
    supplier, store = kinds == "supplier", kinds == "store"
    s = subject.series
    on_hand, received, outflow, in_transit = s["on_hand"], s["received"], s["outflow"], s["in_transit"]
    if on_hand.shape[1:] != (len(names),):
        raise AssertionError(f"series cover {on_hand.shape[1:]} nodes, the network has {len(names)}")
    for label in STATE_FIELDS:
        if s[label].size and s[label].min() < -_tol(float(np.abs(s[label]).max())):
            day, i = np.unravel_index(np.argmin(s[label]), s[label].shape)
            raise AssertionError(f"day {day}: node {names[i]!r}: {label} is negative ({s[label][day, i]:g})")
    if subject.sku_series is not None:
        for label in ("on_hand", "backorders"):
            array = subject.sku_series[label]
            if array.size and array.min() < -_tol(float(np.abs(array).max())):
                day, i, k = np.unravel_index(np.argmin(array), array.shape)
                raise AssertionError(f"day {day}: node {names[i]!r} SKU {k}: {label} is negative "
                                     f"({array[day, i, k]:g})")
    scale = max(1.0, float(outflow[:, supplier].sum()))
    tol = _tol(scale)
    if np.abs(on_hand[:, supplier]).max(initial=0) > tol:
        raise AssertionError("a supplier holds stock; suppliers ship from outside the network")
    previous = np.vstack([np.zeros((1, len(names))), on_hand[:-1]])
    residual = (previous + received - outflow - on_hand)[:, ~supplier]
    if residual.size and np.abs(residual).max() > tol:
        day, j = np.unravel_index(np.argmax(np.abs(residual)), residual.shape)
        i = np.flatnonzero(~supplier)[j]
        raise AssertionError(f"day {day}: node {names[i]!r}: on_hand {on_hand[day, i]:g} differs from previous "
                             f"{previous[day, i]:g} + received {received[day, i]:g} - out {outflow[day, i]:g} "
                             f"by {-residual[day, j]:g}")
    bought = np.cumsum(outflow[:, supplier].sum(axis=1))
    sold = np.cumsum(outflow[:, store].sum(axis=1))
    held = on_hand[:, ~supplier].sum(axis=1) + in_transit.sum(axis=1)
    gap = np.abs(bought - held - sold)
    if gap.size and gap.max() > tol * max(1, int(subject.meta.get("n_sku", 1))):
        day = int(np.argmax(gap))
        raise AssertionError(f"day {day}: network conservation: bought {bought[day]:g} units from suppliers but "
                             f"on hand + in transit {held[day]:g} + sold {sold[day]:g} = {held[day] + sold[day]:g}")


# ---------------------------------------------------------------------------
# KPIs
# ---------------------------------------------------------------------------

UNIT_INTERVAL = ("fill_rate", "cycle_service_level")
NON_NEGATIVE = ("demand", "units_out", "lost_units", "average_on_hand", "average_backorders", "order_lines",
                "inventory_turnover", "days_of_inventory", "bullwhip_ratio", "order_variance", "cost_per_day")


def check_kpis(kpis: Mapping[str, Any]) -> None:
    """KPIs are finite or None; rates in [0, 1]; costs, quantities and ratios >= 0; totals add up."""

    def walk(block: Mapping[str, Any], path: str) -> None:
        for key, value in block.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, Mapping):
                walk(value, where)
                continue
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise AssertionError(f"kpis {where}: expected a number or None, got {value!r}")
            if not math.isfinite(value):
                raise AssertionError(f"kpis {where}: {value!r} is not finite")
            if key in UNIT_INTERVAL and not (-TOLERANCE <= value <= 1 + TOLERANCE):
                raise AssertionError(f"kpis {where}: {value:g} is outside [0, 1]")
            if (key in NON_NEGATIVE or str(key).startswith("cost_")) and value < -_tol(value):
                raise AssertionError(f"kpis {where}: {value:g} is negative")
        parts = [v for k, v in block.items() if str(k).startswith("cost_") and k not in ("cost_total", "cost_per_day")]
        if "cost_total" in block and parts:
            total = sum(parts)
            if abs(block["cost_total"] - total) > _tol(total):
                raise AssertionError(f"kpis {path}.cost_total: {block['cost_total']:g} differs from the sum of its "
                                     f"parts {total:g}")

    walk(kpis, "")
    if "network" in kpis and "nodes" in kpis:
        total = kpis["network"]["cost_total"]
        nodes = sum(block["cost_total"] for block in kpis["nodes"].values())
        if abs(total - nodes) > _tol(total):
            raise AssertionError(f"kpis network.cost_total {total:g} differs from the sum over nodes {nodes:g}")


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

def _policy(policy: OrderPolicy | PolicyFactory) -> OrderPolicy:
    """A policy instance from an instance or a zero-argument factory."""
    return policy if hasattr(policy, "act") else policy()


def run_with_invariants(network: NetworkSpec, policy: OrderPolicy | PolicyFactory, horizon: int, seed: int,
                        shocks: Sequence[Shock] = (), *, warmup: int = 0) -> RunResult:
    """Run with invariants='error', checking `check_state` at every decision point and the ledger and KPIs
    at the end; return the result (with per-SKU series)."""
    policy = _policy(policy)
    engine = Engine(network, horizon=horizon, seed=seed, shocks=shocks, warmup=warmup, invariants="error",
                    per_sku_series=True)
    while not engine.done:
        check_state(engine)
        state = engine.state_for(policy)
        engine.step(policy.act(state))
    check_state(engine)
    result = engine.result(policy=type(policy).__name__)
    check_ledger(engine)
    check_ledger(result, network)
    check_kpis(result.kpis)
    return result


def assert_identical(a: Any, b: Any, path: str = "") -> None:
    """Exact, recursive equality of KPI dicts, series dicts, arrays and numbers; names the first difference."""
    where = path or "value"
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            raise AssertionError(f"{where}: {type(a).__name__} vs {type(b).__name__}")
        if set(a) != set(b):
            raise AssertionError(f"{where}: keys differ: {sorted(set(a) ^ set(b))}")
        for key in a:
            assert_identical(a[key], b[key], f"{path}.{key}" if path else str(key))
        return
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise AssertionError(f"{where}: shapes differ: {a.shape} vs {b.shape}")
        same = np.asarray(a == b)
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            same = same | (np.isnan(a) & np.isnan(b))
        if not same.all():
            idx = tuple(int(x) for x in np.argwhere(~same)[0]) if same.ndim else ()
            raise AssertionError(f"{where}{list(idx)}: {a[idx]!r} vs {b[idx]!r}")
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            raise AssertionError(f"{where}: lengths differ: {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
        return
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    if (a is None) != (b is None) or a != b:
        raise AssertionError(f"{where}: {a!r} vs {b!r}")


def _run(network, policy, horizon, seed, shocks, warmup, per_sku_series=True) -> tuple[Engine, RunResult]:
    engine = Engine(network, horizon=horizon, seed=seed, shocks=shocks, warmup=warmup, invariants="error",
                    per_sku_series=per_sku_series)
    return engine, engine.run(_policy(policy))


def check_determinism(network: NetworkSpec, policy_factory: PolicyFactory, horizon: int, seed: int,
                      shocks: Sequence[Shock] = (), *, warmup: int = 0) -> RunResult:
    """Two runs with the same seed (and fresh policies) give identical KPIs, series and lead-time draws."""
    engine_a, a = _run(network, policy_factory(), horizon, seed, shocks, warmup)
    engine_b, b = _run(network, policy_factory(), horizon, seed, shocks, warmup)
    _all_identical(f"same seed {seed}, different results", (a.kpis, b.kpis, "kpis"),
                   (a.series, b.series, "series"), (a.sku_series, b.sku_series, "sku_series"),
                   (engine_a.lead_times, engine_b.lead_times, "lead_times"))
    return a


def check_common_random_numbers(network: NetworkSpec, policy_a: OrderPolicy | PolicyFactory,
                                policy_b: OrderPolicy | PolicyFactory, horizon: int, seed: int,
                                shocks: Sequence[Shock] = (), *, warmup: int = 0) -> tuple[RunResult, RunResult]:
    """Two policies run with one seed see the same customer demand per store, SKU and day, and the same
    lead-time draws (common random numbers); return both results."""
    engine_a, a = _run(network, policy_a, horizon, seed, shocks, warmup)
    engine_b, b = _run(network, policy_b, horizon, seed, shocks, warmup)
    stores = np.array([n.kind == "store" for n in network.nodes])
    _all_identical(f"common random numbers broken (seed {seed})",
                   (a.sku_series["demand"][:, stores], b.sku_series["demand"][:, stores], "store demand"),
                   (a.series["demand"][:, stores], b.series["demand"][:, stores], "store demand (float64)"),
                   (engine_a.lead_times, engine_b.lead_times, "lead_times"))
    return a, b


def check_step_matches_run(network: NetworkSpec, policy_factory: PolicyFactory, horizon: int, seed: int,
                           shocks: Sequence[Shock] = (), *, warmup: int = 0) -> RunResult:
    """Stepping an engine with the orders a policy gives equals `Engine.run(policy)` exactly."""
    _, ran = _run(network, policy_factory(), horizon, seed, shocks, warmup)
    policy = policy_factory()
    engine = Engine(network, horizon=horizon, seed=seed, shocks=shocks, warmup=warmup, invariants="error",
                    per_sku_series=True)
    while not engine.done:
        engine.step(policy.act(engine.state_for(policy)))
    stepped = engine.result(policy=type(policy).__name__)
    _all_identical("step() and run() disagree", (ran.kpis, stepped.kpis, "kpis"),
                   (ran.series, stepped.series, "series"), (ran.sku_series, stepped.sku_series, "sku_series"))
    return ran


def _all_identical(message: str, *pairs: tuple[object, object, str]) -> None:
    """assert_identical on each (a, b, label), failing with `message` and the first difference."""
    try:
        for a, b, label in pairs:
            assert_identical(a, b, label)
    except AssertionError as err:
        raise AssertionError(f"{message}: {err}") from None


class OrderUpTo:
    """Order up to fixed levels (nodes, SKUs) of the inventory position every day: the twin's own test policy."""

    def __init__(self, levels: np.ndarray) -> None:
        self.levels = np.asarray(levels, dtype=float)

    def act(self, state: NetworkState) -> np.ndarray:
        return orders_up_to(self.levels, state.inventory_position, state.topology.is_supplier)


def check_continuation(network: NetworkSpec, policy_factory: PolicyFactory, horizon: int, seed: int, day: int,
                       shocks: Sequence[Shock] = (), *, through_json: bool = True) -> Snapshot:
    """Snapshot a run at `day`, continue it from the snapshot (read back from its JSON when `through_json`),
    and require the continued run's KPIs and daily series (per node and per SKU) to equal, bit for bit, those
    of the uninterrupted run from `day` on (its KPIs counted from `day`: warmup = day). Returns the snapshot."""
    import json

    full = Engine(network, horizon=horizon, seed=seed, shocks=shocks, warmup=day, per_sku_series=True,
                  invariants="error").run(_policy(policy_factory))
    engine = Engine(network, horizon=horizon, seed=seed, shocks=shocks, per_sku_series=True, invariants="error")
    policy = _policy(policy_factory)
    while engine.day < day:
        engine.step(policy.act(engine.state_for(policy)))
    snapshot = engine.snapshot()
    if through_json:
        snapshot = snapshot_from_dict(json.loads(json.dumps(snapshot.to_dict())), network)
    continued = Engine(network, horizon=horizon, seed=seed, shocks=shocks, per_sku_series=True,
                       invariants="error", start=snapshot)
    result = continued.run(policy)
    assert_identical(full.kpis, result.kpis, "kpis")
    assert_identical({k: v[day:] for k, v in full.series.items()}, result.series, "series")
    assert_identical({k: v[day:] for k, v in full.sku_series.items()}, result.sku_series, "sku_series")
    check_ledger(continued)
    return snapshot


def two_dc_network(extra_store: bool = False) -> dict:
    """A network mapping for tests: a supplier, two DCs, four stores with backup DCs (one more by option), three
    SKUs of different demand laws, random lead times, promotions and weather."""
    stores = [{"name": f"s{i}", "kind": "store", "parent": f"dc{i % 2}", "backup_parent": f"dc{(i + 1) % 2}",
               "region": ("north", "south")[i % 2], "lead_time": {"dist": "poisson", "mean": 1.5}}
              for i in range(5 if extra_store else 4)]
    return {
        "name": "crn",
        "skus": {"items": [
            {"name": "milk", "group": "food", "dist": "poisson", "mean": 6, "fixed_order_cost": 2},
            {"name": "lego", "group": "toys", "dist": "negative_binomial", "mean": 2, "dispersion": 2},
            {"name": "rare", "group": "toys", "dist": "zero_inflated_poisson", "mean": 0.5, "zero_prob": 0.6},
        ]},
        "demand": {"weekly": [1, 1, 1, 1, 1.3, 1.6, 0.8], "promotion": {"weekly_probability": 0.2},
                   "weather_sd": 0.3},
        "nodes": [
            {"name": "sup", "kind": "supplier"},
            {"name": "dc0", "kind": "dc", "parent": "sup", "lead_time": {"dist": "gamma", "mean": 3, "cv": 0.4}},
            {"name": "dc1", "kind": "dc", "parent": "sup",
             "lead_time": {"dist": "empirical", "values": [2, 3, 6], "probs": [0.5, 0.3, 0.2]}},
            *stores,
        ],
    }


def two_dc_shocks() -> tuple[Shock, ...]:
    """One shock of each kind on `two_dc_network` within 60 days: a food surge, doubled lead times, dc0 closed
    with re-routing, a supplier outage."""
    return (DemandShock(start=10, end=30, multiplier=2.5, groups=("food",)),
            LeadTimeShock(start=20, end=40, multiplier=2.0),
            DcClosure(start=35, end=45, dc="dc0", reroute=True),
            SupplierOutage(start=50, end=53, supplier="sup"))
