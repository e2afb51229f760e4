"""The learner benchmark (experiments/bench_learner.py) on the CPU: every learner updates on the same batch.

No timing is asserted (speed belongs to the benchmark's printout); what is checked is that each learner is fed
the whole sampled batch, unchanged by the updates before it, and reports the device it ran on.
"""

from __future__ import annotations

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
