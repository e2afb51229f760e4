"""Hand-computed checks of the day contract (docs/architecture.md, The engine) and of the twin's mechanics.

Demand is made deterministic with a normal law of cv 0 (every draw equals the
mean), so every number below can be worked out on paper.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin import (
    CapacityCut,
    DcClosure,
    DemandShock,
    Engine,
    InvariantError,
    LeadTimeShock,
    SupplierOutage,
    network_from_dict,
)
from twin.ledger import Ledger
from twin.rationing import FirstComeFirstServed, Priority, Proportional, split_priority, split_proportional
from twin.testing import OrderUpTo, check_kpis, check_ledger, check_state


def sku(mean: float = 3.0, **kw) -> dict:
    """A SKU whose daily demand is exactly `mean` (normal law, cv 0)."""
    return {"name": kw.pop("name", "a"), "dist": "normal", "cv": 0.0, "mean": mean, **kw}


def network(nodes: list[dict], items: list[dict] | None = None, **top) -> object:
    return network_from_dict({"name": "hand", "skus": {"items": items or [sku()]}, "nodes": nodes, **top})


def chain(lead: float = 1, *, unmet: str = "backorder", mean: float = 3.0, item: dict | None = None,
          store: dict | None = None, **top):
    """supplier -> store."""
    return network([{"name": "sup", "kind": "supplier"},
                    {"name": "store", "kind": "store", "parent": "sup", "unmet": unmet,
                     "lead_time": {"dist": "deterministic", "mean": lead}, **(store or {})}],
                   [item or sku(mean)], **top)


def drive(engine: Engine, orders: dict[int, dict[str, float | list[float]]]) -> list:
    """Step to the end with explicit orders {day: {node: qty}}; check the state at every decision point.

    Returns the state seen at each day's decision point.
    """
    states = []
    while not engine.done:
        check_state(engine)
        states.append(engine.state())
        q = np.zeros((engine.n_nodes, engine.n_sku))
        for name, qty in orders.get(engine.day, {}).items():
            q[engine.network.index(name)] = qty
        engine.step(q)
    check_ledger(engine)
    return states


def finish(engine: Engine, orders: dict) -> tuple[list, object]:
    states = drive(engine, orders)
    result = engine.result()
    check_ledger(result, engine.network)
    check_kpis(result.kpis)
    return states, result


# ---------------------------------------------------------------------------
# The day contract
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("lead", [0, 1, 2, 4])
def test_base_stock_order_arrives_after_exactly_lead_time(lead):
    """S = 20, demand 3/day: the first order (20) arrives on day L, before that day's demand."""
    S, d = 20.0, 3.0
    net = chain(lead, mean=d)
    engine = Engine(net, horizon=lead + 6, seed=0, invariants="error")
    policy = OrderUpTo(np.array([[0.0], [S]]))
    states = []
    while not engine.done:
        states.append(engine.state())
        engine.step(policy.act(engine.state()))
    result = engine.result()
    store = 1
    received = result.series["received"][:, store]
    assert received[lead] == S
    assert not received[:lead].any()
    # before the arrival, demand piles up as backorders; on day L they are served from the arrival first
    for t in range(lead):
        assert states[t].on_hand[store, 0] == 0
        assert states[t].backorders[store, 0] == d * t
        if t > 0:
            assert states[t].in_transit[store, 0] >= S
    if lead > 0:  # (with L = 0 the decision of day 0 comes before the order)
        assert states[lead].on_hand[store, 0] == S - d * lead
        assert states[lead].backorders[store, 0] == 0
    # classical base stock: demand over L + 1 days against S, so end-of-day stock is S - d (L + 1)
    np.testing.assert_array_equal(result.series["on_hand"][lead:, store], S - d * (lead + 1))
    np.testing.assert_array_equal(result.series["filled"][lead:, store], d)
    if lead == 0:
        assert result.series["backorders"][:, store].max() == 0
        assert result.kpis["nodes"]["store"]["fill_rate"] == 1.0


