"""RLlib's episode replay buffer with eviction in one pass per `add`, for DQN on many (node, SKU) pairs.

RLlib 2.x's EpisodeReplayBuffer evicts one episode at a time and, for each, rebuilds its
index of every stored step in a Python loop: with the 1,250 pairs of paper_5x20 sampled
SKU-batched, a full buffer of 0.9M steps evicted about 110 episodes per add, and
`add` took 77% of DQN's time (py-spy), 10 s per 32 twin steps. This buffer adds
without evicting, then evicts the oldest episodes down to capacity as RLlib does,
rebuilds the index once, and reports RLlib's add metrics (stored, added, evicted) as
they stand after the eviction.

It stores and samples what RLlib's buffer does (tests/agents/test_replay.py) with one
exception, which needs a capacity under one episode plus one fragment (the DQN presets
keep two episodes or more): an episode whose next chunk arrives in the same `add` that
evicts it is dropped whole here, where RLlib drops the old part and keeps the chunk as a
new episode.
"""

from __future__ import annotations

import math
from typing import Any

from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

EVICTION_COUNTS = ("agent_to_num_episodes_evicted", "agent_to_num_steps_evicted", "module_to_num_episodes_evicted",
                   "module_to_num_steps_evicted")


class BatchEvictingEpisodeReplayBuffer(EpisodeReplayBuffer):
    """EpisodeReplayBuffer whose `add` evicts the oldest episodes in one pass over the step index."""

    _deferred_metrics: dict[str, Any] | None = None

    def add(self, episodes) -> None:
        """Add the episodes (chunks of stored ones are appended to them), then evict down to capacity."""
        capacity, self.capacity = self.capacity, math.inf
        self._deferred_metrics = {}
        try:
            super().add(episodes)  # its metrics wait in _deferred_metrics until the eviction is done
        finally:
            self.capacity = capacity
            metrics, self._deferred_metrics = self._deferred_metrics, None
        evicted: set[int] = set()
        steps = 0
        while self._num_timesteps > self.capacity and self.get_num_episodes() > 1:
            episode = self.episodes.popleft()
            evicted.add(self.episode_id_to_index.pop(episode.id_))
            self._num_timesteps -= len(episode)
            self._num_episodes_evicted += 1
            steps += len(episode)
        if evicted:
            self._indices = [step for step in self._indices if step[0] not in evicted]
        if metrics:
            metrics["num_episodes_evicted"] += len(evicted)
            metrics["num_env_steps_evicted"] += steps
            for key in EVICTION_COUNTS:
                counts = metrics[key]
                for owner in counts:
                    counts[owner] += steps if "steps" in key else len(evicted)
            super()._update_add_metrics(**metrics)

    def _update_add_metrics(self, **metrics) -> None:
        if self._deferred_metrics is not None:  # inside add: report once the eviction is done
            self._deferred_metrics.update(metrics)
        else:
            super()._update_add_metrics(**metrics)
