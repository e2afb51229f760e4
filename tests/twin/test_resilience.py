"""twin/resilience.py: the resilience figures of a stress test, on hand-built runs whose answers are worked out
by hand, and the rolling fill rate against the twin's own fill-rate KPI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin import Engine, network_from_dict
from twin.resilience import (
    cvar,
    days_below_target,
    fan_quantiles,
    peak,
    rolling_fill_rate,
    time_to_recover,
    time_to_survive,
    worst_week_fill_rate,
)
from twin.testing import OrderUpTo, two_dc_network, two_dc_shocks

DAYS, SHOCK = 60, 30
DEMAND = np.full(DAYS, 10.0)


def served(half_from: int, half_to: int) -> np.ndarray:
    """10 units asked a day, all served, except days [half_from, half_to) where half is served."""
    fulfilled = DEMAND.copy()
    fulfilled[half_from:half_to] = 5.0
    return fulfilled


DIP = served(SHOCK, SHOCK + 10)  # the 10-day drop to 50%, then full service again
STUCK = served(SHOCK, DAYS)      # never recovers
FLAT = DEMAND.copy()             # never drops

# the 7-day rate of DIP by hand: day 30 holds 6 full days and one half day = 65/70, day 31 60/70, ...,
# days 36-39 all half = 0.5, day 40 40/70, ..., day 45 65/70, day 46 full again
DIP_RATE = np.ones(DAYS)
DIP_RATE[30:47] = np.array([65, 60, 55, 50, 45, 40, 35, 35, 35, 35, 40, 45, 50, 55, 60, 65, 70]) / 70


def test_rolling_fill_rate_of_the_dip_by_hand():
    np.testing.assert_allclose(rolling_fill_rate(DEMAND, DIP), DIP_RATE, rtol=0, atol=1e-12)


def test_the_first_days_use_the_days_available_and_no_demand_gives_nan():
    np.testing.assert_allclose(rolling_fill_rate([10, 20, 30], [10, 10, 30], window=2), [1, 20 / 30, 40 / 50])
    np.testing.assert_allclose(rolling_fill_rate([10, 20, 30], [10, 10, 30], window=5), [1, 20 / 30, 50 / 60])
    np.testing.assert_array_equal(rolling_fill_rate([0, 0, 10, 0, 0], [0, 0, 5, 0, 0], window=2),
                                  [np.nan, np.nan, 0.5, 0.5, np.nan])


def test_time_to_recover_after_the_dip():
    # pre-shock level 1.0; the band at 0.98 is left on day 30 and reached again on day 46
    assert time_to_recover(DEMAND, DIP, SHOCK) == 16
    # a wider band (>= 0.92): day 30 (65/70 = 0.929) is still in it, day 31 leaves, day 45 (65/70) is back
    assert time_to_recover(DEMAND, DIP, SHOCK, tolerance=0.08) == 15
    # a 1-day window follows the daily rate: back on day 40
    assert time_to_recover(DEMAND, DIP, SHOCK, window=1) == 10


def test_time_to_recover_is_inf_when_never_back_and_zero_when_never_out():
    assert time_to_recover(DEMAND, STUCK, SHOCK) == math.inf
    assert time_to_recover(DEMAND, FLAT, SHOCK) == 0


def test_the_band_is_one_sided_and_measured_from_the_pre_shock_level():
    fulfilled = np.full(DAYS, 9.0)  # 90% before the shock
    fulfilled[SHOCK:] = 10.0        # better after it: never left the band
    assert time_to_recover(DEMAND, fulfilled, SHOCK) == 0
    fulfilled[SHOCK:SHOCK + 3] = 8.0  # 80% on days 30-32; the band is >= 0.90 - 0.02 = 0.88:
    # day 30: (6 x 9 + 8) / 70 = 0.886 in, day 31: 61/70 = 0.871 out, day 34: (2 x 9 + 3 x 8 + 2 x 10) / 70 back
    assert time_to_recover(DEMAND, fulfilled, SHOCK) == 4


def test_recovery_is_the_first_return_even_if_it_dips_again():
    fulfilled = DEMAND.copy()
    fulfilled[30:32] = 0.0  # two days with nothing served: the window holds them through day 37
    assert time_to_recover(DEMAND, fulfilled, SHOCK) == 8
    fulfilled[50:52] = 0.0  # a second dip later changes nothing
    assert time_to_recover(DEMAND, fulfilled, SHOCK) == 8


def test_the_pre_shock_level_uses_pre_days_or_the_days_available():
    fulfilled = DIP.copy()
    fulfilled[:20] = 5.0  # an old bad spell, days 0-19
    # pre_days=28 covers days 2-29, level (18 x 5 + 10 x 10) / 280 = 0.679, band >= 0.659: the dip leaves it
    # on day 34 (45/70 = 0.643) and is back on day 42 (50/70 = 0.714)
    assert time_to_recover(DEMAND, fulfilled, SHOCK) == 12
    # pre_days=10 (days 20-29, all full): level 1.0, as for DIP
    assert time_to_recover(DEMAND, fulfilled, SHOCK, pre_days=10) == 16
    # a shock on day 5: the 5 days before it
    assert time_to_recover(DEMAND, served(5, 8), 5, pre_days=28) == 9  # back on day 14, when day 7 leaves


def test_time_to_survive():
    assert time_to_survive(DEMAND, DIP, SHOCK, target=0.95) == 0   # day 30: 65/70 = 0.929
    assert time_to_survive(DEMAND, DIP, SHOCK, target=0.9) == 1    # day 31: 60/70 = 0.857
    assert time_to_survive(DEMAND, DIP, SHOCK, target=0.55) == 6   # day 36: 0.5
    assert time_to_survive(DEMAND, DIP, SHOCK, target=0.5) == math.inf  # never below 0.5
    assert time_to_survive(DEMAND, FLAT, 0, target=1.0) == math.inf
    assert time_to_survive(DEMAND, DIP, 40, target=0.8) == 0  # the window still holds the dip on day 40


def test_worst_week_and_days_below_target():
    assert worst_week_fill_rate(DEMAND, DIP) == pytest.approx(0.5)
    assert worst_week_fill_rate(DEMAND, FLAT) == 1.0
    # the worst is over full 7-day windows only: a bad first day is diluted, not a worst "week" of one day
    first_bad = DEMAND.copy()
    first_bad[0] = 0.0
    assert worst_week_fill_rate(DEMAND, first_bad) == pytest.approx(60 / 70)
    assert days_below_target(DEMAND, DIP, 1.0) == 16  # days 30-45
    assert days_below_target(DEMAND, DIP, 0.6) == 6   # days 35-40 (0.571, 0.5 x 4, 0.571)
    assert days_below_target(DEMAND, STUCK, 0.6) == 25  # days 35-59
    assert days_below_target(DEMAND, FLAT, 1.0) == 0
    assert days_below_target(DEMAND, DIP, 0.6, window=1) == 10  # the ten half days
    assert days_below_target(DEMAND, first_bad, 1.0, window=1) == 1  # the first days count too


def test_per_node_columns_give_each_column_its_own_figure():
    demand = np.column_stack([DEMAND, DEMAND, DEMAND])
    fulfilled = np.column_stack([DIP, STUCK, FLAT])
    np.testing.assert_array_equal(time_to_recover(demand, fulfilled, SHOCK), [16, math.inf, 0])
    np.testing.assert_array_equal(time_to_survive(demand, fulfilled, SHOCK, 0.9), [1, 1, math.inf])
    np.testing.assert_allclose(worst_week_fill_rate(demand, fulfilled), [0.5, 0.5, 1.0])
    np.testing.assert_array_equal(days_below_target(demand, fulfilled, 0.6), [6, 25, 0])
    rates = rolling_fill_rate(demand, fulfilled)
    assert rates.shape == (DAYS, 3)
    np.testing.assert_allclose(rates[:, 0], DIP_RATE, atol=1e-12)
    assert isinstance(time_to_recover(DEMAND, DIP, SHOCK), float)  # one column in, a number out
    assert isinstance(days_below_target(DEMAND, DIP, 0.6), int)


def test_peak_per_column():
    assert peak([0, 3, 7, 2]) == 7.0
    np.testing.assert_array_equal(peak([[0, 3], [5, 1], [2, 2]]), [5, 3])


def test_cvar_on_known_samples():
    assert cvar(np.arange(1, 101)) == 98.0                 # the mean of 96..100
    assert cvar(np.arange(100, 0, -1), 0.95) == 98.0       # order does not matter
    # n (1 - level) = 10 x 0.25 = 2.5: 10 and 9 in full, half of 8: (10 + 9 + 4) / 2.5
    assert cvar(np.arange(1, 11), 0.75) == pytest.approx(9.2)
    # n (1 - level) = 3 x 0.5 = 1.5: 5 in full, half of 3: (5 + 1.5) / 1.5
    assert cvar([5, 1, 3], 0.5) == pytest.approx(6.5 / 1.5)
    assert cvar(np.arange(1, 11), 0.99) == 10.0            # a tail thinner than one sample: the worst
    assert cvar([4, 1, 7], 0.0) == pytest.approx(4.0)      # level 0: the mean


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.97])
def test_cvar_is_the_rockafellar_uryasev_minimum(level):
    x = np.random.default_rng(7).lognormal(size=37)
    # min over c of c + E[(x - c)+] / (1 - level): convex and piecewise linear, so the minimum is at a sample
    objective = [c + np.mean(np.maximum(x - c, 0)) / (1 - level) for c in x]
    assert cvar(x, level) == pytest.approx(min(objective), rel=1e-12)


def test_fan_quantiles():
    paths = np.array([[1, 10], [2, 20], [3, 30], [4, 40], [5, 50]], dtype=float)  # (replications, days)
    np.testing.assert_allclose(fan_quantiles(paths, qs=(0, 50, 100)), [[1, 10], [3, 30], [5, 50]])
    fan = fan_quantiles(paths)
    assert fan.shape == (5, 2)
    np.testing.assert_allclose(fan[:, 0], [1.2, 2, 3, 4, 4.8])  # linear between samples
    with_nan = paths.copy()
    with_nan[2, 0] = np.nan  # one replication missing on day 0: the median of 1, 2, 4, 5
    with_nan[:, 1] = np.nan  # no replication on day 1
    fan = fan_quantiles(with_nan, qs=(50,))
    assert fan[0, 0] == 3.0 and np.isnan(fan[0, 1])
    assert fan_quantiles(np.zeros((4, 6, 3))).shape == (5, 6, 3)  # (replications, days, nodes)


D3, F3 = np.full(10, 10.0), np.full(10, 9.0)


@pytest.mark.parametrize("call, argument", [
    (lambda: rolling_fill_rate(D3, F3[:-1]), "fulfilled"),
    (lambda: rolling_fill_rate([], []), "demand"),
    (lambda: rolling_fill_rate(np.zeros((3, 0)), np.zeros((3, 0))), "demand"),
    (lambda: rolling_fill_rate(np.zeros((3, 2, 2)), np.zeros((3, 2, 2))), "demand"),
    (lambda: rolling_fill_rate(D3, -F3), "fulfilled"),
    (lambda: rolling_fill_rate(D3, F3 + 2), "fulfilled"),  # served more than asked
    (lambda: rolling_fill_rate(np.where(D3 > 0, np.nan, 0), F3), "demand"),
    (lambda: rolling_fill_rate(D3, ["a"] * 10), "fulfilled"),
    (lambda: rolling_fill_rate(D3, F3, window=0), "window"),
    (lambda: rolling_fill_rate(D3, F3, window=2.5), "window"),
    (lambda: rolling_fill_rate(D3, F3, window=True), "window"),
    (lambda: time_to_recover(D3, F3, 0), "shock_start"),
    (lambda: time_to_recover(D3, F3, 10), "shock_start"),
    (lambda: time_to_recover(D3, F3, 5, tolerance=-0.1), "tolerance"),
    (lambda: time_to_recover(D3, F3, 5, pre_days=0), "pre_days"),
    (lambda: time_to_recover(np.r_[np.zeros(5), D3], np.r_[np.zeros(5), F3], 5), "demand"),  # no pre-shock demand
    (lambda: time_to_survive(D3, F3, -1, 0.9), "disruption_start"),
    (lambda: time_to_survive(D3, F3, 2, 0.0), "target"),
    (lambda: time_to_survive(D3, F3, 2, 1.5), "target"),
    (lambda: days_below_target(D3, F3, float("nan")), "target"),
    (lambda: worst_week_fill_rate(D3[:6], F3[:6]), "demand"),
    (lambda: peak([]), "series"),
    (lambda: cvar([]), "samples"),
    (lambda: cvar(np.ones((3, 2))), "samples"),
    (lambda: cvar([1, 2, np.inf]), "samples"),
    (lambda: cvar([1, 2], level=1.0), "level"),
    (lambda: cvar([1, 2], level=-0.1), "level"),
    (lambda: fan_quantiles(np.ones(5)), "paths"),
    (lambda: fan_quantiles(np.ones((3, 4)), qs=(50, 101)), "qs"),
    (lambda: fan_quantiles(np.ones((3, 4)), qs=()), "qs"),
])
def test_bad_input_raises_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        call()


def test_fill_rate_over_the_whole_run_is_the_twins_fill_rate_kpi():
    network = network_from_dict(two_dc_network())
    levels = np.array([[0.0] * 3] + [[200.0, 60, 20]] * 2 + [[40.0, 15, 6]] * 4)  # supplier, 2 DCs, 4 stores
    warmup = 10
    result = Engine(network, horizon=60, seed=3, shocks=two_dc_shocks(), warmup=warmup,
                    invariants="error").run(OrderUpTo(levels))
    demand, filled = result.series["demand"][warmup:], result.series["filled"][warmup:]  # the KPIs' days
    whole = rolling_fill_rate(demand, filled, window=len(demand))[-1]
    names = network.node_names
    for name, kpis in result.kpis["nodes"].items():
        assert whole[names.index(name)] == pytest.approx(kpis["fill_rate"], rel=1e-12), name
    stores = [names.index(n.name) for n in network.nodes if n.kind == "store"]
    network_rate = rolling_fill_rate(demand[:, stores].sum(axis=1), filled[:, stores].sum(axis=1),
                                     window=len(demand))[-1]
    assert network_rate == pytest.approx(result.kpis["network"]["fill_rate"], rel=1e-12)
    assert 0.5 < result.kpis["network"]["fill_rate"] < 0.95  # shocks bite: the comparison is not 1 == 1
