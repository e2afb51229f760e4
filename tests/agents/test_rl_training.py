"""RL agent configs and training setups (agents.rl.algorithms), without Ray running.

Training and evaluation end to end, through experiments.train, are tested in tests/experiments/test_train.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.envs.core import EnvConfig
from agents.rl.algorithms import DQNAgent, PPOAgent, Resources, TrainingSetup, agent_from_dict
from twin import SpecError

ROOT = Path(__file__).resolve().parents[2]


def test_agent_config_errors_name_the_key():
    with pytest.raises(SpecError, match="agent.name: 'a2c'"):
        agent_from_dict({"name": "a2c"})
    assert agent_from_dict({"name": "dqn", "lr": 0.001}) == DQNAgent(lr=0.001)
    assert agent_from_dict({"name": "ppo", "hidden": [32, 32]}).hidden == (32, 32)


def test_gpus_follow_config_or_detection():
    assert Resources(num_gpus_per_learner=1).gpus_per_learner == 1.0
    import torch
    assert Resources().gpus_per_learner == (1.0 if torch.cuda.is_available() else 0.0)


def test_a_local_gpu_learner_without_a_gpu_is_one_config_error(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError, match=r"trainer.num_gpus_per_learner: 1 asks for a GPU, but torch .* sees none"):
        Resources.from_dict({"num_gpus_per_learner": 1})
    assert Resources.from_dict({"num_gpus_per_learner": "auto"}).gpus_per_learner == 0.0
    # remote learners, or a sweep's trials on a cluster, may find their GPUs on its other nodes
    assert Resources.from_dict({"num_gpus_per_learner": 1, "num_learners": 1}).gpus_per_learner == 1.0
    assert Resources.from_dict({"num_gpus_per_learner": 1, "ray_address": "auto"}).gpus_per_learner == 1.0


def test_policies_are_shared_by_role(tmp_path):
    import yaml

    from twin.spec import network_from_dict
    network = network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))
    setup = TrainingSetup.network(EnvConfig(network=network))
    assert setup.policy_ids == ["dc", "store"]
    config = PPOAgent().algorithm_config(setup, Resources(), seed=0)
    mapping = config.policy_mapping_fn
    assert mapping("store_0") == mapping("store_1") == "store" and mapping("dc_0") == "dc"
    shared = TrainingSetup.network(EnvConfig(network=network), shared_policy=True)
    assert shared.policy_ids == ["shared"]

