"""Scenario files (scenarios/files.py): dates or day numbers, end or duration, magnitudes, targets, ramps as
daily staircases the engine runs exactly, one clear error per bad entry, and the written form read back.

The command line (`scenario=FILE.yaml`) and the run directory's scenario.yaml are tested in
tests/experiments/test_scenario_file_runs.py.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import numpy as np
import pytest

import scenarios
from scenarios.files import read_scenario_file, scenario_document, scenario_yaml
from twin import CapacityCut, DcClosure, DemandShock, Engine, LeadTimeShock, SpecError
from twin.calendar import calendar_date, twin_day
from twin.shocks import SupplierOutage
from twin.testing import OrderUpTo

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
EXAMPLE = ROOT / "examples" / "scenario_covid_dates.yaml"




def write(directory: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def build(path: Path, network, horizon: int = 365):
    return scenarios.build("file", network, horizon, path=str(path))


def test_the_calendar_converts_both_ways():
    assert twin_day(dt.date(2021, 1, 1)) == 0 and twin_day(dt.date(2021, 3, 12)) == 70
    assert twin_day(dt.date(2020, 12, 31)) == -1
    assert all(twin_day(calendar_date(d)) == d for d in (0, 1, 59, 364, 365, 1000))


def test_a_file_with_dates_equals_the_same_file_with_day_numbers(tmp_path, paper):
    dates = write(tmp_path, """
        name: spring
        description: the same shocks, by date
        shocks:
          - {type: demand, groups: [staples], start: 2021-03-12, end: 2021-04-06, magnitude: 2.5}
          - {type: lead_time, nodes: [supplier_0], start: "2021-03-19", end: 2021-07-17, magnitude: 2.5}
          - {type: dc_closure, nodes: dc_0, start: 2021-04-02, end: 2021-04-16, reroute: false}
    """, "dates.yaml")
    days = write(tmp_path, """
        name: spring
        description: the same shocks, by date
        shocks:
          - {type: demand, groups: [staples], start: 70, end: 95, multiplier: 2.5}
          - {type: lead_time, sources: [supplier_0], start: 77, end: 197, magnitude: 2.5}
          - {type: dc_closure, dc: dc_0, start: 91, end: 105, reroute: false}
    """, "days.yaml")
    by_date, by_day = build(dates, paper), build(days, paper)
    assert by_date == by_day
    assert by_day.name == "spring" and by_day.description == "the same shocks, by date"
    assert by_day.shocks == (DemandShock(70, 95, multiplier=2.5, groups=("staples",)),
                             LeadTimeShock(77, 197, multiplier=2.5, sources=("supplier_0",)),
                             DcClosure(91, 105, dc="dc_0", reroute=False))


def test_duration_equals_end_and_lists_of_nodes_give_one_shock_each(tmp_path, paper):
    by_end = write(tmp_path, """
        name: cuts
        shocks:
          - {type: capacity_cut, nodes: [dc_0, dc_1], start: 10, end: 24, magnitude: 0.5}
          - {type: supplier_outage, nodes: supplier_0, start: 2021-01-05, end: 2021-01-08}
          - {type: demand, regions: north, start: 30, end: 31, magnitude: 3}
    """, "end.yaml")
    by_duration = write(tmp_path, """
        name: cuts
        shocks:
          - {type: capacity_cut, nodes: [dc_0, dc_1], start: 10, duration: 14, factor: 0.5}
          - {type: supplier_outage, supplier: supplier_0, start: 2021-01-05, duration: 3}
          - {type: demand, regions: [north], start: 30, duration: 1, magnitude: 3}
    """, "duration.yaml")
    assert build(by_end, paper).shocks == build(by_duration, paper).shocks == (
        CapacityCut(10, 24, node="dc_0", factor=0.5), CapacityCut(10, 24, node="dc_1", factor=0.5),
        SupplierOutage(4, 7, supplier="supplier_0"), DemandShock(30, 31, multiplier=3.0, regions=("north",)))


def test_ramps_are_daily_steps_of_interpolated_magnitude(tmp_path, paper):
    path = write(tmp_path, """
        name: ramps
        shocks:
          - {type: lead_time, start: 10, duration: 6, magnitude: 3.0, ramp_up: 2, ramp_down: 1}
          - {type: capacity_cut, nodes: dc_2, start: 20, duration: 4, magnitude: 0.2, ramp_down: 3}
    """)
    lead = [(s.start, s.end, s.multiplier) for s in build(path, paper).shocks if isinstance(s, LeadTimeShock)]
    # ramp_up 2: 1/3 and 2/3 of the way from 1 to 3; ramp_down 1: half way
    assert lead == [(10, 11, pytest.approx(5 / 3)), (11, 12, pytest.approx(7 / 3)), (12, 15, 3.0),
                    (15, 16, pytest.approx(2.0))]
    cuts = [(s.start, s.end, s.factor) for s in build(path, paper).shocks if isinstance(s, CapacityCut)]
    assert cuts == [(20, 21, 0.2), (21, 22, pytest.approx(0.4)), (22, 23, pytest.approx(0.6)),
                    (23, 24, pytest.approx(0.8))]
    clipped = build(path, paper, horizon=12).shocks
    assert [(s.start, s.end) for s in clipped] == [(10, 11), (11, 12)]


def test_a_ramped_demand_shock_runs_day_by_day_as_intended_and_composes_by_multiplication(tmp_path, small):
    path = write(tmp_path, """
        name: ramped surge
        shocks:
          - {type: demand, groups: [staples], start: 5, end: 20, magnitude: 3.0, ramp_up: 4, ramp_down: 3}
          - {type: demand, start: 15, end: 25, magnitude: 0.5}
    """)
    horizon = 30
    staples = 1.0 + np.zeros(horizon)
    staples[5:20] = [1.4, 1.8, 2.2, 2.6] + [3.0] * 8 + [2.5, 2.0, 1.5]  # 1 + (k+1)/5 * 2, ..., 1 + (3-j)/4 * 2
    every = np.where((np.arange(horizon) >= 15) & (np.arange(horizon) < 25), 0.5, 1.0)
    k_staples = small.skus.group.index("staples")
    want = np.outer(every, np.ones(small.skus.n))
    want[:, k_staples] *= staples
    stores = [i for i, n in enumerate(small.nodes) if n.kind == "store"]

    def run(shocks):
        engine = Engine(small, horizon=horizon, seed=3, shocks=shocks, per_sku_series=True, invariants="error")
        policy = OrderUpTo(np.full((len(small.nodes), small.skus.n), 100.0))
        seen = []
        while not engine.done:
            seen.append(engine.effects.demand[stores].copy())  # the multipliers in force at this day's decision
            engine.step(policy.act(engine.state_for(policy)))
        return np.array(seen), engine.result().sku_series["expected_demand"][:, stores]

    effects, shocked = run(build(path, small).shocks)
    _, plain = run(())
    np.testing.assert_allclose(effects, np.repeat(want[:, None, :], len(stores), axis=1), rtol=1e-12)
    # the stores' true mean demand, shocks included, is the unshocked mean times the intended multiplier (the
    # series are float32)
    np.testing.assert_allclose(shocked, plain * want[:, None, :], rtol=1e-6)


def test_the_example_file_builds_on_the_default_and_the_small_network(paper, small):
    for network in (paper, small):
        scenario = build(EXAMPLE, network)
        assert scenario.name == "covid_dates" and scenario.description.startswith("COVID-19")
        assert DcClosure(91, 105, dc="dc_0", reroute=False) in scenario.shocks
        panic = [s.multiplier for s in scenario.shocks if isinstance(s, DemandShock) and s.start < 95
                 and s.groups == ("staples",)]
        assert panic == pytest.approx([1.3, 1.6, 1.9, 2.2, 2.5, 2.125, 1.75, 1.375])


def test_a_written_scenario_reads_back_to_the_same_shocks(tmp_path, paper):
    for scenario in (build(EXAMPLE, paper), scenarios.build("covid_2020", paper, 365),
                     scenarios.build("port_strike", paper, 130, outage_days=3)):
        document = scenario_document(scenario)
        first = document["shocks"][0]
        assert (first["start_date"], first["end_date"]) == (calendar_date(first["start"]), calendar_date(first["end"]))
        path = tmp_path / "written.yaml"
        path.write_text(scenario_yaml(scenario, "a header\nof two lines"))
        assert path.read_text().startswith("# a header\n# of two lines\n")
        assert build(path, paper, 365) == scenario


BAD = [  # (the second shock of a file, the field its error names, a phrase of the message)
    ("{type: quake, start: 1, end: 2}", "type", "allowed: demand, lead_time, supplier_outage, dc_closure"),
    ("{type: lead_time, nodes: [acme], start: 1, end: 2, magnitude: 2}", "nodes", "allowed: supplier_0"),
    ("{type: supplier_outage, supplier: dc_1, start: 1, end: 2}", "supplier", "allowed: supplier_0"),
    ("{type: dc_closure, nodes: [dc_0, dc_9], start: 1, end: 2}", "nodes", "'dc_9' is not a dc"),
    ("{type: capacity_cut, node: store_00, start: 1, end: 2, magnitude: 0.5}", "node", "no capacity to cut"),
    ("{type: demand, groups: [frozen], start: 1, end: 2, magnitude: 2}", "groups", "allowed: fresh, general"),
    ("{type: demand, regions: [mars], start: 1, end: 2, magnitude: 2}", "regions", "allowed: central, east"),
    ("{type: demand, start: 2021-03-10, end: 2021-03-01, magnitude: 2}", "end", "(day 59) is not after start"),
    ("{type: demand, start: 10, end: 10, magnitude: 2}", "end", "day 10 is not after start day 10"),
    ("{type: demand, start: 2020-12-31, end: 2021-01-10, magnitude: 2}", "start", "before day 0 (2021-01-01)"),
    ("{type: demand, start: -3, end: 5, magnitude: 2}", "start", "before day 0"),
    ("{type: demand, start: 2021-02-30, end: 80, magnitude: 2}", "start", "neither a day number nor a date"),
    ("{type: demand, start: .nan, end: 80, magnitude: 2}", "start", "neither a day number nor a date"),
    ("{type: demand, start: .inf, end: 80, magnitude: 2}", "start", "neither a day number nor a date"),
    ("{type: demand, start: 1.0e+30, end: 80, magnitude: 2}", "start", "more than 36500 days after day 0"),
    ("{type: demand, start: 2400-01-01, duration: 3, magnitude: 2}", "start", "more than 36500 days after day 0"),
    ("{type: demand, start: 3, duration: .nan, magnitude: 2}", "duration", "expected an integer, got nan"),
    ("{type: demand, start: 3, duration: 1.0e+30, magnitude: 2}", "duration", "out of range; allowed: [1, 36500]"),
    ("{type: demand, start: 1, end: 2021-01-10 08:00, magnitude: 2}", "end", "neither a day number nor a date"),
    ("{type: demand, start: 1, magnitude: 2}", "end", "either end"),
    ("{type: demand, start: 1, end: 5, duration: 4, magnitude: 2}", "duration", "one of end"),
    ("{type: demand, start: 1, duration: 0, magnitude: 2}", "duration", "allowed: [1, 36500]"),
    ("{type: demand, start: 1, end: 6, magnitude: 2, ramp_up: 5}", "ramp_up", "ramp_up + ramp_down <= 4"),
    ("{type: demand, start: 1, end: 6, magnitude: 2, ramp_up: 3, ramp_down: 2}", "ramp_down", "no day at full"),
    ("{type: demand, start: 1, end: 6, magnitude: 2, ramp_up: -1}", "ramp_up", "allowed: [0, inf]"),
    ("{type: dc_closure, dc: dc_0, start: 1, end: 9, ramp_up: 2}", "ramp_up", "it cannot ramp"),
    ("{type: supplier_outage, nodes: supplier_0, start: 1, end: 9, ramp_down: 2}", "ramp_down", "cannot ramp"),
    ("{type: supplier_outage, nodes: supplier_0, start: 1, end: 9, magnitude: 0}", "magnitude", "has no magnitude"),
    ("{type: demand, start: 1, end: 9}", "magnitude", "required"),
    ("{type: demand, start: 1, end: 9, magnitude: 500}", "magnitude", "allowed: [0, 100]"),
    ("{type: demand, start: 1, end: 9, magnitude: 2, multiplier: 2}", "multiplier", "one of magnitude, multiplier"),
    ("{type: capacity_cut, nodes: dc_0, start: 1, end: 9, magnitude: 1.5}", "magnitude", "allowed: [0, 1]"),
    ("{type: dc_closure, start: 1, end: 9}", "nodes", "required (or dc"),
    ("{type: dc_closure, nodes: [], start: 1, end: 9}", "nodes", "names no node"),
    ("{type: demand, start: 1, end: 9, magnitude: 2, multiplyer: 2}", "multiplyer", "not a key of a demand shock"),
    ("{type: demand, start: 70, end: 80, start_date: 2021-03-13, magnitude: 2}", "start_date", "not the date"),
]


@pytest.mark.parametrize(("shock", "field", "phrase"), BAD, ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD)])
def test_a_bad_shock_gives_one_error_naming_the_file_the_shock_and_the_field(tmp_path, paper, shock, field, phrase):
    path = write(tmp_path, f"""
        name: bad
        shocks:
          - {{type: demand, start: 1, end: 2, magnitude: 2}}
          - {shock}
    """, "bad.yaml")
    with pytest.raises(SpecError) as info:
        build(path, paper)
    message = str(info.value)
    assert message.startswith(f"{path}: shocks[1].{field}: "), message
    assert phrase in message and "\n" not in message, message
    assert any(word in message for word in ("allowed", "required")), message


@pytest.mark.parametrize(("text", "start"), [
    ("shocks: []\n", "{path}: name: required"),
    ("name: x\nshock: []\n", "{path}: 'shock' is not a key of a scenario file; allowed: name, description, shocks"),
    ("name: x\nshocks: {type: demand}\n", "{path}: shocks: expected a list"),
    ("name: x\nshocks: [3]\n", "{path}: shocks[0]: expected a mapping"),
    ("- just\n- a list\n", "{path}: expected a mapping with name"),
    ("name: [unclosed\n", "{path}: not valid YAML at line"),
])
def test_a_bad_file_gives_one_error_naming_the_file(tmp_path, paper, text, start):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(SpecError) as info:
        read_scenario_file(path)
    assert str(info.value).startswith(start.format(path=path)), str(info.value)


def test_the_scenario_file_option_needs_an_existing_path(paper, tmp_path):
    with pytest.raises(SpecError, match=r"^scenario\.path: required"):
        scenarios.build("file", paper, 365)
    with pytest.raises(SpecError, match=r"^scenario\.path: no such file"):
        scenarios.build("file", paper, 365, path=str(tmp_path / "missing.yaml"))
    with pytest.raises(SpecError, match=r"^scenario\.severity: unknown parameter of scenario 'file'"):
        scenarios.build("file", paper, 365, path=str(EXAMPLE), severity=2)
