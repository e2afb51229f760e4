"""A PPO RLModule for one agent per node: one small network shared across the node's SKUs.

The observation is (batch, SKUs, features) and the action one choice per SKU
(MultiDiscrete). The same MLP reads each SKU's features (the SKU is a batch
dimension), so the module has the same size for 10 SKUs or 10,000, and what it
learns on one SKU transfers to the others. The node's value is the sum of
per-SKU values, since its reward is a sum over its SKUs.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchDeterministic, TorchDistribution
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn


class SkuCategorical(TorchDistribution):
    """Independent categorical choices, one per SKU: logits (batch, SKUs, choices) -> actions (batch, SKUs)."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        super().__init__(logits=logits)

    def _get_torch_distribution(self, logits: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Independent(torch.distributions.Categorical(logits=logits), 1)

    @staticmethod
    def required_input_dim(space, **kwargs) -> int:
        return int(space.nvec.sum())

    def rsample(self, sample_shape=()):
        raise NotImplementedError("SkuCategorical has no reparameterised sample")

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=torch.argmax(self.logits, dim=-1))


def mlp(inputs: int, hidden: list[int], outputs: int, activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers with `activation` between them."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), activation()]
        inputs = width
    layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class SkuSharedPPOModule(TorchRLModule, ValueFunctionAPI):
    """Policy and value MLPs applied to every SKU of a node; model_config: {"hidden": [64, 64]}."""

    def setup(self) -> None:
        features = self.observation_space.shape[-1]
        choices = int(self.action_space.nvec[0])
        hidden = list(self.model_config.get("hidden", [64, 64]))
        self.pi = mlp(features, hidden, choices)
        self.vf = mlp(features, hidden, 1)
        # a small last layer starts the policy near uniform (the usual PPO initialisation)
        nn.init.orthogonal_(self.pi[-1].weight, gain=0.01)
        nn.init.zeros_(self.pi[-1].bias)
        self.action_dist_cls = SkuCategorical

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        return self.vf(batch[Columns.OBS]).squeeze(-1).sum(dim=-1)
