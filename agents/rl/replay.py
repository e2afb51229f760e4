"""RLlib's episode replay buffer with eviction in one pass per `add`, for DQN on many (node, SKU) pairs.

RLlib 2.x's EpisodeReplayBuffer evicts one episode at a time and, for each, rebuilds its
index of every stored step in a Python loop: with the 1,250 pairs of paper_5x20 sampled
SKU-batched, a full buffer of 0.9M steps evicted about 110 episodes per add, and
`add` took 77% of DQN's time (py-spy), 10 s per 32 twin steps. This buffer adds
without evicting, then evicts the oldest episodes down to capacity as RLlib does and
rebuilds the index once. What it stores and samples is the same as RLlib's buffer
(tests/agents/test_replay.py); only the eviction counts of RLlib's buffer metrics
are not reported.
"""

from __future__ import annotations

import math

from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer


class BatchEvictingEpisodeReplayBuffer(EpisodeReplayBuffer):
    """EpisodeReplayBuffer whose `add` evicts the oldest episodes in one pass over the step index."""

    def add(self, episodes) -> None:
        capacity, self.capacity = self.capacity, math.inf
        try:
            super().add(episodes)
        finally:
            self.capacity = capacity
        evicted: set[int] = set()
        while self._num_timesteps > self.capacity and self.get_num_episodes() > 1:
            episode = self.episodes.popleft()
            evicted.add(self.episode_id_to_index.pop(episode.id_))
            self._num_timesteps -= len(episode)
            self._num_episodes_evicted += 1
        if evicted:
            self._indices = [step for step in self._indices if step[0] not in evicted]
