"""experiments.simulate: the configs compose and validate, the README command runs, bad configs stop cleanly."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy import stats

from agents.baselines.catalog import POLICIES, PolicySpec
from experiments import simulate as simulate_module
from experiments.run_config import load_config
from experiments.startup import unknown_choice
from experiments.summary import kpi_table, summarize, summarize_paired, t_quantile
from twin import SpecError
from twin.costs import cost_rates
from twin.network_files import expand_network_path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
NETWORKS = sorted(p.stem for p in (CONF / "network").glob("*.yaml"))
PNGS = ("inventory_backorders.png", "cost_breakdown.png", "fill_rate.png")


def composed(*overrides: str) -> dict:
    """The config Hydra would hand to the main function, as plain containers (a network.path read, as plain does)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return expand_network_path(OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True))


def simulate(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.simulate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


# ---------------------------------------------------------------- configs, in process

def test_the_conf_groups_are_complete():
    assert {"paper_5x20", "paper_5x50", "small", "serial_3"} <= set(NETWORKS)
    assert {p.stem for p in (CONF / "policy").glob("*.yaml")} == set(POLICIES)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_network_and_policy_config_validates(network, policy):
    file = [f"network.path={ROOT / 'tests/twin/data/network_csv'}"] if network == "file" else []  # a planner's files
    config = load_config(composed(f"network={network}", f"policy={policy}", *file))
    assert config.network.name == ("planner_demo" if file else network)
    assert config.policy_spec == PolicySpec.from_dict(yaml.safe_load((CONF / "policy" / f"{policy}.yaml").read_text()))
    if policy != "shock_aware_base_stock":  # its conf holds the z tuned on paper_5x20 (README)
        assert config.policy_spec == PolicySpec(name=policy, z={"store": 1.65, "dc": 1.65})
    assert config.horizon == 365 and config.warmup == 28 and config.seeds == [0]


def test_default_config_and_networks_have_the_documented_shape():
    config = load_config(composed())
    net = config.network
    kinds = [n.kind for n in net.nodes]
    assert (kinds.count("supplier"), kinds.count("dc"), kinds.count("store"), net.skus.n) == (1, 5, 20, 50)
    assert set(net.skus.group) == {"staples", "fresh", "general"}
    assert all(n.unmet == "backorder" for n in net.nodes)
    assert (config.scenario.name, config.policy_spec.name, config.output.plots, config.output.per_sku) == \
        ("baseline", "base_stock", True, False)
    rates = cost_rates(net)
    dc, store = net.index("dc_0"), net.index("store_00")
    assert (rates.holding[dc] < rates.holding[store]).all()
    assert (rates.fixed_order > 0).all()
    big = load_config(composed("network=paper_5x50")).network
    assert len(big.nodes_of_kind("store")) == 50 and big.nodes_of_kind("dc")[0].storage_capacity == 250000
    serial = load_config(composed("network=serial_3")).network
    assert [n.parent for n in serial.nodes] == [None, "supplier", "dc_upper", "dc_lower"]


def test_every_scenario_config_validates_on_the_default_network():
    example = ROOT / "examples" / "scenario_covid_dates.yaml"  # `file` runs the scenario file scenario.path names
    for path in sorted((CONF / "scenario").glob("*.yaml")):
        file = [f"scenario.path={example}"] if path.stem == "file" else []
        name = load_config(composed(f"scenario={path.stem}", *file)).scenario.name
        assert name == ("covid_dates" if file else path.stem)


@pytest.mark.parametrize(("overrides", "key"), [
    (["horizon=0"], "horizon"),
    (["warmup=365"], "warmup"),
    (["replications=0"], "replications"),
    (["invariants=loud"], "invariants"),
    (["output.plots=maybe"], "output.plots"),
    (["policy.z.dc=11"], "policy.z.dc"),  # above SAFETY_FACTOR_BOUNDS
    (["+policy.z.supplier=1"], "policy.z"),
    (["policy.name=magic"], "policy.name"),
    (["network.layout.stores=0"], "network.layout.stores"),
    (["scenario=covid_2020", "scenario.severity=-1"], "scenario.severity"),
    (["scenario.name=nope"], "scenario.name"),
])
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(SpecError) as info:
        load_config(composed(*overrides))
    assert str(info.value).startswith(key), str(info.value)


def test_unknown_group_options_are_caught_before_hydra():
    assert unknown_choice(["scenario=covid_2020", "policy=rop,ss", "horizon=30", "hydra.run.dir=x"]) is None
    message = unknown_choice(["network=small", "policy=rop,nope"])
    assert message.startswith("policy: 'nope' is not allowed; allowed: base_stock, echelon_base_stock, rop, "
                              "shock_aware_base_stock, ss")


def test_summary_statistics():
    s = summarize([1.0, 2.0, 3.0, None])
    assert s["n"] == 3 and s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0)
    assert s["ci95"] == pytest.approx(4.302653 / 3**0.5)
    assert summarize([5.0]) == {"mean": 5.0, "std": None, "ci95": None, "n": 1}
    assert summarize([None]) == {"mean": None, "std": None, "ci95": None, "n": 0}
    # Student's t 97.5% quantiles (textbook tables)
    for df, t in ((1, 12.706), (4, 2.776), (10, 2.228), (20, 2.086), (120, 1.980)):
        assert t_quantile(df) == pytest.approx(t, abs=1e-3)