def test_backorders_are_served_before_new_demand():
    net = chain(1, mean=3)
    engine = Engine(net, horizon=4, seed=0, invariants="error")
    states, result = finish(engine, {1: {"store": 4}})
    s = result.series
    # day 0 and 1: 6 backordered; day 2: 4 arrive and all go to the backorders, today's 3 wait
    np.testing.assert_array_equal(s["backorders"][:, 1], [3, 6, 5, 8])
    np.testing.assert_array_equal(s["filled"][:, 1], [0, 0, 0, 0])
    np.testing.assert_array_equal(s["outflow"][:, 1], [0, 0, 4, 0])
    assert states[2].backorders[1, 0] == 2 and states[2].on_hand[1, 0] == 0


def test_lost_sales_are_counted_not_backordered():
    net = chain(1, unmet="lost", mean=3)
    engine = Engine(net, horizon=4, seed=0, invariants="error")
    _, result = finish(engine, {0: {"store": 5}})
    s = result.series
    np.testing.assert_array_equal(s["lost"][:, 1], [3, 0, 1, 3])
    np.testing.assert_array_equal(s["filled"][:, 1], [0, 3, 2, 0])
    assert s["backorders"].max() == 0
    store = result.kpis["nodes"]["store"]
    assert store["lost_units"] == 7 and store["demand"] == 12
    assert store["fill_rate"] == pytest.approx(5 / 12)


def test_zero_lead_time_dc_ships_its_receipt_the_next_day():
    """Decisions are simultaneous: a DC allocates before its own same-day receipt arrives."""
    net = network([{"name": "sup", "kind": "supplier"},
                   {"name": "dc", "kind": "dc", "parent": "sup", "lead_time": {"mean": 0}},
                   {"name": "store", "kind": "store", "parent": "dc", "lead_time": {"mean": 0}}], [sku(0)])
    engine = Engine(net, horizon=3, seed=0, invariants="error")
    states, _ = finish(engine, {0: {"dc": 5, "store": 3}})
    assert states[1].on_hand[1, 0] == 5 and states[1].backorders[1, 0] == 3 and states[1].on_hand[2, 0] == 0
    assert states[2].on_hand[1, 0] == 2 and states[2].backorders[1, 0] == 0 and states[2].on_hand[2, 0] == 3


# ---------------------------------------------------------------------------
# Ledger and rationing
# ---------------------------------------------------------------------------

def ledger_day(ledger: Ledger, day: int, *, start, received, outflow, on_hand, bought: float = 0.0,
               sold: float = 0.0) -> None:
    """One day of a one-store ledger; `outflow` is what the store sold (either Ledger.check_day signature)."""
    zero = np.zeros_like(on_hand)
    state = {"start": start, "received": received, "on_hand": on_hand, "backorders": zero, "in_transit": zero,
             "on_order": zero, "bought_total": bought, "sold_total": sold}
    if "outflow" in inspect.signature(ledger.check_day).parameters:
        ledger.check_day(day, outflow=outflow, **state)
    else:
        ledger.check_day(day, shipped=zero, sold=outflow, **state)


def test_split_proportional_fractional():
    alloc = split_proportional(np.array([6.0]), np.array([[2.0], [4.0], [6.0]]), integer=False)
    np.testing.assert_allclose(alloc[:, 0], [1.0, 2.0, 3.0])


def test_split_proportional_not_short_gives_every_request():
    requests = np.array([[2.0, 1.0], [3.0, 0.0]])
    alloc = split_proportional(np.array([5.0, 9.0]), requests, integer=True)
    np.testing.assert_array_equal(alloc, requests)
    assert alloc is not requests


