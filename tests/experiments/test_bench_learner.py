"""The learner benchmark (experiments/bench_learner.py) on the CPU: every learner updates on the same batch.

No timing is asserted (speed belongs to the benchmark's printout); what is checked is that each learner is fed
the whole sampled batch, unchanged by the updates before it, and reports the device it ran on.
"""

from __future__ import annotations

import re

import pytest

from experiments import bench_learner

SMALL = ("+experiment=ppo_network_sku", "sku_batched=true", "network=small", "agent.train_batch_size=20",
         "agent.minibatch_size=10", "agent.num_epochs=2")


@pytest.mark.slow
def test_every_learner_updates_on_the_same_whole_batch(capsys):
    rows = bench_learner.main(quick=True, overrides=SMALL)
    config = bench_learner.compose(SMALL)
    pairs = len(config.setup.roles)
    assert "CPU, 1 torch thread" in rows
    for row in rows.values():
        # one batch: train_batch_size twin steps, each a step of every (node, SKU) pair, the same for every
        # learner (the learner connector appends a step to each episode it reads: each update gets a copy)
        assert row["agent_steps"] == 20 * pairs
        assert row["epochs"] == 2
        assert row["device"].startswith(("cpu", "cuda"))
        assert row["agent_steps_per_s"] == pytest.approx(row["agent_steps"] * 2 / row["update_s"])
    assert "ratios to the CPU learner with 1 torch thread" in capsys.readouterr().out


def test_a_bad_override_is_one_config_error_naming_the_key():
    from twin.config import SpecError

    with pytest.raises(SpecError, match="agent.lr"):
        bench_learner.compose((*SMALL, "agent.lr=-1"))


@pytest.mark.parametrize("overrides, message", [
    ("+experiment=ppo_network_sku agent.lr=-1", r"^config error: agent\.lr: -1 is out of range"),
    ("+experiment=ppo_network_sku agent.nokey=1", r"^config error: --learner-overrides: Could not override "
                                                   r"'agent\.nokey'.*; allowed: keys and options of the train config"),
    ("network=nowhere", r"^config error: network: 'nowhere' is not allowed; allowed: .*paper_5x20"),
])
@pytest.mark.parametrize("section", ["--learner", "--learner-only"])
def test_bad_learner_overrides_are_one_line_before_any_work(section, overrides, message, monkeypatch, capsys):
    """Checked before the engine benchmark (minutes) starts, not after it; one line, exit status 2."""
    from experiments import bench

    def started(*args, **kwargs):
        raise AssertionError("the benchmark started before the learner overrides were checked")
    monkeypatch.setattr(bench, "run_case", started)
    monkeypatch.setattr(bench_learner, "main", started)
    with pytest.raises(SystemExit) as stopped:
        bench.main([section, "--quick", "--learner-overrides", overrides])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_each_learner_is_the_local_one_whatever_the_trainer_overrides(monkeypatch):
    """The section times the driver's own learner (algo.learner_group._learner): trainer=cluster's remote learner
    (num_learners: 1) would leave it None; every build gets num_learners 0 and the device and threads asked."""
    config = bench_learner.compose((*SMALL, "trainer=cluster"))
    assert config.resources.num_learners == 1
    seen = []

    class Built:
        def build_algo(self):
            return "algo"

    monkeypatch.setattr(type(config.agent), "algorithm_config",
                        lambda self, setup, resources, seed: seen.append(resources) or Built())
    assert bench_learner.build(config, gpus=1.0, threads=1) == "algo"
    assert (seen[0].num_learners, seen[0].num_env_runners, seen[0].gpus_per_learner) == (0, 0, 1.0)

