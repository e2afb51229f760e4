"""experiments.robustness: a policy on every scenario against the base-stock tuned on that scenario, on the same
held-out seeds, with the scenarios a worlds-trained checkpoint never saw read from the checkpoint."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["network=small", "horizon=60", "warmup=7", "seeds=3", "tune.grid=[1.0,3.0]", "tune.max_rounds=1"]
HELD_PORT_STRIKE = "{name: port_strike, start_day: 10, days: 42, lead_time_multiplier: 5.0, outage_days: 14}"


def robustness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.robustness", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def read_rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_every_scenario_is_judged_against_the_base_stock_tuned_on_it(tmp_path):
    """Two named scenarios and one held out: the tuned z is the cheapest of its tuning runs, the tuned base-stock
    runs the same as experiments.evaluate runs its policy file, and the table's paired difference and verdict are
    those of the per-seed costs written out."""
    run = tmp_path / "run"
    done = robustness(*SHORT, "under_test=forecast:seasonal_naive", "scenarios=[baseline,flash_sale]",
                      f"hold_out=[{HELD_PORT_STRIKE}]", f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_rows(run / "robustness.csv")
    labels = ["baseline", "flash_sale", "held out: port_strike"]
    assert [r["scenario"] for r in rows[::12]] == labels and len(rows) == 3 * 4 * 3  # scenarios x policies x seeds
    assert {r["held_out"] for r in rows if r["scenario"] == labels[2]} == {"True"}
    assert {r["policy"] for r in rows} == {"forecast:seasonal_naive", "rop", "base-stock, tuned on the scenario",
                                           "base-stock reacting to disruptions"}

    tuning = read_rows(run / "scenarios" / "flash_sale" / "tuning.csv")
    cheapest = min(tuning, key=lambda r: float(r["cost_per_day"]))
    tuned = yaml.safe_load((run / "scenarios" / "flash_sale" / "tuned_policy.yaml").read_text())
    assert tuned["z"] == {"store": float(cheapest["store"]), "dc": float(cheapest["dc"])}
    # a grid of two values: whatever was tuned is an end of it, marked in the table and warned about
    flash_line = next(line for line in (run / "robustness.md").read_text().splitlines()
                      if line.startswith("| flash_sale |"))
    assert f"| {tuned['z']['store']:g}* / {tuned['z']['dc']:g}* |" in flash_line
    assert "z marked * is an end of `tune.grid`" in (run / "robustness.md").read_text()
    assert "flash_sale: the tuned store z" in done.stderr and "end of tune.grid" in done.stderr

    # the tuned base-stock, run by experiments.evaluate from its file on the same scenario and seeds
    check = tmp_path / "check"
    evaluated = subprocess.run(
        [sys.executable, "-m", "experiments.evaluate", "network=small", "scenario=flash_sale", "horizon=60",
         "warmup=7", "seeds=3", f"policies=[file:{run / 'scenarios' / 'flash_sale' / 'tuned_policy.yaml'}]",
         "reference=base_stock:tuned_policy", f"hydra.run.dir={check}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    theirs = [float(r["cost_per_day"]) for r in read_rows(check / "evaluation.csv")]
    ours = [float(r["cost_per_day"]) for r in rows
            if r["scenario"] == "flash_sale" and r["policy"] == "base-stock, tuned on the scenario"]
    assert ours == pytest.approx(theirs, rel=1e-5)

    report = (run / "robustness.md").read_text()
    for label in labels:
        policy = np.array([float(r["cost_per_day"]) for r in rows
                           if r["scenario"] == label and r["policy"] == "forecast:seasonal_naive"])
        base = np.array([float(r["cost_per_day"]) for r in rows
                         if r["scenario"] == label and r["policy"] == "base-stock, tuned on the scenario"])
        line = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        diff, digits = (policy - base).mean(), 0 if base.mean() >= 100 else 2  # whole numbers from 100 on
        assert f"{diff:+,.{digits}f} ± " in line
        assert f"({diff / base.mean():+.1%})" in line
        assert ("| win |" in line) + ("| tie |" in line) + ("| loss |" in line) == 1
    assert (run / "robustness.png").stat().st_size > 10_000
    assert (run / "scenarios" / "held_out__port_strike" / "scenario.yaml").is_file()

    # the reacting base-stock: calm z = the base-stock tuned with no shocks (the baseline's here), z while disrupted
    # tuned per scenario; on the baseline, with no disruption, it is that tuned base-stock, seed for seed
    calm = yaml.safe_load((run / "scenarios" / "baseline" / "tuned_policy.yaml").read_text())["z"]
    reacting = yaml.safe_load((run / "scenarios" / "held_out__port_strike" / "reacting_policy.yaml").read_text())
    assert reacting["name"] == "shock_aware_base_stock" and reacting["z"] == calm
    reacting_rows = report.split("**base-stock reacting to disruptions**")[1]
    baseline_row = next(line for line in reacting_rows.splitlines() if line.startswith("| baseline |"))
    assert baseline_row.startswith("| baseline | no disruption |") and baseline_row.endswith("(+0.0%) | tie |")
    z = reacting["z_disrupted"]
    assert f"| held out: port_strike | {z['store']:g}* / {z['dc']:g}* |" in reacting_rows
    # and it is the policy its file describes: experiments.evaluate runs the file to the same costs
    check = tmp_path / "check_reacting"
    strike = "scenario=port_strike scenario.start_day=10 scenario.days=42 scenario.lead_time_multiplier=5.0"
    evaluated = subprocess.run(
        [sys.executable, "-m", "experiments.evaluate", "network=small", *strike.split(), "scenario.outage_days=14",
         "horizon=60", "warmup=7", "seeds=3",
         f"policies=[file:{run / 'scenarios' / 'held_out__port_strike' / 'reacting_policy.yaml'}]",
         "reference=shock_aware_base_stock:reacting_policy", f"hydra.run.dir={check}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    theirs = [float(r["cost_per_day"]) for r in read_rows(check / "evaluation.csv")]
    ours = [float(r["cost_per_day"]) for r in rows if r["scenario"] == "held out: port_strike"
            and r["policy"] == "base-stock reacting to disruptions"]
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_two_scenarios_of_one_name_get_folders_of_their_own():
    """port_strike twice (another lead-time multiplier) and its held-out twin: four folders, none shared."""
    from experiments.robustness import ScenarioCase, unique_folders

    labels = ["port_strike", "port_strike'", "held out: port_strike", "held out: port_strike'"]
    cases = unique_folders([ScenarioCase(label, None, held_out=i > 1) for i, label in enumerate(labels)])
    assert [c.folder for c in cases] == ["port_strike", "port_strike_2", "held_out__port_strike",
                                         "held_out__port_strike_2"]


def test_scenarios_side_by_side_give_the_same_figures(tmp_path):
    """workers=2 runs the scenarios in two processes; every figure written is the one a single process writes."""
    args = [*SHORT, "seeds=2", "under_test=forecast:seasonal_naive", "scenarios=[baseline,flash_sale]",
            f"hold_out=[{HELD_PORT_STRIKE}]"]
    one, two = tmp_path / "one", tmp_path / "two"
    for run, workers in ((one, 1), (two, 2)):
        done = robustness(*args, f"workers={workers}", f"hydra.run.dir={run}")
        assert done.returncode == 0, done.stderr[-3000:]
    assert (two / "robustness.csv").read_text() == (one / "robustness.csv").read_text()
    assert (two / "robustness.md").read_text() == (one / "robustness.md").read_text()
    for folder in ("baseline", "flash_sale", "held_out__port_strike"):
        for name in ("tuning.csv", "reacting_policy.yaml"):
            assert (two / "scenarios" / folder / name).read_text() == (one / "scenarios" / folder / name).read_text()
    assert ((two / "scenarios" / "held_out__port_strike" / "reacting_tuning.csv").read_text()
            == (one / "scenarios" / "held_out__port_strike" / "reacting_tuning.csv").read_text())


def test_the_reacting_base_stock_takes_a_given_calm_z_and_can_be_left_out(tmp_path):
    """reactive.calm_z is held as given (no tuning with no shocks), its z while disrupted is the cheapest of its
    tuning runs; reactive.enabled=false leaves the reacting base-stock out of the runs and the report."""
    args = [*SHORT, "seeds=2", "under_test=rop", "also=[]", "scenarios=[baseline]", f"hold_out=[{HELD_PORT_STRIKE}]"]
    given, off = tmp_path / "given", tmp_path / "off"
    done = robustness(*args, "reactive.calm_z={store: 2.0, dc: 0.5}", f"hydra.run.dir={given}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the reacting base-stock's calm z" not in done.stderr  # not tuned
    reacting = yaml.safe_load((given / "scenarios" / "held_out__port_strike" / "reacting_policy.yaml").read_text())
    assert reacting["z"] == {"store": 2.0, "dc": 0.5}
    runs = read_rows(given / "scenarios" / "held_out__port_strike" / "reacting_tuning.csv")
    assert reacting["z_disrupted"] == {"store": float(runs[0]["store"]), "dc": float(runs[0]["dc"])}
    assert float(runs[0]["cost_per_day"]) == min(float(r["cost_per_day"]) for r in runs)
    done = robustness(*args, "reactive.enabled=false", f"hydra.run.dir={off}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert {r["policy"] for r in read_rows(off / "robustness.csv")} == {"rop", "base-stock, tuned on the scenario"}
    assert "reacting" not in (off / "robustness.md").read_text()
    assert not (off / "scenarios" / "held_out__port_strike" / "reacting_policy.yaml").exists()


def test_the_held_out_scenarios_come_from_the_checkpoints_training(tmp_path):
    """A PPO trained on worlds that hold a long port strike out: robustness reads that scenario from the checkpoint
    (hold_out=from_policy) and runs it beside the named ones; it costs more than the baseline for every policy."""
    train = tmp_path / "train"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "+experiment=ppo_worlds", "network=small",
         "~env.worlds.scenarios", "+env.worlds.scenarios=[baseline,flash_sale,port_strike]",
         "env.worlds.start_day={low: 0, high: 10}", f"env.worlds.hold_out=[{HELD_PORT_STRIKE}]",
         "stop.minutes=null", "stop.iterations=1", "checkpoint_every=1", "validation.enabled=false",
         "evaluation.seeds=1", "agent.train_batch_size=20", "agent.minibatch_size=20", "env.episode_days=20",
         "evaluation.horizon=30", "evaluation.warmup=7", f"hydra.run.dir={train}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "python -m experiments.robustness under_test=checkpoint:" in done.stdout  # train says what to run next
    run = tmp_path / "run"
    done = robustness(*SHORT, f"under_test=checkpoint:{train / 'checkpoints' / 'latest'}", "scenarios=[baseline]",
                      "seeds=2", f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_rows(run / "robustness.csv")
    assert sorted({(r["scenario"], r["held_out"]) for r in rows}) == [("baseline", "False"),
                                                                      ("held out: port_strike", "True")]
    shocks = yaml.safe_load((run / "scenarios" / "held_out__port_strike" / "scenario.yaml").read_text())["shocks"]
    assert any(s.get("multiplier") == 5.0 for s in shocks)
    for policy in {r["policy"] for r in rows}:
        cost = {r["scenario"]: [] for r in rows}
        for r in rows:
            if r["policy"] == policy:
                cost[r["scenario"]].append(float(r["cost_per_day"]))
        assert np.mean(cost["held out: port_strike"]) > np.mean(cost["baseline"]), policy


@pytest.mark.parametrize("args, message", [
    ([], "under_test: missing"),
    (["under_test=rop", "tune.first_seed=999999", "tune.seeds=2", "first_seed=1000000"],
     "tune.first_seed: tuning seeds 999999..1000000 overlap the held-out seeds"),
    (["under_test=rop", "hold_out=[{name: nowhere}]"], "hold_out[0]: 'nowhere' is not allowed"),
    (["under_test=rop", "hold_out=sometimes"], "hold_out: 'sometimes' is not allowed; allowed: from_policy"),
    (["under_test=rop", "scenarios=[]"], "scenarios: empty"),
    (["under_test=rop", "tune.grid=[]"], "tune.grid: empty"),
    (["under_test=rop", "workers=0"], "workers: 0"),
    (["under_test=checkpoint:/nonexistent/dir"], "under_test: checkpoint '/nonexistent/dir' is not a directory"),
    (["under_test=rop", "also=[rop,nosuch]"], "also[1]: 'nosuch' is not allowed"),
    (["under_test=rop", "seeds=1"], "seeds: 1 is not allowed; allowed: at least 2"),
    (["under_test=rop", "tune=5"], "tune: 5 is not allowed; allowed: a mapping"),
    (["under_test=rop", "reactive.calm_z={store: 99}"], "reactive.calm_z.store: 99"),
    (["under_test=rop", "+reactive.often=1"], "reactive: unknown key 'often'"),
    (["under_test=rop", "reactive.enabled=false", "reactive.calm_z={store: 1}"],
     "reactive.calm_z: {'store': 1} with reactive.enabled=false is not allowed"),
])
def test_bad_settings_are_one_error_naming_the_key_before_any_work(tmp_path, args, message):
    run = tmp_path / "run"
    done = robustness("network=small", "scenarios=[baseline]", *args, f"hydra.run.dir={run}")
    assert done.returncode != 0
    assert message in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert not run.exists() or not any(run.glob("robustness*"))


def test_the_default_settings_are_allowed():
    """conf/robustness.yaml as composed, with a policy under test, passes the check every run makes first (a z past
    the allowed range in the default grid once stopped every run that kept it)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.robustness import read_config

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="robustness", overrides=["under_test=rop", "hold_out=[]"])
    data = OmegaConf.to_container(cfg, resolve=True)
    data.pop("hydra", None)
    config, _ = read_config(data)
    assert list(config.grid) == data["tune"]["grid"] and max(config.grid) >= 8
    assert len(config.cases) == len(data["scenarios"])
