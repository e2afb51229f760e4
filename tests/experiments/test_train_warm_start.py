"""experiments.train with a warm start (agents/rl/warm_start.py): the clone is checkpoint 0 and decides as its
teacher, a shock-aware base-stock, does in the twin; a resumed run does not clone again; bad combinations are
refused before Ray starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from twin import SpecError
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
CALM, DISRUPTED = {"store": 1.0, "dc": 2.0}, {"store": 5.0, "dc": 6.0}
WARM = ["warm_start.enabled=true", "warm_start.calm={store:1.0,dc:2.0}", "warm_start.disrupted={store:5.0,dc:6.0}"]


def train(run: Path, iterations: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", "+experiment=ppo_network_sku", "network=small", "sku_batched=true",
         "scenario=port_strike", "scenario.start_day=100", "scenario.days=60", "env.action.kind=profile_safety_factor",
         "env.action.grid.stop=8.0", *WARM, "warm_start.episodes=3", "warm_start.epochs=60", "warm_start.lr=0.003",
         "warm_start.minibatch_size=1024", "stop.minutes=null", f"stop.iterations={iterations}", "checkpoint_every=1",
         "keep_checkpoints=5", "validation.seeds=1", "evaluation.seeds=1", "evaluation.horizon=60",
         "evaluation.warmup=7", f"hydra.run.dir={run}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_warm_started_run_checkpoints_the_clone_which_decides_as_its_teacher(tmp_path):
    """Checkpoint iter_000000 is the clone: over a year with a 60-day port strike it costs what the shock-aware
    base-stock it imitated costs (within 1%), not what the static base-stock with the calm z costs; a second start
    of the run resumes and does not clone again."""
    from agents.baselines.policies import BaseStock, ShockAwareBaseStock
    from agents.rl.policy import TrainedPolicy
    from scenarios import build
    from twin import Engine
    from twin.stats import DemandStats

    run = tmp_path / "run"
    done = train(run, 1)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warm start: the greedy policy takes the teacher's action" in done.stderr
    figures = json.loads((run / "warm_start.json").read_text())
    assert figures["agreement"] > 0.98 and 0 < figures["disrupted_share"] < 1
    assert (run / "validation.csv").read_text().splitlines()[1].startswith("0,0,")  # the clone validated first

    small = network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))
    shocks = build("port_strike", small, 365, start_day=100, days=60).shocks
    clone = TrainedPolicy.from_checkpoint(run / "checkpoints" / "iter_000000")
    stats = DemandStats.of(small, 365, seed=0)

    def cost(policy) -> float:
        engine = Engine(small, horizon=365, seed=11, shocks=shocks, invariants="off",
                        initial_on_hand=clone.initial_on_hand)
        if hasattr(policy, "attach"):
            policy.attach(engine)
        return engine.run(policy).kpis["network"]["cost_total"]

    teacher = cost(ShockAwareBaseStock.from_stats(stats, CALM, DISRUPTED))
    static = cost(BaseStock.from_stats(stats, CALM))
    assert abs(static / teacher - 1) > 0.03  # reacting to the strike matters here
    assert cost(clone) == pytest.approx(teacher, rel=0.01)

    again = train(run, 2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "warm start:" not in again.stderr and "resuming from" in again.stderr


@pytest.mark.parametrize("overrides, match", [
    (["agent=dqn", "sku_batched=true", "env.action.kind=safety_factor", "env.action.grid.stop=6.0"],
     "warm_start.enabled: true with agent=dqn, sku_batched=true is not allowed; allowed: agent=ppo with "
     "sku_batched=true"),
    (["+experiment=ppo_network_sku", "env.action.grid.stop=6.0"],
     "warm_start.enabled: true with agent=ppo, sku_batched=false is not allowed"),
    (["+experiment=ppo_network_sku", "sku_batched=true", "env.action.grid.stop=5.0"],
     "warm_start.disrupted.dc: 6 is not allowed; allowed: one of the action grid's values"),
    (["+experiment=ppo_network_sku", "sku_batched=true", "env.action.grid.stop=6.0", "seed=100"],
     "seed: 100 puts the warm start's teacher episodes on seeds 900000..900011, which overlap the validation seeds "
     "900000..900001"),
])
def test_a_warm_start_the_run_cannot_use_is_refused_before_training(overrides, match):
    from hydra import compose, initialize
    from omegaconf import OmegaConf

    from experiments.training import load_train_config

    with initialize(config_path="../../conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["network=small", *overrides, *WARM])
    with pytest.raises(SpecError, match=match.replace("(", r"\(").replace(")", r"\)")):
        load_train_config(OmegaConf.to_container(cfg, resolve=True))
