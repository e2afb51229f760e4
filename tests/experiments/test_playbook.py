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
from experiments.playbook import PARAMETERS, read_config, run
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
    cost there (ratio 1); the playbook's worst ratio is at most each of theirs; the policy file written is the
    playbook: costed again from it, its worst ratio is the one reported."""
    config = config_of(*SMALL)
    params, report = run(config, tmp_path)
    rows = list(csv.DictReader((tmp_path / "search.csv").open()))
    worst = [float(r["worst_ratio"]) for r in rows]
    assert worst == sorted(worst)
    labels = list(config.scenarios)
    statics = [r for r in rows if (r["calm_store"], r["calm_dc"]) == (r["disrupted_store"], r["disrupted_dc"])]
    own = [r for r in statics if any(float(r[f"ratio:{label}"]) == pytest.approx(1.0, abs=1e-12) for label in labels)]
    assert len(own) >= len(labels)  # every scenario's tuned base-stock was a start, at ratio 1 on its scenario
    best = max(float(rows[0][f"ratio:{label}"]) for label in labels)
    assert best <= min(float(r["worst_ratio"]) for r in own) and best == pytest.approx(worst[0])
    assert tuple(float(rows[0][p]) for p in PARAMETERS) == tuple(params[p] for p in PARAMETERS)

    spec = PolicySpec.from_dict(yaml.safe_load((tmp_path / "playbook.yaml").read_text()))
    initial = initial_on_hand(EnvConfig(network=config.network))
    tuned_costs = {}
    for r in own:
        for label in labels:
            if float(r[f"ratio:{label}"]) == pytest.approx(1.0, abs=1e-12):
                z = {"store": float(r["calm_store"]), "dc": float(r["calm_dc"])}
                tuned_costs[label] = evaluate(PolicySpec(name="base_stock", z=z).build(config.network, 60, 0),
                                              config.network, horizon=60, seeds=config.tune_seeds,
                                              shocks=config.scenarios[label].shocks, warmup=7, initial_on_hand=initial)
    again = max(evaluate(spec.build(config.network, 60, 0), config.network, horizon=60, seeds=config.tune_seeds,
                         shocks=config.scenarios[label].shocks, warmup=7, initial_on_hand=initial)
                / tuned_costs[label] for label in labels)
    assert again == pytest.approx(best, rel=1e-9)
    for label in labels:
        assert f"| {label} |" in report
    assert (tmp_path / "playbook.md").read_text() == report
    held = list(csv.DictReader((tmp_path / "playbook.csv").open()))
    assert len(held) == len(labels) * 2 * 2  # scenarios x (playbook, tuned) x held-out seeds


@pytest.mark.parametrize("overrides, match", [
    (["search.grid=[11]"], r"search.grid\[0\]"),
    (["scenarios=[]"], "scenarios: empty"),
    (["seeds=1"], "seeds: 1 is not allowed"),
    (["tune.first_seed=1000000"], "tune.first_seed: tuning seeds 1000000..1000001 overlap"),
])
def test_bad_settings_name_their_key(overrides, match):
    with pytest.raises(SpecError, match=match):
        config_of(*SMALL, *overrides)
