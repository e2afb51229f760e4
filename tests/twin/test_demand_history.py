"""Store demand from a planner's sales history (twin/demand_history.py): replayed exactly, or fitted and
block-bootstrapped (deterministic per seed, the history's mean, contiguous blocks shared by all series), and every
problem of the file reported naming the file, row, column or series.

data/demand_history.csv is the store demand of a 91-day run of data/network_csv's network (seed 11, no orders:
customer demand does not depend on stock) written by `write_demand_history`: ids `store/sku`, dates from day 0
(2021-01-01); test_the_fixture_is_a_twin_run_written_as_a_history writes it again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pytest

from twin import DemandShock, Engine, SpecError
from twin.calendar import calendar_date
from twin.demand_history import (
    DemandHistoryError,
    demand_source_from_dict,
    fit_history,
    read_demand_history,
    write_demand_history,
)
from twin.network_files import read_network_files
from twin.snapshot import snapshot_from_dict
from twin.stats import DemandStats
from twin.streams import Streams
from twin.testing import OrderUpTo

DATA = Path(__file__).parent / "data"
HISTORY = DATA / "demand_history.csv"
DAYS = 91  # the fixture's days: 2021-01-01 .. 2021-04-01


@pytest.fixture(scope="module")
def network():
    return read_network_files(DATA / "network_csv")


@pytest.fixture(scope="module")
def fractional(network):
    """The same network counting fractional units (no rounding: a fitted path is baseline x residual exactly)."""
    return dataclasses.replace(network, demand=dataclasses.replace(network.demand, integer_units=False))


def stores_of(network) -> list[int]:
    return [i for i, n in enumerate(network.nodes) if n.kind == "store"]


def source(network, horizon=DAYS, path=HISTORY, **settings):
    return demand_source_from_dict({"mode": "replay", "path": str(path), **settings}, network, horizon)


def policy(network):
    levels = np.array([[0.0] * network.skus.n if n.kind == "supplier" else [60.0] * network.skus.n
                       for n in network.nodes])
    return OrderUpTo(levels)


def run(network, demand, horizon=DAYS, seed=0, shocks=()):
    """A run of the real engine with orders (an order-up-to policy); per-SKU series of (days, nodes, SKUs)."""
    engine = Engine(network, horizon=horizon, seed=seed, shocks=shocks, per_sku_series=True, invariants="error",
                    demand=demand)
    result = engine.run(policy(network))
    return engine, result.sku_series


def history_cube(network) -> np.ndarray:
    """The fixture as (days, stores, SKUs), read with the csv module independently of the reader under test."""
    import csv

    stores = [network.nodes[i].name for i in stores_of(network)]
    skus = list(network.skus.name)
    cube = np.full((DAYS, len(stores), len(skus)), np.nan)
    with HISTORY.open() as f:
        for row in csv.DictReader(f):
            store, sku = row["series_id"].split("/")
            day = (dt.date.fromisoformat(row["date"]) - calendar_date(0)).days
            cube[day, stores.index(store), skus.index(sku)] = float(row["value"])
    assert not np.isnan(cube).any()
    return cube


def test_the_fixture_is_a_twin_run_written_as_a_history(network, tmp_path):
    engine = Engine(network, horizon=DAYS, seed=11, per_sku_series=True, invariants="off")
    zero = np.zeros((engine.n_nodes, engine.n_sku))
    while not engine.done:
        engine.step(zero)
    written = write_demand_history(tmp_path / "again.csv", network, engine.result().sku_series["demand"])
    assert written.read_bytes() == HISTORY.read_bytes()
    assert HISTORY.read_text().splitlines()[:2] == ["series_id,date,value", "s1/rice,2021-01-01,7"]


# ---------------------------------------------------------------------------------------------------------- replay

def test_a_replay_is_the_history_exactly(network):
    cube = history_cube(network)
    for seed in (0, 5):
        engine, series = run(network, source(network), seed=seed)
        stores = stores_of(network)
        assert np.array_equal(series["demand"][:, stores], cube), "demand is the file's values, store x SKU x day"
        assert np.array_equal(series["expected_demand"][:, stores], cube)
        assert series["ordered"].sum() > 0  # a real run: the stores order and are served
    assert np.array_equal(DemandStats.of(network, DAYS, 0, source(network)).mean[stores], cube.mean(axis=0))


def test_a_replay_from_a_start_date_takes_the_later_days(network):
    later = source(network, horizon=30, start_date="2021-01-15")
    _, series = run(network, later, horizon=30)
    assert np.array_equal(series["demand"][:, stores_of(network)], history_cube(network)[14:44])
    assert later.describe()["start_date"] == "2021-01-15"


def test_a_run_past_the_history_is_an_error_naming_the_horizon(network):
    with pytest.raises(SpecError, match=r"^horizon: 92 days from demand.start_date 2021-01-01 run to 2021-04-02, "
                                        r"after the demand history's last date 2021-04-01 .*allowed: horizon <= 91"):
        source(network, horizon=92)
    with pytest.raises(SpecError, match=r"^horizon: 30 days .* allowed: horizon <= 11, an earlier "
                                        r"demand.start_date"):
        source(network, horizon=30, start_date="2021-03-22")
    engine_source = source(network, horizon=10)
    with pytest.raises(SpecError, match="^horizon: 92 days"):
        Engine(network, horizon=92, seed=0, demand=engine_source)


def test_demand_shocks_multiply_a_replay(network, fractional):
    cube = history_cube(network)
    shock = DemandShock(start=20, end=40, multiplier=1.5, groups=("staples",))  # rice
    rice, stores = network.skus.name.index("rice"), stores_of(network)
    _, exact = run(fractional, source(fractional), shocks=(shock,))
    expected = cube.copy()
    expected[20:40, :, rice] *= 1.5
    assert np.array_equal(exact["demand"][:, stores], expected.astype(np.float32))

    _, whole = run(network, source(network), shocks=(shock,))
    demand = whole["demand"][:, stores]
    outside = np.ones(DAYS, dtype=bool)
    outside[20:40] = False
    assert np.array_equal(demand[outside], cube[outside])
    assert np.array_equal(demand[20:40, :, :rice], cube[20:40, :, :rice])
    shocked, drawn = expected[20:40, :, rice], demand[20:40, :, rice]
    # x 1.5 of an odd number has a half: rounded down or up at random (up with probability 1/2, keeping the mean)
    assert np.all((drawn == np.floor(shocked)) | (drawn == np.ceil(shocked)))
    halves = shocked != np.floor(shocked)
    assert 0.3 < np.mean(drawn[halves] == np.ceil(shocked[halves])) < 0.7, "both ways, about half the time each"
    assert np.all(demand == np.rint(demand)), "whole units"
    assert np.array_equal(whole["expected_demand"][:, stores], expected.astype(np.float32))


# ---------------------------------------------------------------------------------------------------------- fitted

def fitted(network, horizon=DAYS, **settings):
    return source(network, horizon, mode="fitted", **settings)


def test_the_fit_is_the_documented_formula():
    rng = np.random.default_rng(3)
    values = rng.poisson(rng.uniform(0, 8, (1, 2, 3)), (50, 2, 3)).astype(float)
    values[:, 0, 0] = 0  # a series that never sold
    values[::7, 1, 1] = 0  # a weekday without sales
    first = dt.date(2023, 5, 4)
    fit = fit_history(values, first, 14)
    for s in range(2):
        for k in range(3):
            y = values[:, s, k]
            level = np.array([y[min(max(t - 7, 0), 50 - 14):][:14].mean() for t in range(50)])
            factor = np.ones(7)
            for w in range(7):
                days = [t for t in range(50) if (first + dt.timedelta(days=t)).weekday() == w and level[t] > 0]
                if days:
                    factor[w] = np.mean([y[t] / level[t] for t in days])
            baseline = np.array([level[t] * factor[(first + dt.timedelta(days=t)).weekday()] for t in range(50)])
            residual = np.array([y[t] / baseline[t] if baseline[t] > 0 else 1.0 for t in range(50)])
            assert np.allclose(fit.level[:, s, k], level)
            assert np.allclose(fit.factor[:, s, k], factor)
            assert np.allclose(fit.baseline[:, s, k], baseline)
            assert np.allclose(fit.residuals[:, s, k], residual)
    assert np.allclose(fit.baseline * fit.residuals, values), "multiplicative: history = baseline x residual"
    assert fit.factor[first.weekday(), 1, 1] == 0 and np.all(fit.residuals[::7, 1, 1] == 1)


def test_a_fitted_run_is_deterministic_for_a_seed_and_differs_across_seeds(network):
    demand = fitted(network)
    _, a = run(network, demand, seed=4)
    _, b = run(network, demand, seed=4)
    _, c = run(network, demand, seed=5)
    stores = stores_of(network)
    assert np.array_equal(a["demand"], b["demand"])
    assert not np.array_equal(a["demand"][:, stores], c["demand"][:, stores])
    assert not np.array_equal(a["demand"][:, stores], history_cube(network)), "a new path, not the history"
    assert np.all(a["demand"] >= 0) and np.all(a["demand"] == np.rint(a["demand"]))
    assert np.array_equal(a["expected_demand"], c["expected_demand"]), "the baseline does not depend on the seed"


def test_the_mean_over_bootstrap_paths_is_the_history_mean(network):
    """200 paths over the history's 91 days. The Monte Carlo mean per series is off its expectation by at most
    4 standard errors (sd across paths / sqrt(200)); the expectation itself may differ from the history mean by the
    bootstrap's small bias (the first and last days of the history start fewer blocks; level and residual covary),
    allowed up to a quarter of the history mean's own standard error, sd(y) / sqrt(91), so the bootstrap's mean is
    well inside what 91 days tell about the mean. (Measured: at most 2.5 % of the mean, for the intermittent kettle;
    under 0.4 % for the others.)"""
    demand = fitted(network)
    paths = 200
    names = [network.nodes[i].name for i in stores_of(network)]
    means = np.array([[[demand_model.sample(name, d) for name in names] for d in range(DAYS)]
                      for demand_model in (demand.model(network, DAYS, Streams(seed)) for seed in range(paths))]
                     ).mean(axis=1)  # (paths, stores, SKUs)
    cube = history_cube(network)
    monte_carlo = means.mean(axis=0)
    standard_error = means.std(axis=0, ddof=1) / np.sqrt(paths)
    allowed = 4 * standard_error + 0.25 * cube.std(axis=0, ddof=1) / np.sqrt(DAYS)
    assert np.all(np.abs(monte_carlo - cube.mean(axis=0)) <= allowed), (monte_carlo, cube.mean(axis=0), allowed)
    assert np.all(standard_error > 0)


def test_paths_are_contiguous_blocks_of_history_residuals_shared_by_every_series(fractional):
    demand = fitted(fractional, block=5)
    residuals = demand.fit.residuals  # (history days, stores, SKUs); the fit is checked above
    first_weekday = demand.history.first.weekday()
    stores = stores_of(fractional)
    for seed in (1, 2):
        engine, series = run(fractional, demand, seed=seed)
        path = (series["demand"][:, stores] / series["expected_demand"][:, stores]).astype(float)
        starts = []
        for first in range(0, DAYS, 5):
            n = min(5, DAYS - first)
            block = path[first:first + n]
            # every history day t whose next n residuals are this block's, for all stores and SKUs at once
            matches = [t for t in range(DAYS - 5 + 1) if np.allclose(residuals[t:t + n], block, rtol=1e-5)]
            assert matches, f"run days {first}..{first + n - 1} are no run of {n} consecutive history residuals"
            # ... and each series alone matches no other start than those shared ones (one start for all series)
            for s in range(len(stores)):
                for k in range(fractional.skus.n):
                    alone = [t for t in range(DAYS - 5 + 1)
                             if np.allclose(residuals[t:t + n, s, k], block[:, s, k], rtol=1e-5)]
                    assert set(matches) <= set(alone)
            assert len(matches) == 1  # residuals are continuous numbers: no two stretches of the history agree
            t = matches[0]
            assert (first_weekday + t) % 7 == (first_weekday + first) % 7, "a block keeps its weekday"
            starts.append(t)
        assert starts == engine.demand_model.block_starts.tolist()
        assert len(set(starts)) > 3, "the starts are drawn, not fixed"


def test_a_longer_run_extends_the_path_and_a_snapshot_continues_it(network):
    demand = fitted(network)
    _, full = run(network, demand, seed=8)
    _, short = run(network, fitted(network, horizon=40), horizon=40, seed=8)
    assert np.array_equal(full["demand"][:40], short["demand"])
    engine = Engine(network, horizon=DAYS, seed=8, per_sku_series=True, invariants="error", demand=demand)
    orders = policy(network)
    while engine.day < 30:
        engine.step(orders.act(engine.state()))
    snapshot = snapshot_from_dict(engine.snapshot().to_dict(), network)
    continued = Engine(network, horizon=DAYS, seed=8, per_sku_series=True, invariants="error", demand=demand,
                       start=snapshot).run(orders)
    assert np.array_equal(continued.sku_series["demand"], full["demand"][30:])


def test_policy_statistics_of_a_fitted_history(network):
    demand = fitted(network)
    stats = DemandStats.of(network, DAYS, 0, demand)
    model = demand.model(network, DAYS, Streams(0))
    s1 = network.index("s1")
    baseline = demand.fit.baseline[:, 0]
    assert np.allclose(stats.mean[s1], baseline.mean(axis=0))
    spread = ((demand.fit.residuals[:, 0] - 1) ** 2).mean(axis=0)
    assert np.allclose(stats.variance[s1], (baseline**2 * spread).mean(axis=0) + baseline.var(axis=0))
    assert np.allclose(model.mean_matrix("s1"), baseline)
    dc = network.index("dc_north")  # s1 and s2
    assert np.allclose(stats.mean[dc], baseline.mean(axis=0) + demand.fit.baseline[:, 1].mean(axis=0))


# --------------------------------------------------------------------------------------------------------- missing

def without(tmp_path, *ids: str) -> Path:
    lines = HISTORY.read_text().splitlines(keepends=True)
    path = tmp_path / "partial.csv"
    path.write_text("".join(line for line in lines if line.split(",")[0] not in ids))
    return path


def test_a_store_sku_without_a_series_is_an_error_unless_it_falls_back_to_the_model(network, tmp_path):
    path = without(tmp_path, "s2/milk", "s4/kettle")
    with pytest.raises(DemandHistoryError) as error:
        source(network, path=path)
    assert error.value.problems == (
        "partial.csv: no series for 2 of the network's 16 store/SKU pairs: s2/milk, s4/kettle; allowed: a series "
        "for every store and SKU of network 'planner_demo', or demand.missing: model (those draw from the "
        "network's own demand model)",)
    mixed = source(network, path=path, missing="model")
    _, series = run(network, mixed, seed=3)
    _, model = run(network, None, seed=3)
    s2, s4 = network.index("s2"), network.index("s4")
    milk, kettle = network.skus.name.index("milk"), network.skus.name.index("kettle")
    cube = history_cube(network)
    assert np.array_equal(series["demand"][:, s2, milk], model["demand"][:, s2, milk]), "the model's own draws"
    assert np.array_equal(series["demand"][:, s4, kettle], model["demand"][:, s4, kettle])
    assert np.array_equal(series["expected_demand"][:, s2, milk], model["expected_demand"][:, s2, milk])
    replayed = np.ones(cube.shape[1:], dtype=bool)
    replayed[1, milk] = replayed[3, kettle] = False
    assert np.array_equal(series["demand"][:, stores_of(network)][:, replayed], cube[:, replayed])
    assert mixed.describe()["series"] == 14


# ------------------------------------------------------------------------------------------------------ validation

def edited(tmp_path, edit, name="sales.csv") -> Path:
    lines = HISTORY.read_text().splitlines()
    edit(lines)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def set_cell(row: int, column: int, value: str):
    def edit(lines):
        cells = lines[row - 1].split(",")
        cells[column] = value
        lines[row - 1] = ",".join(cells)
    return edit


@pytest.mark.parametrize(("edit", "problem"), [
    (set_cell(5, 0, "s9/rice"), "sales.csv, row 5, column series_id (A): series 's9/rice': 's9' is not a store of "
                                "network 'planner_demo'; allowed: s1, s2, s3, s4"),
    (set_cell(5, 0, "s1/tea"), "sales.csv, row 5, column series_id (A): series 's1/tea': 'tea' is not a SKU of "
                               "network 'planner_demo'; allowed: rice, milk, kettle, soap"),
    (set_cell(5, 0, "s1-rice"), "sales.csv, row 5, column series_id (A): 's1-rice' is not a store/sku id; allowed: a "
                                "store's and a SKU's names of network 'planner_demo' joined by '/', e.g. 's1/rice'"),
    (set_cell(5, 2, "-3"), "sales.csv, row 5, column value (C): '-3' is negative; allowed: units sold, a number >= 0 "
                           "(returns are not demand)"),
    (set_cell(5, 2, "lots"), "sales.csv, row 5, column value (C): 'lots' is not a number; allowed: units sold, a "
                             "number >= 0 (a decimal point, no thousands separator or unit)"),
    (set_cell(5, 2, ""), "sales.csv, row 5, column value (C): '' is not a number; allowed: units sold"),
    (set_cell(5, 2, "2.5"), "sales.csv, row 5, column value (C): '2.5' is not a whole number, and network "
                            "'planner_demo' counts whole units; allowed: whole units, or the network's "
                            "demand.integer_units: false"),
    (set_cell(5, 1, "04/01/2021"), "sales.csv, row 5, column date (B): '04/01/2021' is not a date; allowed: "
                                   "YYYY-MM-DD, one row per series and day"),
    (lambda lines: lines.pop(10), "sales.csv: series 's1/rice' has no row for 2021-01-10; allowed: one row per day "
                                  "from 2021-01-01 to 2021-04-01 (the history's first and last dates) for every "
                                  "series, no gaps"),
    (lambda lines: lines.pop(2), "sales.csv: series 's1/rice' has no row for 2021-01-02; allowed"),
    (lambda lines: lines.insert(3, lines[2]), "sales.csv: series 's1/rice' has 2 rows for 2021-01-02; allowed: one "
                                              "row per series and day"),
    (set_cell(5, 1, "2204-01-04"), "sales.csv: dates jump from 2021-04-01 to 2204-01-04 (92 dates over 66,842 days); "
                                   "allowed: one row per day from the first date to the last, no gaps"),
    (lambda lines: lines.__setitem__(0, "series,date,value"), "sales.csv, row 1: missing column(s) series_id "
                                                              "(columns seen: 'series', 'date', 'value'); required: "
                                                              "series_id, date, value"),
])
def test_each_problem_names_the_file_row_column_or_series_and_what_is_allowed(network, tmp_path, edit, problem):
    path = edited(tmp_path, edit)
    with pytest.raises(DemandHistoryError) as error:
        source(network, path=path)
    assert len(error.value.problems) == 1, error.value.problems
    assert error.value.problems[0].startswith(problem), error.value.problems[0]
    assert str(error.value).startswith(f"demand.path: 1 problem in the demand history {path} (nothing was "
                                       f"simulated):\n  {problem}")


def test_every_problem_is_reported_at_once_and_a_repeated_kind_is_counted(network, tmp_path):
    def edit(lines):
        for row in (5, 6, 9):
            set_cell(row, 2, "-1")(lines)
        set_cell(7, 2, "n/a")(lines)
        set_cell(300, 0, "s1/tea")(lines)
    with pytest.raises(DemandHistoryError) as error:
        source(network, path=edited(tmp_path, edit))
    problems = error.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("sales.csv, row 5, column value (C): '-1' is negative") and problems[0].endswith(
        "(3 rows in all)")
    assert problems[1].startswith("sales.csv, row 7, column value (C): 'n/a' is not a number")
    assert problems[2].startswith("sales.csv, row 300, column series_id (A): series 's1/tea'")


@pytest.mark.parametrize(("settings", "message"), [
    ({"block": 86}, "demand.block: blocks of 86 days need a history of at least block + 6 = 92 days (a block may "
                    "start on any weekday); "),
    ({"window": 98}, "demand.window: 98 days is longer than the demand history "),
    ({"window": 30}, "demand.window: 30 is not allowed; allowed: a multiple of 7"),
    ({"block": 0}, "demand.block: 0 is out of range"),
    ({"start_date": "2021-06-01"}, "demand.start_date: 2021-06-01 is not a date of the demand history "),
    ({"start_date": "June"}, "demand.start_date: 'June' is not a date; allowed: YYYY-MM-DD"),
    ({"missing": "zero"}, "demand.missing: 'zero' is not allowed; allowed: error, model"),
    ({"blocks": 7}, "demand: unknown key 'blocks'"),
])
def test_settings_are_checked_naming_the_key(network, settings, message):
    with pytest.raises(SpecError) as error:
        fitted(network, horizon=10, **settings)
    assert str(error.value).startswith(message), str(error.value)


def test_modes_take_only_their_own_settings(network):
    assert demand_source_from_dict(None, network, 10) is None
    assert demand_source_from_dict({"mode": "model"}, network, 10) is None
    with pytest.raises(SpecError, match=r"^demand.path: only a demand history uses path, and demand.mode is model"):
        demand_source_from_dict({"mode": "model", "path": str(HISTORY)}, network, 10)
    with pytest.raises(SpecError, match=r"^demand.block: only mode fitted resamples its residuals in blocks"):
        source(network, block=7)
    with pytest.raises(SpecError, match=r"^demand.path: required with demand.mode replay"):
        demand_source_from_dict({"mode": "replay", "path": "???"}, network, 10)
    with pytest.raises(SpecError, match=r"^demand.mode: 'bootstrap' is not allowed; allowed: model, replay, fitted"):
        demand_source_from_dict({"mode": "bootstrap"}, network, 10)


def test_files_that_cannot_be_read(network, tmp_path):
    for path, problem in [
        (tmp_path / "nowhere.csv", "not a file"),
        (tmp_path / "sales.parquet", "suffix '.parquet' is not allowed; allowed: .csv, .csv.gz, .txt"),
        (tmp_path / "empty.csv", "empty.csv: no rows of data"),
    ]:
        if path.name != "nowhere.csv":
            path.write_text("series_id,date,value\n")
        with pytest.raises(DemandHistoryError, match=problem):
            read_demand_history(path, network)


def test_a_history_round_trips_through_a_compressed_file(network, tmp_path):
    values = history_cube(network)
    demand = np.zeros((DAYS, len(network.nodes), network.skus.n))
    demand[:, stores_of(network)] = values
    path = write_demand_history(tmp_path / "sales.csv.gz", network, demand)
    assert gzip.decompress(path.read_bytes()) == HISTORY.read_bytes()
    history = read_demand_history(path, network)
    assert np.array_equal(history.values, values) and history.first == calendar_date(0)
    assert history.stores == ("s1", "s2", "s3", "s4") and history.covered.all()
    with pytest.raises(SpecError, match="whose stores or SKUs differ"):
        demand_source_from_dict({"mode": "replay", "path": str(path)}, network, DAYS).check(
            dataclasses.replace(network, skus=dataclasses.replace(network.skus, name=("a", "b", "c", "d"))), DAYS)
