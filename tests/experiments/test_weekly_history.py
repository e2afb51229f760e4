"""Weekly demand history in a decision request (agents/deploy/decide.py `_history_forecasts`,
conversion.daily_from_weekly): a bundle's saved daily forecaster forecasts it with each week's total spread
evenly over its 7 days, from where the last week ends, the days up to as_of dropped; daily and weekly items mix
in one request; what cannot be done (a forecaster whose max_horizon does not reach as_of) is refused naming the
field. A bundle with a saved seasonal naive, exported on the small network as experiments.export makes it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.deploy.bundle import load_bundle
from agents.deploy.conversion import ErpStateError, daily_from_weekly, state_to_twin
from agents.deploy.decide import _history_forecasts, decide
from agents.deploy.erp_state import ErpState
from agents.deploy.testing import twin_day

ROOT = Path(__file__).resolve().parents[2]
WEEKS = [35.0, 70.0, 21.0, 56.0]  # week totals: 5, 10, 3 and 8 a day


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from agents.forecasting.classical import SeasonalNaive
    from agents.forecasting.data import panel_from_twin
    from agents.forecasting.saved import save_forecaster
    from twin.spec import network_from_dict

    root = tmp_path_factory.mktemp("weekly")
    network = network_from_dict(yaml.safe_load((ROOT / "conf" / "network" / "small.yaml").read_text()))
    history = panel_from_twin(network, 60)
    model = SeasonalNaive()
    model.fit(history)
    save_forecaster(model, "seasonal_naive", history, root / "forecaster")
    done = subprocess.run([sys.executable, "-m", "experiments.export", "rule=forecast:oracle",
                           f"saved_forecaster={root / 'forecaster'}", "network=small", "kpi.seeds=2",
                           "kpi.horizon=50", "kpi.warmup=5", f"hydra.run.dir={root / 'export'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_bundle(root / "export" / "bundle")


@pytest.fixture(scope="module")
def day_state(bundle) -> dict:
    """The small network's ERP state of a twin day, every forecast removed (as JSON)."""
    data = twin_day(bundle, 30).state.model_dump(mode="json")
    for location in data["locations"]:
        for item in location["items"]:
            item["forecast"] = None
    return data


def _with_history(data: dict, histories: dict[str, dict]) -> ErpState:
    """`data` with the demand history of every item of each store named in `histories`."""
    out = {**data, "locations": [{**loc, "items": [dict(item) for item in loc["items"]]} for loc in data["locations"]]}
    for location in out["locations"]:
        for item in location["items"]:
            if location["id"] in histories:
                item["demand_history"] = histories[location["id"]]
    return ErpState.model_validate(out)


def _weekly(as_of: dt.date, gap: int) -> dict:
    """WEEKS as weekly history whose last week ends `gap` days before as_of (its last day: as_of - gap - 1)."""
    start = as_of - dt.timedelta(days=gap + 7 * len(WEEKS))
    return {"frequency": "weekly", "start": start.isoformat(), "values": WEEKS}


def _daily(as_of: dt.date, gap: int) -> dict:
    """The same weeks as daily history at their constant daily rates, the `gap` days after them at the last
    week's rate: daily values through the day before as_of."""
    start = as_of - dt.timedelta(days=gap + 7 * len(WEEKS))
    values = [w / 7 for w in WEEKS for _ in range(7)] + [WEEKS[-1] / 7] * gap
    return {"frequency": "daily", "start": start.isoformat(), "values": values}


def _forecasts(bundle, state: ErpState) -> dict[tuple[str, str], list[float]]:
    filled, _ = _history_forecasts(bundle, state)
    return {(loc.id, item.sku): list(item.forecast.mean) for loc in filled.locations for item in loc.items
            if item.forecast is not None}


def test_weeks_spread_evenly_over_their_days(bundle, day_state):
    as_of = dt.date.fromisoformat(day_state["as_of"])
    state = _with_history(day_state, {"store_0": _weekly(as_of, 3)})
    weekly = state_to_twin(state, bundle.network).history["weekly"]
    daily = daily_from_weekly(weekly)
    assert daily.freq.name == "daily" and daily.ids == weekly.ids
    assert daily.values.shape == (weekly.n, 7 * len(WEEKS))
    np.testing.assert_allclose(daily.values[0], np.repeat(np.array(WEEKS) / 7, 7))
    assert daily.dates[0] == weekly.dates[0] and daily.dates[-1].date() == as_of - dt.timedelta(days=4)
    assert daily.categories.keys() == weekly.categories.keys()
    assert weekly.shared_unit and daily.shared_unit  # units sold, as the twin's