def test_paired_differences_are_the_interval_of_the_per_seed_differences():
    a, b = np.array([10.0, 12.0, 11.0, 13.0]), np.array([9.0, 11.5, 10.0, 12.5])
    paired = summarize_paired(a, b)
    assert paired["mean"] == pytest.approx(0.75) and paired["relative"] == pytest.approx(0.75 / 10.75)
    low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert paired["ci95"] == pytest.approx((high - low) / 2)
    same = summarize_paired(a, a)  # identical policies: a zero difference with a zero-width interval
    assert (same["mean"], same["ci95"], same["relative"]) == (0.0, 0.0, 0.0)


def test_slow_replications_log_progress(monkeypatch, caplog):
    monkeypatch.setattr(simulate_module, "SLOW_RUN_SECONDS", 0.0)  # every replication counts as slow
    config = load_config(composed("network=small", "horizon=60", "warmup=0", "replications=2"))
    with caplog.at_level("INFO", logger="experiments.simulate"):
        results = simulate_module.simulate(config)
    assert [r.meta["seed"] for r in results] == [0, 1]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("replication 2/2 (seed 1): day 30/60") for m in messages), messages
    assert sum(m.startswith("replication 1/2 (seed 0): ") and "fill rate" in m for m in messages) == 1


# ---------------------------------------------------------------- the command, as a subprocess

