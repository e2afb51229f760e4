"""Scenarios: every registered one builds and runs cleanly; bad names and parameters name the key.

Runs use the twin's OrderUpTo at base-stock levels (the levels of conf/policy/base_stock.yaml), so the
scenarios are tested without agents/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import scenarios
from scenarios import SCENARIOS, Scenario
from twin import DcClosure, DemandShock, Engine, LeadTimeShock, SpecError, network_from_dict
from twin.coverage import protection_periods
from twin.stats import DemandStats
from twin.testing import OrderUpTo

CONF = Path(__file__).resolve().parents[2] / "conf"
EXAMPLE = CONF.parent / "examples" / "scenario_covid_dates.yaml"  # the scenario file conf/scenario/file.yaml names
HORIZON = 100

# parameters that move each scenario's shocks into a 100-day run
SHORT = {
    "baseline": {},
    "covid_2020": {"start_day": 10, "time_scale": 0.5},
    "flash_sale": {"start_day": 40, "regions": ["north"]},
    "port_strike": {"start_day": 20, "days": 30, "outage_days": 5},
    "dc_outage": {"start_day": 30, "reroute": True},
    "holiday_peak": {"start_day": 60},
    "custom": {"shocks": [{"type": "demand", "start": 20, "end": 30, "multiplier": 2.0, "groups": ["staples"]},
                          {"type": "dc_closure", "start": 40, "end": 50, "dc": "dc_1", "reroute": False},
                          {"type": "capacity_cut", "start": 40, "end": 200, "node": "dc_2", "factor": 0.5}]},
    "file": {"path": str(EXAMPLE)},
}


def load_network(name: str):
    return network_from_dict(yaml.safe_load((CONF / "network" / f"{name}.yaml").read_text()))


def conf_params(name: str) -> dict:
    params = yaml.safe_load((CONF / "scenario" / f"{name}.yaml").read_text())
    assert params.pop("name") == name
    if name == "file":
        assert params == {"path": None}  # the file is named on the command line; here, the example file
        params["path"] = str(EXAMPLE)
    return params




def base_stock(network, horizon: int) -> OrderUpTo:
    """Order up to the mean demand over the protection period (lead time + 1 day) plus 1.65 standard deviations
    of it, from the demand statistics of `horizon` days of seed 0 (the base-stock policy's default levels)."""
    stats = DemandStats.of(network, horizon, seed=0)
    mu, sd = stats.over(protection_periods(stats.lead_time_mean, 1))
    return OrderUpTo(mu + 1.65 * sd)


def run(network, scenario: Scenario, horizon: int, per_sku: bool = False):
    policy = base_stock(network, horizon)
    engine = Engine(network, horizon=horizon, seed=0, shocks=scenario.shocks, warmup=10, invariants="error",
                    per_sku_series=per_sku)
    return engine.run(policy)


def test_every_scenario_has_a_config_and_short_parameters():
    assert set(SHORT) == set(SCENARIOS)
    assert {p.stem for p in (CONF / "scenario").glob("*.yaml")} == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_runs_in_a_short_window_on_paper_5x20(paper, name):
    scenario = scenarios.build(name, paper, HORIZON, **SHORT[name])
    assert scenario.name == ("covid_dates" if name == "file" else name) and scenario.description
    assert (len(scenario.shocks) == 0) == (name == "baseline")
    for shock in scenario.shocks:
        assert 0 <= shock.start < shock.end <= HORIZON
    result = run(paper, scenario, HORIZON)
    assert result.violations == []
    assert 0 < result.kpis["network"]["fill_rate"] <= 1


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_config_builds_on_paper_5x20_for_a_year(paper, name):
    scenario = scenarios.build(name, paper, 365, **conf_params(name))
    for shock in scenario.shocks:
        assert 0 <= shock.start < shock.end <= 365


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_config_runs_a_year_on_the_small_network(small, name):
    params = conf_params(name)
    if name == "covid_2020":
        params["reroute"] = False  # the small network's single DC has no backup
    if name == "custom":
        params["shocks"] = [{"type": "lead_time", "start": 100, "end": 140, "multiplier": 2.0}]
    result = run(small, scenarios.build(name, small, 365, **params), 365)
    assert result.violations == []


def test_covid_surges_then_dips_staples_only(paper):
    covid = scenarios.build("covid_2020", paper, HORIZON, start_day=10, time_scale=0.5, dc_closure_days=0)
    base = run(paper, scenarios.build("baseline", paper, HORIZON), HORIZON, per_sku=True)
    shocked = run(paper, covid, HORIZON, per_sku=True)
    staples = np.array([g == "staples" for g in paper.skus.group])
    fresh = np.array([g == "fresh" for g in paper.skus.group])
    stores = np.array([n.kind == "store" for n in paper.nodes])

    def ratio(days: slice, skus: np.ndarray) -> float:
        """Store demand of `skus` over `days`, shocked run / baseline run (same seed)."""
        demand = [r.sku_series["demand"][days][:, stores][:, :, skus].sum() for r in (shocked, base)]
        return demand[0] / demand[1]

    assert ratio(slice(10, 22), staples) > 2.0          # panic buying, x2.5
    assert 0.6 < ratio(slice(23, 43), staples) < 0.8    # destocking, x0.7
    assert 0.9 < ratio(slice(10, 22), fresh) < 1.1      # fresh is untouched
    kinds = {type(s) for s in covid.shocks}
    assert kinds == {DemandShock, LeadTimeShock}        # dc_closure_days=0: no closure


def test_covid_picks_the_first_dc_and_scales_with_severity(paper):
    covid = scenarios.build("covid_2020", paper, 365, severity=2.0)
    closure = [s for s in covid.shocks if isinstance(s, DcClosure)]
    assert [c.dc for c in closure] == ["dc_0"] and closure[0].reroute
    panic = covid.shocks[0]
    assert isinstance(panic, DemandShock) and panic.multiplier == pytest.approx(4.0) and panic.groups == ("staples",)
    calm = scenarios.build("covid_2020", paper, 365, severity=0.0)
    assert all(s.multiplier == 1.0 for s in calm.shocks if isinstance(s, (DemandShock, LeadTimeShock)))


def test_covid_runs_on_a_serial_chain_with_all_skus(paper):
    serial = load_network("serial_3")
    scenario = scenarios.build("covid_2020", serial, HORIZON, start_day=5, time_scale=0.5, surge_groups=[],
                               lockdown_groups=[], reroute=False)
    assert run(serial, scenario, HORIZON).violations == []


def test_windows_past_the_horizon_are_clipped_or_dropped(paper):
    assert scenarios.build("flash_sale", paper, HORIZON, start_day=HORIZON).shocks == ()
    covid = scenarios.build("covid_2020", paper, HORIZON, start_day=90)
    assert covid.shocks and all(s.end <= HORIZON for s in covid.shocks)
    assert run(paper, covid, HORIZON).violations == []
    custom = scenarios.build("custom", paper, 50, shocks=[{"type": "demand", "start": 40, "end": 400},
                                                          {"type": "demand", "start": 60, "end": 70}])
    assert [(s.start, s.end) for s in custom.shocks] == [(40, 50)]


@pytest.mark.parametrize(("name", "params", "key"), [
    ("nope", {}, "scenario.name"),
    ("baseline", {"severity": 1.0}, "scenario.severity"),
    ("covid_2020", {"sevrity": 1.0}, "scenario.sevrity"),
    ("covid_2020", {"severity": "high"}, "scenario.severity"),
    ("covid_2020", {"severity": 2.9, "lockdown_multiplier": 0.5}, "scenario.severity"),
    ("covid_2020", {"start_day": -1}, "scenario.start_day"),
    ("covid_2020", {"surge_groups": ["frozen"]}, "scenario.surge_groups"),
    ("covid_2020", {"dc": "dc_9"}, "scenario.dc"),
    ("flash_sale", {"regions": ["mars"]}, "scenario.regions"),
    ("flash_sale", {"days": 0}, "scenario.days"),
    ("port_strike", {"suppliers": ["acme"]}, "scenario.suppliers"),
    ("holiday_peak", {"capacity_factor": 1.5}, "scenario.capacity_factor"),
    ("dc_outage", {"reroute": "yes"}, "scenario.reroute"),
    ("custom", {"shocks": [{"type": "quake", "start": 1, "end": 2}]}, "scenario.shocks[0].type"),
    ("custom", {"shocks": [{"type": "demand", "start": 5, "end": 2}]}, "scenario.shocks[0]"),
    ("custom", {"shock": []}, "scenario.shock"),
])
def test_bad_scenarios_name_the_key(paper, name, params, key):
    with pytest.raises(SpecError) as info:
        scenarios.build(name, paper, 365, **params)
    message = str(info.value)
    assert message.startswith(key), message
    assert any(word in message for word in ("allowed", "expected", "required")), message


def test_unknown_name_lists_the_registered_ones(paper):
    with pytest.raises(SpecError, match="allowed: baseline, covid_2020"):
        scenarios.build("covid", paper, 365)


def test_reroute_needs_backup_dcs(small):
    with pytest.raises(SpecError, match=r"^scenario\.reroute: 'store_0'"):
        scenarios.build("dc_outage", small, 365, reroute=True)
    outage = scenarios.build("dc_outage", small, 365)
    assert outage.shocks == (DcClosure(150, 164, dc="dc_0", reroute=False),)


def test_bad_horizon_is_a_spec_error(paper):
    with pytest.raises(SpecError, match="^horizon"):
        scenarios.build("baseline", paper, 0)