def test_split_proportional_integer_largest_remainder():
    # shares 10/14 * (3, 3, 3, 5) = (2.14, 2.14, 2.14, 3.57): floors 2, 2, 2, 3 and the one unit left goes to
    # the largest remainder (the last row)
    alloc = split_proportional(np.array([10.0]), np.array([[3.0], [3.0], [3.0], [5.0]]), integer=True)
    np.testing.assert_array_equal(alloc[:, 0], [2, 2, 2, 4])
    # ties go to the earlier rows
    alloc = split_proportional(np.array([2.0]), np.array([[1.0], [1.0], [1.0]]), integer=True)
    np.testing.assert_array_equal(alloc[:, 0], [1, 1, 0])


def test_split_proportional_columns_are_independent():
    requests = np.array([[4.0, 1.0], [4.0, 1.0]])
    alloc = split_proportional(np.array([3.0, 10.0]), requests, integer=True)
    np.testing.assert_array_equal(alloc, [[2, 1], [1, 1]])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=6), st.integers(0, 60))
def test_split_proportional_integer_properties(requests, available):
    req = np.array(requests, dtype=float)[:, None]
    alloc = split_proportional(np.array([float(available)]), req, integer=True)[:, 0]
    assert alloc.sum() == min(available, req.sum())
    assert np.all(alloc >= 0) and np.all(alloc <= req[:, 0])
    assert np.all(alloc == np.rint(alloc))
    if req.sum() > available:
        assert np.all(np.abs(alloc - req[:, 0] * available / req.sum()) < 1)


def test_split_priority():
    alloc = split_priority(np.array([5.0, 20.0]), np.array([[3.0, 1.0], [3.0, 2.0], [4.0, 3.0]]), integer=True)
    np.testing.assert_array_equal(alloc, [[3, 1], [2, 2], [0, 3]])


def test_first_come_first_served_orders_by_cohort():
    older = np.array([[0.0], [3.0]])   # day 0: customer 1 asked for 3
    newer = np.array([[2.0], [0.0]])   # day 1: customer 0 asked for 2
    new = np.array([[5.0], [5.0]])     # today both ask for 5
    shipped = FirstComeFirstServed().allocate(np.array([4.0]), [older, newer], new, integer=True)
    np.testing.assert_array_equal(shipped[:, 0], [1, 3])
    # priority serves the pooled backlog in customer order instead
    shipped = Priority().allocate(np.array([4.0]), [older, newer], new, integer=True)
    np.testing.assert_array_equal(shipped[:, 0], [2, 2])


def test_backlog_first_versus_pooled():
    backlog = [np.array([[0.0], [4.0]])]
    new = np.array([[6.0], [0.0]])
    first = Proportional(backlog_first=True).allocate(np.array([5.0]), backlog, new, integer=True)
    np.testing.assert_array_equal(first[:, 0], [1, 4])
    pooled = Proportional(backlog_first=False).allocate(np.array([5.0]), backlog, new, integer=True)
    np.testing.assert_array_equal(pooled[:, 0], [3, 2])
    unlimited = Priority().allocate(None, backlog, new, integer=True)
    np.testing.assert_array_equal(unlimited[:, 0], [6, 4])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_proportional_split_never_makes_nan():
    # a short fractional split whose parts sum to 1 ulp more than the stock leaves -8.9e-16 for the next tranche
    shipped = Proportional(backlog_first=True).allocate(np.array([6.86]), [np.array([[6.5], [6.88], [3.89]])],
                                                        np.zeros((3, 1)), integer=False)
    assert np.all(np.isfinite(shipped))
    assert shipped.sum() <= 6.86 + 1e-9


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_fractional_proportional_rationing_in_the_engine_stays_finite():
    net = network([{"name": "sup", "kind": "supplier"}, {"name": "dc", "kind": "dc", "parent": "sup"},
                   {"name": "s0", "kind": "store", "parent": "dc"}, {"name": "s1", "kind": "store", "parent": "dc"},
                   {"name": "s2", "kind": "store", "parent": "dc"}], [sku(0)], demand={"integer_units": False})
    engine = Engine(net, horizon=4, seed=0, invariants="error")
    engine.step(np.array([[0], [6.86], [6.5], [6.88], [3.89]]))  # the DC has nothing yet: all backlogged
    engine.step(np.zeros((5, 1)))                                  # day 1: 6.86 arrive and are rationed
    assert np.all(np.isfinite(engine.on_hand)) and np.all(np.isfinite(engine.in_transit))
    assert engine.on_hand[2:].sum() + engine.in_transit[2:].sum() == pytest.approx(6.86)


