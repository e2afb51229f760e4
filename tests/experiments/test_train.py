"""Training through experiments.train and evaluation through experiments.evaluate, end to end (Ray starts).

Tiny networks and batches: these check that the pipeline works (train, checkpoint,
resume, evaluate, report), not that the policies are good; the README records
the real training runs and their figures.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twin import Engine
from twin.snapshot import snapshot_from_dict

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "reference_cases"
CASE = REFERENCE / "case_base_stock_SS_example_4_4_L4.json"
TINY_PPO = ["agent.train_batch_size=200", "agent.minibatch_size=100", "agent.num_epochs=1", "agent.hidden=[8]"]
QUICK_NETWORK = ["network=small", "env.episode_days=30", "evaluation.seeds=2", "evaluation.horizon=40",
                 "evaluation.warmup=5", "trainer.num_envs_per_env_runner=1"]
# the PPO run also goes through the safety-factor actions and a reward without the ordering cost
PAPER_OBJECTIVE = ["env.action.kind=safety_factor", "~env.action.grid", "env.cost_weights.ordering=0"]


def run(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def curve(run_dir: Path) -> list[dict]:
    return list(csv.DictReader((run_dir / "learning_curve.csv").open()))


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    """A PPO run on the small network: 2 iterations, a checkpoint after each."""
    run_dir = tmp_path_factory.mktemp("ppo")
    done = run("experiments.train", "agent=ppo", *QUICK_NETWORK, *TINY_PPO, *PAPER_OBJECTIVE, "stop.iterations=2",
               "checkpoint_every=1", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir / "stdout.txt").write_text(done.stdout)
    return run_dir


@pytest.mark.slow
def test_ppo_trains_checkpoints_and_reports(ppo_run):
    rows = curve(ppo_run)
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert int(rows[-1]["env_steps"]) >= 400
    checkpoints = ppo_run / "checkpoints"
    assert (checkpoints / "latest").resolve().name == "iter_000002"
    assert (checkpoints / "latest" / "twin_setup.yaml").exists()  # plain data (agents.rl.checkpoint), no pickle
    assert not (checkpoints / "latest" / "twin_setup.pkl").exists()
    assert (ppo_run / "learning_curve.png").stat().st_size > 0
    report = (ppo_run / "evaluation.md").read_text()
    assert "| ppo |" in report and "| rop |" in report and "Paired differences to rop" in report
    assert (ppo_run / "evaluation.png").stat().st_size > 0


@pytest.mark.slow
def test_without_validation_the_objective_is_the_evaluation_cost_and_tensorboard_logs_the_curve(ppo_run):
    from experiments.training import TensorBoardLog

    costs = [float(r["cost_per_day"]) for r in csv.DictReader((ppo_run / "evaluation.csv").open())
             if r["policy"] == "ppo"]
    line = next(x for x in (ppo_run / "stdout.txt").read_text().splitlines() if x.startswith("objective: "))
    assert "held-out evaluation cost per day" in line
    assert float(line.split()[1]) == pytest.approx(np.mean(costs), abs=1e-3)  # the CSV rounds to 4 decimals
    scalars = TensorBoardLog.read(ppo_run / "tensorboard")
    assert set(scalars) == set(TensorBoardLog.TAGS) - {"validation/cost_per_day"}
    rows = curve(ppo_run)
    assert [step for step, _ in scalars["train/env_steps"]] == [1, 2]
    assert [v for _, v in scalars["train/env_steps"]] == [float(r["env_steps"]) for r in rows]
    assert scalars["train/episode_return_mean"][-1][1] == pytest.approx(float(rows[-1]["episode_return_mean"]),
                                                                        rel=1e-6)


@pytest.mark.slow
def test_an_optuna_sweep_minimises_the_best_validation_cost(tmp_path):
    """The main returns the objective, so Hydra's Optuna sweeper tunes train: with validation on, the best
    checkpoint's validation cost per day (validation.csv), which TensorBoard logs beside the curve."""
    from experiments.training import TensorBoardLog

    done = run("experiments.train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "seed=choice(0)",
               "agent=ppo", *QUICK_NETWORK, *TINY_PPO, "evaluation.seeds=1", "evaluation.horizon=30",
               "stop.iterations=2", "checkpoint_every=1", "validation.enabled=true", "validation.seeds=1",
               "validation.horizon=30", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${hydra.job.num}")
    assert done.returncode == 0, done.stderr[-3000:]
    (job,) = [p.parent for p in tmp_path.glob("*/validation.csv")]
    costs = [float(r["validation_cost_per_day"]) for r in csv.DictReader((job / "validation.csv").open())]
    assert len(costs) == 2
    best = (tmp_path / "optimization_results.yaml").read_text()
    assert f"best_value: {min(costs)}" in best
    assert f"objective: {min(costs):.6f} (validation cost per day of checkpoints/best" in done.stdout
    scalars = TensorBoardLog.read(job / "tensorboard")
    assert set(scalars) == set(TensorBoardLog.TAGS)
    assert scalars["validation/cost_per_day"] == [(i + 1, pytest.approx(c, rel=1e-6)) for i, c in enumerate(costs)]


@pytest.mark.slow
def test_training_resumes_from_the_latest_checkpoint(ppo_run):
    done = run("experiments.train", "agent=ppo", *QUICK_NETWORK, *TINY_PPO, *PAPER_OBJECTIVE, "stop.iterations=3",
               "checkpoint_every=1", f"hydra.run.dir={ppo_run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stderr and "(iteration 2)" in done.stderr
    assert "learner(s) on cpu" in done.stderr  # the device the update ran on (cuda:0 with trainer=gpu)
    rows = curve(ppo_run)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert int(rows[2]["env_steps"]) > int(rows[1]["env_steps"])
    progress = json.loads((ppo_run / "checkpoints" / "latest" / "progress.json").read_text())
    assert progress["iteration"] == 3
    # keep_checkpoints=3 by default: iterations 1-3 are all kept, and a different agent may not resume here
    other = run("experiments.train", "agent=dqn", "env.granularity=node_sku", *QUICK_NETWORK, "stop.iterations=1",
                f"hydra.run.dir={ppo_run}")
    assert other.returncode == 2 and "holds a run with other settings" in other.stderr


@pytest.mark.slow
def test_evaluate_runs_a_checkpoint_against_baselines_deterministically(ppo_run, tmp_path):
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        done = run("experiments.evaluate", "network=small", "seeds=3", "horizon=40", "warmup=5",
                   f"policies=[checkpoint:{ppo_run}/checkpoints/latest,base_stock,rop]", f"hydra.run.dir={out}")
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append((out / "evaluation.csv").read_text())
    rows = list(csv.DictReader(outputs[0].splitlines()))
    assert len(rows) == 9 and {r["policy"] for r in rows} == {f"rl:{ppo_run.name}", "base_stock", "rop"}
    assert outputs[0] == outputs[1]  # the same seeds give the same figures
    assert (tmp_path / "a" / "evaluation.png").stat().st_size > 0


@pytest.mark.slow
def test_dqn_trains_on_a_case_validates_checkpoints_and_reports_the_optimality_gap(tmp_path):
    done = run("experiments.train", "agent=dqn", f"case={CASE}", "agent.hidden=[8]", "agent.learning_starts=64",
               "stop.iterations=3", "checkpoint_every=1", "keep_checkpoints=1", "validation.enabled=true",
               "validation.horizon=200", "evaluation.case_horizon=300", "evaluation.seeds=2",
               f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "optimal 4.4668" in done.stdout and "gap" in done.stdout
    figures = json.loads((tmp_path / "evaluation.json").read_text())
    assert figures["optimal_cost"] == pytest.approx(4.466781, rel=1e-6) and figures["learned_cost"] > 0
    # every checkpoint was scored; `best` points at the cheapest, which pruning kept and the evaluation used
    checks = list(csv.DictReader((tmp_path / "validation.csv").open()))
    assert [int(r["iteration"]) for r in checks] == [1, 2, 3]
    costs = [float(r["validation_cost_per_day"]) for r in checks]
    best = 1 + costs.index(min(costs))
    assert (tmp_path / "checkpoints" / "best").resolve().name == f"iter_{best:06d}"
    assert f"the best checkpoint by validation: iter_{best:06d}" in done.stderr


@pytest.mark.slow
def test_a_multirun_sweeps_agents_and_seeds(tmp_path):
    """`-m agent=ppo,dqn`: DQN gets one agent per (node, SKU) by itself (env.granularity=auto)."""
    done = run("experiments.train", "-m", "agent=ppo,dqn", "seed=0", *QUICK_NETWORK, "agent.hidden=[8]",
               "agent.train_batch_size=500",
               "stop.iterations=1", f"hydra.sweep.dir={tmp_path}", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = sorted(tmp_path.glob("*/evaluation.md"))
    assert len(reports) == 2
    assert "| ppo |" in reports[0].read_text() + reports[1].read_text()
    assert "| dqn |" in reports[0].read_text() + reports[1].read_text()
    fingerprints = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/train_fingerprint.json"))]
    assert {f["env.granularity"] for f in fingerprints} == {"'node'", "'node_sku'"}


@pytest.mark.slow
def test_ppo_with_an_lstm_policy_trains_and_evaluates(tmp_path):
    done = run("experiments.train", "agent=ppo_lstm", f"case={CASE}", *TINY_PPO, "agent.max_seq_len=5",
               "stop.iterations=1", "evaluation.case_horizon=200", "evaluation.seeds=2", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "learned ppo policy costs" in done.stdout


# ---------------------------------------------------------------- bad configs: one clear error, before Ray

@pytest.mark.parametrize("args, message", [
    (["agent=alphazero"], "agent: 'alphazero' is not allowed; allowed: dqn, ppo, ppo_lstm"),
    (["env.action.grid.stop=0.1"], "env.action.grid: empty"),
    (["env.cost_weights.ordering=-1"], "env.cost_weights.ordering: -1"),
    (["validation.enabled=true", "validation.first_seed=1000001"], "validation.first_seed: seeds 1000001..1000002"
     " overlap the evaluation's"),
    (["trainer.num_env_runners=64"], "trainer.num_env_runners: 64 is more than allowed"),
    (["agent=dqn", "env.granularity=node"], "agent: dqn needs Discrete actions"),
    ([f"case={CASE}", "agent.minibatch_size=9000"], "agent.minibatch_size"),
    (["stop.iterations=null"], "stop: no limit set"),
    ([f"case={CASE}", "sku_batched=true"], "sku_batched: true is for a network's (node, SKU) agents"),
    (["sku_batched=true", "env.granularity=node"], "sku_batched: true needs one agent per node and SKU"),
    (["env.forecaster=seasonal_naive", "env.forecast_refit_every=0"], "env.forecast_refit_every: 0 (fit once) "
     "needs a forecaster"),
    (["+agent.learning_rate=0.1"], "agent: unknown key 'learning_rate'"),
    (["evaluation.warmup=400"], "evaluation.warmup: 400 is not allowed; allowed: whole days in "
     "[0, evaluation.horizon - 1]"),
    (["validation.enabled=true", "validation.horizon=20"], "evaluation.warmup: 28 is not allowed; allowed: whole "
     "days in [0, validation.horizon - 1]"),
])
def test_a_bad_config_gives_one_clear_error(args, message, tmp_path):
    done = run("experiments.train", *args, f"hydra.run.dir={tmp_path}", timeout=120)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "checkpoints").exists()


def test_the_network_experiment_preset_composes_into_a_valid_config():
    """`+experiment=ppo_network_sku` (the README's network runs) gives per-(node, SKU) PPO with its settings."""
    from hydra import compose, initialize
    from omegaconf import OmegaConf

    from experiments.training import load_train_config

    with initialize(config_path="../../conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+experiment=ppo_network_sku", "scenario=covid_2020",
                                                      "env.cost_weights.shortage=0.5"])
    config = load_train_config(OmegaConf.to_container(cfg, resolve=True))
    env = config.setup.env
    assert (env.granularity, env.scenario, env.action.kind, env.downstream_shortage_weight) == (
        "node_sku", "covid_2020", "safety_factor", 1.0)
    assert (env.cost_weights.ordering, env.cost_weights.shortage) == (0.0, 0.5)
    assert config.validation is not None and config.agent.train_batch_size == 365


@pytest.mark.slow
def test_a_trained_policy_decides_for_the_snapshot_it_is_given(ppo_run):
    """Its decision depends only on the snapshot and the forecast, not on the engine it is attached to."""
    from agents.rl.policy import TrainedPolicy

    policy = TrainedPolicy.from_checkpoint(ppo_run / "checkpoints" / "latest")
    network = policy.sim.network
    b = Engine(network, horizon=60, seed=2, shocks=policy.sim.shocks, initial_on_hand=policy.initial_on_hand)
    policy.attach(b)
    while b.day < 25:
        b.step(policy.act(b.snapshot()))
    snapshot = b.snapshot()
    forecast = policy.sim.forecast(snapshot)
    expected = policy.act(snapshot)
    assert expected.sum() > 0
    a = Engine(network, horizon=60, seed=1, shocks=policy.sim.shocks, initial_on_hand=policy.initial_on_hand)
    policy.attach(a)  # another run, at day 0
    again = snapshot_from_dict(json.loads(json.dumps(snapshot.to_dict())), network)
    np.testing.assert_array_equal(policy.decide(again, forecast), expected)
    c = Engine(network, horizon=60, seed=2, shocks=policy.sim.shocks, initial_on_hand=policy.initial_on_hand)
    policy.attach(c)  # another run with b's demand model, still at day 0: act decides for the snapshot it is given
    np.testing.assert_array_equal(policy.act(again), expected)
    assert not np.array_equal(policy.act(a.snapshot()), expected)  # its own state is another one
    with pytest.raises(TypeError, match="expected a twin Snapshot"):
        policy.act(a.state())


def test_the_worlds_preset_composes_into_a_valid_config():
    """`+experiment=ppo_worlds`: ppo_network_sku's settings, the six scenarios drawn per episode and two held out."""
    from hydra import compose, initialize
    from omegaconf import OmegaConf

    from experiments.training import load_train_config

    with initialize(config_path="../../conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+experiment=ppo_worlds"])
        plain = compose(config_name="train")
    config = load_train_config(OmegaConf.to_container(cfg, resolve=True))
    env, worlds = config.setup.env, config.setup.env.worlds
    assert (env.granularity, env.action.kind, config.agent.train_batch_size) == ("node_sku", "safety_factor", 365)
    assert set(worlds.scenarios) == {"baseline", "covid_2020", "flash_sale", "port_strike", "dc_outage",
                                     "holiday_peak"}
    assert [h["name"] for h in worlds.hold_out] == ["port_strike", "custom"]
    assert config.setup.plain["env"]["worlds"]["hold_out"][1]["name"] == "custom"  # a checkpoint keeps it
    assert plain.env.worlds is None  # off unless asked for


def test_the_dqn_network_preset_composes_into_a_valid_config():
    """`+experiment=dqn_network_sku`: DQN, SKU-batched, on ppo_network_sku's env, reward and actions; its counts
    are twin steps, which RLlib gets times the 1,250 pairs of paper_5x20."""
    from hydra import compose, initialize
    from omegaconf import OmegaConf

    from agents.rl.algorithms import Resources
    from experiments.training import load_train_config

    with initialize(config_path="../../conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["+experiment=dqn_network_sku"])
    config = load_train_config(OmegaConf.to_container(cfg, resolve=True))
    env, agent = config.setup.env, config.agent
    assert agent.name == "dqn" and config.setup.sku_batched and config.setup.steps_per_env_step == 1250
    assert (env.granularity, env.action.kind, env.cost_weights.ordering) == ("node_sku", "safety_factor", 0.0)
    rllib = agent.algorithm_config(config.setup, Resources(), seed=0)
    assert rllib.replay_buffer_config["capacity"] == 730 * 1250  # two simulated years of every pair
    assert rllib.epsilon == [(0, 1.0), (7300 * 1250, 0.02)]


def test_a_run_resumes_across_a_setting_added_since_only_at_its_default(tmp_path):
    """A fingerprint written before a setting existed lacks its key: the run resumes when the setting has its
    default, and is refused, naming the key, when it has another value."""
    from experiments.training import RunDirectory
    from twin import SpecError

    run_dir = RunDirectory(tmp_path, keep=1)
    (tmp_path / "checkpoints" / "iter_000001").mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest").symlink_to("iter_000001")
    (tmp_path / "train_fingerprint.json").write_text(json.dumps({"seed": 0}))
    defaults = {"env.forecast_refit_every": "7", "sku_batched": False}
    run_dir.check_same_config({"seed": 0, "env.forecast_refit_every": "7", "sku_batched": False}, defaults)
    (tmp_path / "train_fingerprint.json").write_text(json.dumps({"seed": 0}))
    with pytest.raises(SpecError, match=r"other settings \(env.forecast_refit_every\)"):
        run_dir.check_same_config({"seed": 0, "env.forecast_refit_every": "0", "sku_batched": False}, defaults)
    with pytest.raises(SpecError, match=r"other settings \(seed\)"):
        run_dir.check_same_config({"seed": 1, "env.forecast_refit_every": "7", "sku_batched": False}, defaults)
