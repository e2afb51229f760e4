"""experiments.playbook: one shock-aware base-stock for several scenarios, searched for the lowest worst cost ratio
to the base-stock tuned on each, then compared on held-out seeds."""

from __future__ import annotations

import csv

import pytest
import yaml
from hydra import compose, initialize
from omegaconf import OmegaConf

from agents.baselines.catalog import PolicySpec
from agents.baselines.tuner import evaluate
from agents.envs.core import EnvConfig, initial_on_hand
from experiments.playbook import PARAMETERS, playbook_spec, read_config, run
from twin import SpecError

STRIKE = "{name:port_strike,start_day:10,days:20,lead_time_multiplier:4.0}"
SMALL = ["network=small", f"scenarios=[baseline,{STRIKE}]", "horizon=60", "warmup=7", "tune.grid=[1,3,5]",
         "search.grid=[1,3,5]", "seeds=2"]


def config_of(*overrides: str):
    with initialize(config_path="../../conf", version_base="1.3"):
        cfg = compose(config_name="playbook", overrides=list(overrides))
    return read_config(OmegaConf.to_container(cfg, resolve=True))


def test_the_playbook_is_no_worse_on_its_worst_scenario_than_any_scenarios_tuned_base_stock(tmp_path):
    """Each scenario's tuned base-stock, as a playbook with the same z calm and disrupted, costs exactly its tuned
    cost there (ratio 1: the static base-stock is in the family); the playbook's worst ratio is at most each of
    theirs; the policy file written is the playbook: costed again from it, its worst ratio is the one reported;
    the held-out table pairs the two on every scenario."""
    config = config_of(*SMALL)
    result = run(config, tmp_path)
    labels = list(config.scenarios)
    rows = {tuple(float(r[p]) for p in PARAMETERS): r for r in csv.DictReader((tmp_path / "search.csv").open())}
    best_key = tuple(result.params[p] for p in PARAMETERS)
    best = float(rows[best_key]["worst_ratio"])
    for label, tuned in result.tuned.items():
        z = (tuned.best["store"], tuned.best["dc"])
        start = rows[(*z, *z)]
        assert float(start[f"ratio:{label}"]) == pytest.approx(1.0, abs=1e-12)
        assert best <= float(start["worst_ratio"])
    assert best == min(float(r["worst_ratio"]) for r in rows.values())

    spec = PolicySpec.from_dict(yaml.safe_load((tmp_path / "playbook.yaml").read_text()))
    assert spec.to_dict() == playbook_spec(result.params).to_dict()
    initial = initial_on_hand(EnvConfig(network=config.network))
    again = max(evaluate(spec.build(config.network, 60, 0), config.network, horizon=60, seeds=config.tune_seeds,
                         shocks=config.scenarios[label].shocks, warmup=7, initial_on_hand=initial)
                / result.tuned[label].best_cost for label in labels)
    assert again == pytest.approx(best, rel=1e-9)
    for label in labels:
        assert f"| {label} |" in result.report
    assert (tmp_path / "playbook.md").read_text() == result.report
    held = list(csv.DictReader((tmp_path / "playbook.csv").open()))
    assert len(held) == len(labels) * 2 * 2  # scenarios x (playbook, tuned) x held-out seeds


def test_the_held_out_verdict_follows_the_paired_difference(tmp_path):
    """The report's verdict per scenario is a win where the playbook's paired 95% CI lies below the tuned
    base-stock's cost, a loss above, a tie across: read back from playbook.csv, two workers."""
    import numpy as np

    from experiments.summary import summarize_paired

    config = config_of(*SMALL, "workers=2")
    result = run(config, tmp_path)
    held = list(csv.DictReader((tmp_path / "playbook.csv").open()))
    for label in config.scenarios:
        cost = {p: np.array([float(r["cost_per_day"]) for r in held if r["scenario"] == label and r["policy"] == p])
                for p in ("playbook", f"base-stock tuned on {label}")}
        diff = summarize_paired(cost["playbook"], cost[f"base-stock tuned on {label}"])
        ci = diff["ci95"] or 0.0
        verdict = "win" if diff["mean"] + ci < 0 else "loss" if diff["mean"] - ci > 0 else "tie"
        row = next(line for line in result.report.splitlines() if line.startswith(f"| {label} |"))
        assert f"| {verdict} |" in row


@pytest.mark.parametrize("overrides, match", [
    (["search.grid=[11]"], r"search.grid\[0\]"),
    (["scenarios=[]"], "scenarios: empty"),
    (["seeds=1"], "seeds: 1 is not allowed"),
    (["tune.first_seed=1000000"], "tune.first_seed: tuning seeds 1000000..1000001 overlap"),
    (["+tune.speed=3"], "tune: unknown key 'speed'"),
])
def test_bad_settings_name_their_key(overrides, match):
    with pytest.raises(SpecError, match=match):
        config_of(*SMALL, *overrides)


def test_a_tune_section_that_is_not_a_mapping_names_its_key():
    with initialize(config_path="../../conf", version_base="1.3"):
        data = OmegaConf.to_container(compose(config_name="playbook", overrides=SMALL), resolve=True)
    with pytest.raises(SpecError, match="tune: expected a mapping of keys to values, got int"):
        read_config({**data, "tune": 5})