def test_ledger_rejects_nan_stock():
    ledger = Ledger(("sup", "store"), np.array([True, False]), "error")
    nan = np.array([[0.0], [np.nan]])
    zero = np.zeros((2, 1))
    with pytest.raises(InvariantError):
        ledger_day(ledger, 0, start=zero, received=zero, outflow=zero, on_hand=nan)


def test_ledger_catches_a_broken_balance():
    ledger = Ledger(("sup", "store"), np.array([True, False]), "error")
    zero = np.zeros((2, 1))
    ledger_day(ledger, 2, start=zero, received=np.array([[0.0], [5.0]]), outflow=np.array([[0.0], [5.0]]),
               on_hand=zero)
    with pytest.raises(InvariantError, match="day 3.*'store' SKU 0.*on_hand_end"):
        ledger_day(ledger, 3, start=zero, received=np.array([[0.0], [5.0]]), outflow=zero, on_hand=zero)
    with pytest.raises(InvariantError, match="day 4.*'store' SKU 0.*on_hand is negative"):
        ledger_day(ledger, 4, start=zero, received=zero, outflow=np.array([[0.0], [1.0]]),
                   on_hand=np.array([[0.0], [-1.0]]))


@pytest.mark.parametrize(("rule", "backlog_first", "expected"), [
    ("proportional", True, [3, 2]),
    ("priority", True, [4, 1]),
    ("fcfs", True, [2, 3]),
])
def test_dc_rations_short_stock_by_rule(rule, backlog_first, expected):
    """Day 0: s1 asks 3, day 1: s0 asks 4 (the DC is empty); day 2: the DC gets 5 and rations them."""
    net = network([{"name": "sup", "kind": "supplier"}, {"name": "dc", "kind": "dc", "parent": "sup"},
                   {"name": "s0", "kind": "store", "parent": "dc"}, {"name": "s1", "kind": "store", "parent": "dc"}],
                  [sku(0)], rationing=rule, backlog_first=backlog_first)
    engine = Engine(net, horizon=4, seed=0, invariants="error")
    states, _ = finish(engine, {0: {"s1": 3}, 1: {"s0": 4, "dc": 5}})
    assert states[2].backorders[1, 0] == 7
    np.testing.assert_array_equal(states[3].on_hand[2:, 0], expected)
    assert states[3].backorders[1, 0] == 2
    np.testing.assert_array_equal(states[3].on_order[2:, 0], [4 - expected[0], 3 - expected[1]])


# ---------------------------------------------------------------------------
# Shocks
# ---------------------------------------------------------------------------

def two_dcs():
    return network([{"name": "sup", "kind": "supplier"},
                    {"name": "dc_a", "kind": "dc", "parent": "sup"},
                    {"name": "dc_b", "kind": "dc", "parent": "sup"},
                    {"name": "s1", "kind": "store", "parent": "dc_a", "backup_parent": "dc_b"},
                    {"name": "s2", "kind": "store", "parent": "dc_b"}], [sku(0)])