def test_readme_command_writes_kpis_series_and_plots(tmp_path):
    out = tmp_path / "run"
    proc = simulate("horizon=30", "warmup=5", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    assert "KPIs: network paper_5x20, scenario baseline, policy base_stock" in proc.stdout
    for row in ("network", "store", "dc"):
        assert any(line.startswith(row) for line in proc.stdout.splitlines())
    assert "replication 1/1 (seed 0)" in proc.stderr

    report = json.loads((out / "kpis.json").read_text())
    assert set(report) == {"meta", "replications", "summary"}
    assert {"network", "scenario", "policy", "horizon", "warmup", "seeds", "twin_version"} <= set(report["meta"])
    assert (report["meta"]["horizon"], report["meta"]["seeds"]) == (30, [0])
    assert len(report["replications"]) == 1
    assert set(report["summary"]) == {"network", "echelons"} and set(report["summary"]["echelons"]) == {"store", "dc"}
    fill = report["summary"]["network"]["fill_rate"]
    assert set(fill) == {"mean", "std", "ci95", "n"} and 0 < fill["mean"] <= 1

    with (out / "timeseries.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30 * 26
    assert {"replication", "day", "node", "on_hand", "backorders", "cost_holding"} <= set(rows[0])
    for name in PNGS:
        assert (out / name).stat().st_size > 1000
    assert (out / "config.yaml").exists() and not (out / "timeseries_sku.csv.gz").exists()


def test_replications_per_sku_and_no_plots(tmp_path):
    out = tmp_path / "run"
    proc = simulate("network=small", "scenario=flash_sale", "scenario.start_day=10", "horizon=30", "replications=2",
                    "output.per_sku=true", "output.plots=false", "invariants=error", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "kpis.json").read_text())
    assert report["meta"]["seeds"] == [0, 1] and len(report["replications"]) == 2
    assert report["summary"]["network"]["cost_total"]["ci95"] is not None
    assert report["meta"]["shocks"][0]["type"] == "DemandShock"
    assert "+/-" in proc.stdout
    with (out / "timeseries.csv").open() as f:
        assert sum(1 for _ in f) == 1 + 2 * 30 * 4
    with gzip.open(out / "timeseries_sku.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 30 * 4 * 3
    assert {"expected_demand", "promotion", "price", "holiday", "weather"} <= set(rows[0])
    store_rows = [r for r in rows if r["node"].startswith("store")]
    assert all(float(r["expected_demand"]) > 0 for r in store_rows)
    assert all(float(r["expected_demand"]) == 0 for r in rows if r["node"].startswith("dc"))
    # the oracle mean matches the draws on average (Poisson-like demand, 2 x 30 x 2 x 3 store-SKU-days)
    mean_demand = sum(float(r["demand"]) for r in store_rows) / len(store_rows)
    mean_expected = sum(float(r["expected_demand"]) for r in store_rows) / len(store_rows)
    assert abs(mean_demand - mean_expected) < 0.15 * mean_expected
    assert not any((out / name).exists() for name in PNGS)


@pytest.mark.parametrize(("args", "key"), [
    (["network.layout.dcs=-1"], "network.layout.dcs"),
    (["scenario=nope"], "scenario"),
    (["horizon=0"], "horizon"),
    (["scenario=covid_2020", "+scenario.sevrity=2"], "scenario.sevrity"),
    (["initial_stock_days.dc=-3"], "initial_stock_days.dc"),
])
def test_bad_config_exits_2_naming_the_key_and_writes_nothing(tmp_path, args, key):
    out = tmp_path / "previous_run"
    out.mkdir()
    keep = out / "kpis.json"
    keep.write_text('{"from": "an earlier run"}')
    proc = simulate(*args, f"hydra.run.dir={out}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"config error: {key}:"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert keep.read_text() == '{"from": "an earlier run"}'
    assert [p.name for p in out.iterdir()] == ["kpis.json"]


def test_multirun_sweeps_scenarios(tmp_path):
    sweep = tmp_path / "sweep"
    # a sweep over `scenario` composes its master config with the default scenario: hence ++ for its parameters
    proc = simulate("-m", "network=small", "scenario=flash_sale,dc_outage", "++scenario.start_day=5", "horizon=20",
                    "warmup=5", "output.plots=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert runs == ["0_flash_sale_base_stock", "1_dc_outage_base_stock"]
    scenarios = [json.loads((sweep / r / "kpis.json").read_text())["meta"]["scenario"] for r in runs]
    assert scenarios == ["flash_sale", "dc_outage"]


def test_kpi_table_lists_network_and_echelons():
    report = {"meta": {"network": "n", "scenario": "s", "policy": "p", "horizon": 10, "warmup": 0, "seeds": [0]},
              "summary": {"network": {"fill_rate": summarize([0.9]), "cost_total": summarize([100.0])},
                          "echelons": {"store": {"fill_rate": summarize([0.9])}}}}
    lines = kpi_table(report).splitlines()
    assert lines[2].startswith("network") and lines[3].startswith("store")
    assert "0.900" in lines[2] and "100" in lines[2]


def test_initial_stock_starts_the_network_stocked(tmp_path):
    out = tmp_path / "stocked"
    proc = simulate("network=small", "horizon=20", "warmup=0", "initial_stock_days.store=4", "initial_stock_days.dc=8",
                    "output.plots=false", "invariants=error", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    with (out / "timeseries.csv").open() as f:
        day0 = [row for row in csv.DictReader(f) if row["day"] == "0"]
    stock = {row["kind"]: float(row["on_hand"]) for row in day0 if row["kind"] != "supplier"}
    assert stock["dc"] > 0 and stock["store"] > 0


def test_the_twin_history_file_written_by_simulate_is_the_twins_demand(tmp_path):
    """experiments.simulate's per-SKU file reads back as the same store demand as a direct twin run."""
    import yaml

    from agents.forecasting.data import load_panel, panel_from_twin
    from twin.spec import network_from_dict

    small = network_from_dict(yaml.safe_load((CONF / "network" / "small.yaml").read_text()))
    done = subprocess.run([sys.executable, "-m", "experiments.simulate", "network=small", "horizon=60", "seed=3",
                           "output.per_sku=true", "output.plots=false", f"hydra.run.dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    from_file = load_panel(tmp_path / "timeseries_sku.csv.gz")
    direct = panel_from_twin(small, 60, seed=3)
    assert from_file.ids == direct.ids and from_file.covariate_names == direct.covariate_names
    np.testing.assert_array_equal(from_file.values, direct.values)  # demand does not depend on the policy
    np.testing.assert_allclose(from_file.oracle_mean, direct.oracle_mean, rtol=1e-5)


# ---------------------------------------------------------------- snapshots: start from any day

def _rows(path: Path, first_day: int = 0) -> list[dict]:
    return [r for r in csv.DictReader(path.open()) if int(r["day"]) >= first_day]


def test_a_run_from_a_written_snapshot_reproduces_the_uninterrupted_run(tmp_path):
    common = ["network=small", "horizon=120", "warmup=10", "output.plots=false", "scenario=flash_sale",
              "++scenario.start_day=66", "++scenario.days=10"]
    full, cont, kpi_ref = tmp_path / "full", tmp_path / "cont", tmp_path / "ref"
    done = simulate(*common, "output.snapshot_days=[70,30]", f"hydra.run.dir={full}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p.name for p in full.glob("snapshot_day*.json")} == {"snapshot_day30.json", "snapshot_day70.json"}
    snapshot = json.loads((full / "snapshot_day70.json").read_text())
    assert snapshot["day"] == 70 and snapshot["disruptions"], "the flash sale is in force on day 70"
    done = simulate(*common, f"start={full / 'snapshot_day70.json'}", f"hydra.run.dir={cont}")
    assert done.returncode == 0, done.stderr[-2000:]
    continued = _rows(cont / "timeseries.csv")
    assert continued and int(continued[0]["day"]) == 70
    assert continued == _rows(full / "timeseries.csv", first_day=70)  # every field, as written
    # its KPIs count from the snapshot's day: those of the uninterrupted run with a warm-up to that day
    done = simulate(*common[:2], "warmup=70", *common[3:], f"hydra.run.dir={kpi_ref}")
    assert done.returncode == 0, done.stderr[-2000:]
    ours, ref = (json.loads((d / "kpis.json").read_text()) for d in (cont, kpi_ref))
    assert ours["replications"][0]["network"] == ref["replications"][0]["network"]
    assert ours["meta"]["start_day"] == 70


@pytest.mark.parametrize("args, message", [
    (["start=no/such/snapshot.json"], "start: 'no/such/snapshot.json' does not exist"),
    (["output.snapshot_days=[400]"], "output.snapshot_days[0]: 400 is not allowed; allowed: whole days in [0, 364]"),
    (["output.snapshot_days=[1.5]"], "output.snapshot_days[0]: 1.5 is not allowed"),
])
def test_bad_snapshot_options_give_one_clear_error(args, message, tmp_path):
    done = simulate(*args, f"hydra.run.dir={tmp_path / 'out'}")
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not list((tmp_path / "out").rglob("*")), "nothing is written for a bad config"


def test_a_snapshot_of_another_network_or_with_initial_stock_is_refused(tmp_path):
    done = simulate("network=small", "horizon=40", "output.plots=false", "output.snapshot_days=[20]",
                    f"hydra.run.dir={tmp_path / 'small'}")
    assert done.returncode == 0, done.stderr[-2000:]
    path = tmp_path / "small" / "snapshot_day20.json"
    other = simulate("network=serial_3", f"start={path}", f"hydra.run.dir={tmp_path / 'x'}")
    assert other.returncode == 2 and "start.network.hash:" in other.stderr, other.stderr[-2000:]
    stocked = simulate("network=small", f"start={path}", "initial_stock_days.store=5",
                       f"hydra.run.dir={tmp_path / 'y'}")
    assert stocked.returncode == 2 and "start: a run from a snapshot starts with the snapshot's stock" in stocked.stderr
    early = simulate("network=small", "horizon=40", f"start={path}", "output.snapshot_days=[10]",
                     f"hydra.run.dir={tmp_path / 'z'}")
    assert early.returncode == 2 and "output.snapshot_days: day 10 is before" in early.stderr
