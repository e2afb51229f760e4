"""A global Transformer forecaster: a patch-based encoder over the LSTM's inputs, direct multi-horizon output.

Everything but the network is the LSTM's (`agents.forecasting.lstm`, whose
`LSTMForecaster` this class extends): the windows, the inputs of
`lstm_inputs.py` (scaled value, seasonal lag, rolling statistics, calendar,
known covariates, category embeddings, log scales), window scaling and the
optional trend line, the loss (squared error of the mean plus pinball loss of
the quantiles), early stopping on the last periods of every series, warm
starts, `device` and `threads`, and every setting but the network's, with its
default and its check (`LSTMForecaster`'s keywords; the Transformer's keywords
are built from them, see `TransformerForecaster`).

The network (`_PatchNetwork`, PatchTST-style): the context window is cut into
patches of `patch` periods (the season by default; the context is left-padded
with zeros to a whole number of patches); each patch, flattened, is one token.
Each target step is one more token, made of its known covariates and calendar
and its value a season earlier. Every token also gets a learned position and
the series' static inputs (category embeddings, log scales). A Transformer
encoder (pre-norm, `layers` x `heads`) reads them with a mask: patches attend
to all patches, target step k to the patches and to the target steps up to k.
So step k's output depends on nothing after it and `predict(h)` equals the
first h steps of `predict(max_horizon)`. A linear head maps each target
token to the mean and the quantiles of its step.

Saving and serving are the LSTM's, unchanged (`agents.forecasting.saved`,
name "transformer"): the inherited `export_onnx` writes the LSTM's serving
model (`lstm._Serving`: window scale, this network, scaling back) to ONNX, the
attention mask a constant of the graph; onnxruntime then forecasts from inputs
that numpy builds (`lstm_inputs`), without torch, and a save is refused unless
it reproduces torch's forecast (`saved.ONNX_TOLERANCE`). The encoder is called
with `is_causal=False` (true of the mask: patches see every patch): left
unset, the encoder compares the mask with a causal one, a test on data, and
the export failed (torch 2.9: a graph with PyTorch's fused encoder-layer
kernel, which has no ONNX form).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from agents.forecasting.lstm import (
    LSTMForecaster,
    check_setting,
    is_int,
    is_number,
    mean_and_quantiles,
    n_static_scales,
)

NETWORK_KEYS = ("hidden", "layers", "dropout")  # the LSTM's network keywords; TransformerConfig's fields replace them


@dataclass(frozen=True)
class TransformerConfig:
    """The Transformer's network settings, each checked on creation (ValueError naming the key): `patch`
    (periods per context token; None: the season), `d_model` (token width), `heads` (attention heads; must
    divide d_model), `layers` (encoder layers), `feedforward` (width of each layer's feed-forward block) and
    `dropout`. Every other setting is the LSTM's, with its default and its check (`LSTMForecaster`).
    """

    patch: int | None = None
    d_model: int = 32
    heads: int = 4
    layers: int = 2
    feedforward: int = 64
    dropout: float = 0.1  # the LSTM's is 0.25

    def __post_init__(self) -> None:
        for key in ("d_model", "heads", "layers", "feedforward"):
            _check(key, getattr(self, key), is_int(getattr(self, key), 1), "an integer >= 1")
        _check("patch", self.patch, self.patch is None or is_int(self.patch, 1), "null or an integer >= 1")
        _check("dropout", self.dropout, is_number(self.dropout) and 0 <= self.dropout < 1, "a number in [0, 1)")
        if self.d_model % self.heads:
            raise ValueError(f"TransformerForecaster: d_model {self.d_model} is not allowed with heads "
                             f"{self.heads}; allowed: a multiple of heads")


def _check(key: str, value: Any, ok: bool, allowed: str) -> None:
    check_setting("TransformerForecaster", key, value, ok, allowed)


def _signature() -> inspect.Signature:
    """The Transformer's keywords (the keys the factory allows and a saved manifest records): the LSTM's, with
    their defaults, its network's (NETWORK_KEYS) replaced, where `hidden` stands, by TransformerConfig's fields."""
    lstm = list(inspect.signature(LSTMForecaster).parameters.values())
    names = [p.name for p in lstm]
    at = sum(name not in NETWORK_KEYS for name in names[:names.index("hidden")])
    shared = [p for p in lstm if p.name not in NETWORK_KEYS]
    network = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
               for f in fields(TransformerConfig)]
    return inspect.Signature(shared[:at] + network + shared[at:])


class _PatchNetwork(nn.Module):
    """Patch tokens of the context plus one token per target step, a masked Transformer encoder, a linear head
    (see the module docstring); the forward signature of the LSTM's network."""

    def __init__(self, n_encoder: int, n_decoder: int, cardinalities: list[int], *, context: int, patch: int,
                 d_model: int, heads: int, layers: int, feedforward: int, dropout: float, max_horizon: int,
                 n_levels: int, n_scales: int, positive: bool) -> None:
        super().__init__()
        self.positive = positive  # a softplus mean (values); False: any sign (residuals from a trend line)
        self.patch, self.n_patches = patch, -(-context // patch)
        self.pad = self.n_patches * patch - context  # zeros before the context's first period
        self.embeddings = nn.ModuleList([nn.Embedding(card, min(8, card)) for card in cardinalities])
        n_static = sum(e.embedding_dim for e in self.embeddings) + n_scales
        self.patch_in = nn.Linear(patch * n_encoder, d_model)
        self.step_in = nn.Linear(n_decoder + 1, d_model)  # known inputs and the value a season before
        self.static_in = nn.Linear(n_static, d_model)
        tokens = self.n_patches + max_horizon
        self.position = nn.Parameter(0.02 * torch.randn(tokens, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, feedforward, dropout, batch_first=True, norm_first=True)
        layer.self_attn.dropout = 0.0  # none on the attention weights: on a CPU it cost more than the rest of a step
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1 + n_levels)
        # -inf: may not attend. Patches see all patches; target step k sees the patches and steps 0..k.
        blocked = torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), diagonal=1)
        blocked[:self.n_patches, :self.n_patches] = False
        self.register_buffer("mask", torch.zeros(tokens, tokens).masked_fill(blocked, float("-inf")),
                             persistent=False)

    def forward(self, past: torch.Tensor, future: torch.Tensor, reference: torch.Tensor, codes: torch.Tensor,
                log_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled mean (B, H) and non-decreasing quantiles (B, H, levels) from the past (B, C, F), the known
        future (B, H, G), each step's value a season earlier (B, H), category codes (B, c) and log scales (B, s)."""
        static = torch.cat([emb(codes[:, j]) for j, emb in enumerate(self.embeddings)] + [log_scale], dim=1)
        batch, horizon = past.shape[0], future.shape[1]
        patches = nn.functional.pad(past, (0, 0, self.pad, 0)).reshape(batch, self.n_patches, -1)
        steps = self.step_in(torch.cat([future, reference[..., None]], dim=2))
        length = self.n_patches + horizon
        tokens = torch.cat([self.patch_in(patches), steps], dim=1) + self.position[:length] \
            + self.static_in(static)[:, None, :]
        # is_causal=False: true of this mask (patches see every patch); unset, the encoder compares the mask with a
        # causal one, which the ONNX export cannot trace (module docstring)
        encoded = self.norm(self.encoder(tokens, mask=self.mask[:length, :length], is_causal=False))
        return mean_and_quantiles(self.head(encoded[:, self.n_patches:]), self.positive)


class TransformerForecaster(LSTMForecaster):
    """Global Transformer forecaster (see the module docstring): the LSTM's inputs, training and protocol,
    `fit(history)` on a panel, then `predict(h)` (h <= `max_horizon`) giving the mean and quantiles.

    Created from keywords (those of `__signature__`: the LSTM's but `hidden`, `layers` and `dropout`, with
    the LSTM's defaults and checks, plus the fields of `TransformerConfig`; an unknown one is a TypeError naming
    it), e.g. `TransformerForecaster(d_model=64, heads=4, patch=7, max_horizon=60)`.
    """

    name = "transformer"
    __signature__ = _signature()  # the keys the factory allows

    def __init__(self, **options: Any) -> None:
        allowed = list(self.__signature__.parameters)
        for key in options:
            if key not in allowed:
                raise TypeError(f"TransformerForecaster: {key} is not a setting; allowed: {', '.join(allowed)}")
        network = {f.name for f in fields(TransformerConfig)}
        self.config = config = TransformerConfig(**{k: v for k, v in options.items() if k in network})
        shared = {k: v for k, v in options.items() if k not in network}
        super().__init__(hidden=config.d_model, layers=config.layers, dropout=config.dropout, **shared)

    def _new_network(self, n_encoder: int, n_decoder: int, cardinalities: list[int]) -> nn.Module:
        """A fresh `_PatchNetwork` for the fitted context (patches of `patch` periods, or the season)."""
        c = self.config
        patch = min(c.patch or self._season, self._context)
        return _PatchNetwork(n_encoder, n_decoder, cardinalities, context=self._context, patch=patch,
                             d_model=c.d_model, heads=c.heads, layers=c.layers, feedforward=c.feedforward,
                             dropout=c.dropout, max_horizon=self.max_horizon, n_levels=len(self.levels),
                             n_scales=n_static_scales(self.scaling, self.trend), positive=self.trend == "none")