def test_dc_closure_with_reroute_sends_orders_to_the_backup():
    engine = Engine(two_dcs(), horizon=8, seed=0, shocks=[DcClosure(start=1, end=5, dc="dc_a", reroute=True)],
                    invariants="error")
    states, result = finish(engine, {0: {"dc_a": 10, "dc_b": 10}, 1: {"s1": 4}})
    a, b, s1 = 1, 2, 3
    assert states[2].on_hand[s1, 0] == 4          # shipped by dc_b on day 1, one day lead time
    assert states[2].on_hand[b, 0] == 6 and states[2].on_hand[a, 0] == 10
    assert states[2].backorders[a, 0] == 0
    assert result.series["outflow"][1, b] == 4 and result.series["outflow"][:, a].sum() == 0


def test_dc_closure_without_reroute_starves_its_stores():
    engine = Engine(two_dcs(), horizon=8, seed=0, shocks=[DcClosure(start=1, end=5, dc="dc_a", reroute=False)],
                    invariants="error")
    states, result = finish(engine, {0: {"dc_a": 10, "dc_b": 10}, 1: {"s1": 4}})
    a, b, s1 = 1, 2, 3
    for day in range(2, 6):
        assert states[day].on_hand[s1, 0] == 0
        assert states[day].backorders[a, 0] == 4
        assert states[day].on_order[s1, 0] == 4
    assert states[6].on_hand[s1, 0] == 4          # dc_a reopens on day 5 and ships, arriving on day 6
    assert states[6].on_hand[b, 0] == 10 and states[6].on_hand[a, 0] == 6
    np.testing.assert_array_equal(np.flatnonzero(result.series["outflow"][:, a]), [5])


def test_supplier_outage_delays_shipments_until_it_ends():
    engine = Engine(chain(1, mean=0), horizon=7, seed=0, shocks=[SupplierOutage(start=0, end=3, supplier="sup")],
                    invariants="error")
    states, result = finish(engine, {0: {"store": 5}, 1: {"store": 2}})
    np.testing.assert_array_equal(result.series["received"][:, 1], [0, 0, 0, 0, 7, 0, 0])
    assert [s.backorders[0, 0] for s in states] == [0, 5, 7, 7, 0, 0, 0]
    assert [s.in_transit[1, 0] for s in states] == [0, 0, 0, 0, 0, 0, 0]


def test_demand_shock_multiplies_demand_of_its_groups_and_regions():
    net = network([{"name": "sup", "kind": "supplier"},
                   {"name": "n", "kind": "store", "parent": "sup", "region": "north"},
                   {"name": "s", "kind": "store", "parent": "sup", "region": "south"}],
                  [sku(3, name="milk", group="food"), sku(2, name="lego", group="toys")])
    shock = DemandShock(start=2, end=4, multiplier=2.5, groups=("food",), regions=("north",))
    engine = Engine(net, horizon=6, seed=0, shocks=[shock], invariants="error", per_sku_series=True)
    _, result = finish(engine, {})
    demand = result.sku_series["demand"]
    np.testing.assert_array_equal(demand[:, 1, 0], [3, 3, 8, 8, 3, 3])  # rint(7.5) = 8 (integer units)
    np.testing.assert_array_equal(demand[:, 1, 1], [2] * 6)
    np.testing.assert_array_equal(demand[:, 2], [[3, 2]] * 6)


def test_lead_time_shock_multiplies_lead_time():
    shock = LeadTimeShock(start=0, end=5, multiplier=3, sources=("sup",))
    engine = Engine(chain(2, mean=0), horizon=10, seed=0, shocks=[shock], invariants="error")
    _, result = finish(engine, {0: {"store": 5}, 5: {"store": 7}})
    received = result.series["received"][:, 1]
    assert received[6] == 5 and received[7] == 7 and received.sum() == 12  # 2 x 3 days during, 2 days after
    # a shock on another source changes nothing
    other = LeadTimeShock(start=0, end=5, multiplier=3, sources=("sup2",))
    net = network([{"name": "sup", "kind": "supplier"}, {"name": "sup2", "kind": "supplier"},
                   {"name": "store", "kind": "store", "parent": "sup", "lead_time": {"mean": 2}}], [sku(0)])
    _, result = finish(Engine(net, horizon=10, seed=0, shocks=[other], invariants="error"), {0: {"store": 5}})
    assert result.series["received"][2, 2] == 5


