"""agents/rl/replay.py: the batch-evicting replay buffer stores and samples what RLlib's EpisodeReplayBuffer does."""

from __future__ import annotations

import numpy as np
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

from agents.rl.replay import BatchEvictingEpisodeReplayBuffer


def chunks(rng: np.random.Generator, rounds: int, pairs: int, length: int, episode_days: int):
    """Per round, one fragment of `length` steps for each of `pairs` sub-environments whose episodes last
    `episode_days` steps: fragments continue their episode (same id) until it ends, as a vector env samples."""
    episodes = [SingleAgentEpisode(observations=[rng.normal(size=3).astype(np.float32)]) for _ in range(pairs)]
    days = [0] * pairs
    for _ in range(rounds):
        batch = []
        for i in range(pairs):
            episode = episodes[i]
            for _ in range(length):
                days[i] += 1
                done = days[i] == episode_days
                episode.add_env_step(rng.normal(size=3).astype(np.float32), int(rng.integers(4)),
                                     float(rng.normal()), terminated=done)
                if done:
                    days[i] = 0
                    batch.append(episode)
                    episode = SingleAgentEpisode(observations=[rng.normal(size=3).astype(np.float32)])
            if len(episode):
                batch.append(episode)
                episode = episode.cut()
            episodes[i] = episode
        yield batch


def test_it_keeps_and_samples_the_same_steps_as_rllibs_buffer():
    """Fragments of 8 steps from 20 pairs, episodes of 30 steps, a capacity of 900 steps (more than a generation of
    episodes, as in training): after every add both buffers hold the same episodes and step index, report the same
    metrics (stored, added, evicted), and sample the same transitions for one seed."""
    rllib, ours = EpisodeReplayBuffer(capacity=900), BatchEvictingEpisodeReplayBuffer(capacity=900)
    evicted_any = False
    for batch in chunks(np.random.default_rng(0), rounds=12, pairs=20, length=8, episode_days=30):
        rllib.add(batch)
        ours.add(batch)
        evicted_any |= ours._num_episodes_evicted > 0
        assert ours.get_num_timesteps() == rllib.get_num_timesteps() <= 900 + 30
        assert [e.id_ for e in ours.episodes] == [e.id_ for e in rllib.episodes]
        assert ours._indices == rllib._indices
        assert ours.episode_id_to_index == rllib.episode_id_to_index
        assert ours._num_episodes_evicted == rllib._num_episodes_evicted
        assert ours.get_metrics() == rllib.get_metrics()
    assert evicted_any
    rllib.rng, ours.rng = np.random.default_rng(1), np.random.default_rng(1)
    theirs = rllib.sample(num_items=64, n_step=3, gamma=0.9)
    mine = ours.sample(num_items=64, n_step=3, gamma=0.9)
    assert set(mine) == set(theirs) and "rewards" in mine
    for column in mine:
        np.testing.assert_array_equal(np.asarray(mine[column]), np.asarray(theirs[column]))