def test_weekly_history_at_constant_daily_rates_decides_as_the_daily_history(bundle, day_state):
    as_of = dt.date.fromisoformat(day_state["as_of"])
    # the last week ends the day before as_of: the spread weeks are the daily history, day for day
    weekly = decide(bundle, _with_history(day_state, {"store_0": _weekly(as_of, 0), "store_1": _weekly(as_of, 0)}))
    daily = decide(bundle, _with_history(day_state, {"store_0": _daily(as_of, 0), "store_1": _daily(as_of, 0)}))
    assert [(d.location, d.sku, d.order_quantity, d.order_up_to_level) for d in weekly.decisions] == \
           [(d.location, d.sku, d.order_quantity, d.order_up_to_level) for d in daily.decisions]
    store = next(d for d in weekly.decisions if d.location == "store_0")
    [reason] = [r for r in store.reasons if r.code == "FORECAST_FROM_HISTORY"]
    assert reason.values == {"forecaster": "seasonal_naive", "history_frequency": "weekly",
                             "history_weeks": 4.0, "history_days": 28.0, "days_before_as_of": 0.0,
                             "forecast_per_day": pytest.approx(WEEKS[-1] / 7)}
    assert "4 weeks of history" in reason.message and "spread evenly over its 7 days" in reason.message

    # the last week ends 3 days before as_of: forecast from there, those days dropped; the same forecast as
    # daily history that goes on at the last week's rate (the seasonal naive repeats the last 7 days)
    for gap in (1, 3, 6):
        from_weeks = _forecasts(bundle, _with_history(day_state, {"store_0": _weekly(as_of, gap)}))
        from_days = _forecasts(bundle, _with_history(day_state, {"store_0": _daily(as_of, gap)}))
        assert from_weeks.keys() == from_days.keys() and from_weeks, gap
        for key, mean in from_weeks.items():
            assert mean == pytest.approx(from_days[key]), (gap, key)
    state = _with_history(day_state, {"store_0": _weekly(as_of, 3), "store_1": _weekly(as_of, 3)})
    [reason] = [r for r in next(d for d in decide(bundle, state).decisions if d.location == "store_0").reasons
                if r.code == "FORECAST_FROM_HISTORY"]
    assert reason.values["days_before_as_of"] == 3.0
    assert "the 3 days from the last week's end to as_of forecast and dropped" in reason.message


def test_a_weekly_and_a_daily_item_in_one_request(bundle, day_state):
    as_of = dt.date.fromisoformat(day_state["as_of"])
    rates = {"store_0": [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0] * 4}  # a daily pattern the seasonal naive repeats
    daily_1 = {"frequency": "daily", "start": (as_of - dt.timedelta(days=28)).isoformat(), "values": rates["store_0"]}
    mixed = _with_history(day_state, {"store_0": _weekly(as_of, 2), "store_1": daily_1})
    response = decide(bundle, mixed)
    reasons = {(d.location, d.sku): next(r for r in d.reasons if r.code == "FORECAST_FROM_HISTORY")
               for d in response.decisions if d.location.startswith("store")}
    assert {key: r.values.get("history_frequency", "daily") for key, r in reasons.items()} == \
           {key: "weekly" if key[0] == "store_0" else "daily" for key in reasons}
    assert all(r.values["history_days"] == 28.0 for r in reasons.values())
    # each item gets the forecast it gets alone
    together = _forecasts(bundle, mixed)
    alone = {**_forecasts(bundle, _with_history(day_state, {"store_0": _weekly(as_of, 2)})),
             **_forecasts(bundle, _with_history(day_state, {"store_1": daily_1}))}
    assert together == alone
    weekday = 28 % 7  # as_of is 28 days after the daily history's start
    store_1 = next(d for d in response.decisions if d.location == "store_1")
    assert together["store_1", store_1.sku][:2] == [rates["store_0"][weekday], rates["store_0"][weekday + 1]]
    assert all(d.order_up_to_level is not None for d in response.decisions)  # the DC sums its stores'


def test_a_forecaster_that_cannot_reach_as_of_from_the_last_week_is_refused_naming_the_field(bundle, day_state):
    as_of = dt.date.fromisoformat(day_state["as_of"])
    saved = bundle.forecaster.max_horizon
    bundle.forecaster.max_horizon = 3  # as an LSTM's: it forecasts at most 3 days ahead
    try:
        state = _with_history(day_state, {"store_1": _weekly(as_of, 3)})
        with pytest.raises(ErpStateError, match=(
                r"^locations\[2\]\.items\[0\]\.demand_history\.values: the last week ends on "
                rf"{as_of - dt.timedelta(days=4)}, leaving 3 days before as_of without sales; .* at most 3 days "
                r"ahead \(max_horizon\)")):
            decide(bundle, state)
        # 2 days before as_of: within reach; the third day of the horizon is as_of, carried on past it
        filled = _forecasts(bundle, _with_history(day_state, {"store_1": _weekly(as_of, 2)}))
        assert filled and all(len(set(mean)) == 1 for mean in filled.values())
    finally:
        bundle.forecaster.max_horizon = saved