def test_capacity_cut_limits_shipments():
    net = chain(1, mean=0, store={"lane_capacity": 10})
    cut = CapacityCut(start=0, end=3, node="store", factor=0.5)
    _, result = finish(Engine(net, horizon=7, seed=0, shocks=[cut], invariants="error"), {0: {"store": 30}})
    np.testing.assert_array_equal(result.series["outflow"][:, 0], [5, 5, 5, 10, 5, 0, 0])
    np.testing.assert_array_equal(result.series["received"][:, 1], [0, 5, 5, 5, 10, 5, 0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_capacity_cut_to_zero_stops_shipments():
    net = chain(1, mean=0, store={"lane_capacity": 10})
    for factor, expected in ((0.1, [1, 1, 1, 10]), (0.0, [0, 0, 0, 10])):
        cut = CapacityCut(start=0, end=3, node="store", factor=factor)
        _, result = finish(Engine(net, horizon=4, seed=0, shocks=[cut], invariants="error"), {0: {"store": 30}})
        np.testing.assert_array_equal(result.series["outflow"][:, 0], expected)


def test_storage_and_supply_capacity():
    net = chain(1, mean=0, store={"storage_capacity": 12})
    _, result = finish(Engine(net, horizon=4, seed=0, invariants="error"), {0: {"store": 30}})
    assert result.series["on_hand"][:, 1].max() == 12
    np.testing.assert_array_equal(result.series["outflow"][:, 0], [12, 0, 0, 0])
    net = network([{"name": "sup", "kind": "supplier", "supply_capacity": 8},
                   {"name": "store", "kind": "store", "parent": "sup"}], [sku(0)])
    cut = CapacityCut(start=1, end=2, node="sup", factor=0.25)
    _, result = finish(Engine(net, horizon=5, seed=0, shocks=[cut], invariants="error"), {0: {"store": 20}})
    np.testing.assert_array_equal(result.series["outflow"][:, 0], [8, 2, 8, 2, 0])


# ---------------------------------------------------------------------------
# Costs and KPIs
# ---------------------------------------------------------------------------

COST_SKU = sku(3, holding_cost=0.5, backorder_cost=2, lost_sale_cost=4, fixed_order_cost=10, unit_cost=1)
ORDERS = {0: {"store": 5}, 2: {"store": 10}}


def test_costs_with_backorders_by_hand():
    """Demand 3/day, lead time 1, orders 5 on day 0 and 10 on day 2.

    day  on hand  backorders  in transit  holding  backorder  ordering  in transit (0.2 x 0.5)
    0    0        3           5           0        6          10 + 5    0.5
    1    0        1           0           0        2          0         0
    2    0        4           10          0        8          10 + 10   1.0
    3    3        0           0           1.5      0          0         0
    """
    net = chain(1, item=COST_SKU, store={"in_transit_holding": 0.2})
    _, result = finish(Engine(net, horizon=4, seed=0, invariants="error"), ORDERS)
    store = result.kpis["nodes"]["store"]
    assert store["cost_holding"] == pytest.approx(1.5)
    assert store["cost_backorder"] == pytest.approx(16)
    assert store["cost_lost_sale"] == 0
    assert store["cost_ordering"] == pytest.approx(35)
    assert store["cost_in_transit"] == pytest.approx(1.5)
    assert store["cost_total"] == pytest.approx(54)
    assert result.kpis["network"]["cost_total"] == pytest.approx(54)
    np.testing.assert_allclose(result.series["cost_backorder"][:, 1], [6, 2, 8, 0])
    assert store["fill_rate"] == pytest.approx(5 / 12)
    assert store["cycle_service_level"] == pytest.approx(1 - 3 / 4)
    assert store["average_on_hand"] == pytest.approx(3 / 4)
    assert store["average_backorders"] == pytest.approx(2)
    assert store["units_out"] == 12 and store["order_lines"] == 2


def test_costs_with_lost_sales_by_hand():
    """Same orders, lost sales at 4 x factor 1.5 = 6 per unit: lost 3 on day 0 and 1 on day 2;
    on hand at the end of the days 0, 2, 1, 7 -> holding 0.5 x 9 = 4.5."""
    net = chain(1, unmet="lost", item=COST_SKU, store={"in_transit_holding": 0.2, "lost_sale_factor": 1.5})
    _, result = finish(Engine(net, horizon=4, seed=0, invariants="error"), ORDERS)
    store = result.kpis["nodes"]["store"]
    assert store["cost_holding"] == pytest.approx(4.5)
    assert store["cost_lost_sale"] == pytest.approx(24)
    assert store["cost_backorder"] == 0
    assert store["cost_total"] == pytest.approx(4.5 + 24 + 35 + 1.5)
    assert store["lost_units"] == 4
    assert store["fill_rate"] == pytest.approx(8 / 12)


def test_warmup_days_are_left_out_of_the_kpis():
    net = chain(1, item=COST_SKU, store={"in_transit_holding": 0.2})
    _, result = finish(Engine(net, horizon=4, seed=0, warmup=2, invariants="error"), ORDERS)
    store = result.kpis["nodes"]["store"]
    assert store["cost_total"] == pytest.approx(1.5 + 8 + 20 + 1.0)
    assert store["demand"] == 6
    assert result.series["demand"].shape[0] == 4  # series keep every day


def test_fill_rate_service_level_and_bullwhip_by_hand():
    """Weekly pattern 1,3,1,3,... (normal, cv 0) and orders 0, 2, 4, 2 with lead time 1.

    Orders vary twice as much as demand (population variances 2 and 1): bullwhip 2. A second
    SKU with no demand is left out of the bullwhip average but not of the order variance.
    day  demand  arrivals  backorders (end)  filled from today's demand
    0    1       0         1                 0
    1    3       0         4                 0
    2    1       2         3                 0
    3    3       4         2                 1
    """
    net = network([{"name": "sup", "kind": "supplier"}, {"name": "store", "kind": "store", "parent": "sup"}],
                  [sku(2, name="a"), sku(0, name="b")], demand={"weekly": [1, 3, 1, 3, 1, 3, 2]})
    _, result = finish(Engine(net, horizon=4, seed=0, invariants="error"),
                       {1: {"store": [2, 0]}, 2: {"store": [4, 0]}, 3: {"store": [2, 0]}})
    np.testing.assert_array_equal(result.series["demand"][:, 1], [1, 3, 1, 3])
    store = result.kpis["nodes"]["store"]
    assert store["fill_rate"] == pytest.approx(1 / 8)
    assert store["cycle_service_level"] == pytest.approx(1 - 4 / 8)  # SKU b never stocks out
    assert store["bullwhip_ratio"] == pytest.approx(2.0)
    assert store["order_variance"] == pytest.approx(1.0)
    assert result.kpis["network"]["bullwhip_ratio"] == pytest.approx(2.0)
    np.testing.assert_array_equal(result.series["backorders"][:, 1], [1, 4, 3, 2])


def test_enough_stock_gives_full_service():
    net = chain(0, mean=4)
    engine = Engine(net, horizon=30, seed=0, invariants="error")
    result = engine.run(OrderUpTo(np.array([[0.0], [4.0]])))
    store = result.kpis["nodes"]["store"]
    assert store["fill_rate"] == 1.0 and store["cycle_service_level"] == 1.0
    assert store["bullwhip_ratio"] is None  # constant demand: no variance to compare with
    assert result.kpis["network"]["lost_units"] == 0
