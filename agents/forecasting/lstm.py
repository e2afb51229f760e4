"""A global LSTM forecaster: one network trained across all series, direct multi-horizon mean and quantiles.

The encoder reads a context window of each series (scaled value, a seasonal
lag, causal rolling mean and std over a season and a longer window, calendar,
known covariates, static inputs); dense layers map its final state, the static
inputs (embeddings of the series' categories, log of its scale) and, for each
target step, the known covariates and calendar, the value a season before and
a step embedding to the mean and the quantiles of every step up to
`max_horizon` at once (no recursion). There is no series-id embedding: the
model must carry over to series it has not seen.

Scaling (`scaling`): with "window" (as in DeepAR), each window's inputs
(values, lag, rolling statistics, the value a season before) are divided by
a scale of its own, the mean absolute value of the observed context values
(at least `MIN_WINDOW_SCALE` times the series' scale, so all-zero contexts
are safe); the network also reads the log of that scale relative to the
series' scale, predicts in units of it, and its outputs are multiplied back
(the loss is taken in units of the series' scale). Nothing at or after a window's first
target step enters its scale. With "series", one scale per series (the mean
absolute value over its whole history) serves all its windows: fine on
stationary demand, poor where the level moves (trends, shocks).

Trend (`trend`): a window's scale tells the network the level, not where it
is going, so with "none" (the default) a steady trend past the context's end
must be learned implicitly (the LSTM missed co2's by about 1.5% of its
level). With "window", each window's context gets a least-squares line
(`local_line`, over its observed context values only); the level inputs and
the reference are taken relative to it, divided by the context's mean
absolute residual around it, the network predicts residuals (any sign) and
the line, extrapolated, is added back at every target step, to the mean and
the quantiles (`window_inputs`, `to_values`). The network also reads the
line's rise over the context, so it can damp an extrapolation that does not
hold. The exported model (`_Serving`) computes the same line from the same
context inputs.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.forecasting.base import QUANTILE_LEVELS, Forecast, SeriesPanel, check_horizon, sorted_quantiles
from agents.forecasting.features import series_scale
from agents.forecasting.lstm_inputs import (
    MIN_WINDOW_SCALE,
    SERVING_INPUTS,
    SERVING_OUTPUTS,
    Normalisation,
    input_arrays,
    last_window,
    level_lags,
)

log = logging.getLogger("agents.forecasting.lstm")

SCALINGS = ("window", "series")
TRENDS = ("none", "window")
MIN_RESIDUAL_SCALE = 1e-3  # the floor of a trend window's residual scale, relative to its window scale


def window_scale(value: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute observed value of each context (B, C) of series-scaled values, at least
    MIN_WINDOW_SCALE."""
    total = (value.abs() * observed).sum(dim=1)
    return (total / observed.sum(dim=1).clamp(min=1)).clamp(min=MIN_WINDOW_SCALE)


def local_line(value: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares line through the observed points of each context (B, C), its steps at -C..-1 before the
    first target step: (B,) its value at the first target step (step 0) and (B,) its slope per step (0 with
    fewer than two points)."""
    weight = observed.to(value.dtype)
    steps = torch.arange(-value.shape[1], 0, device=value.device, dtype=value.dtype)
    count = weight.sum(dim=1).clamp(min=1)
    step_mean = (weight * steps).sum(dim=1) / count
    value_mean = (weight * value).sum(dim=1) / count
    centred = (steps - step_mean[:, None]) * weight
    spread = (centred * centred).sum(dim=1)
    slope = torch.where(spread > 0, (centred * value).sum(dim=1) / spread.clamp(min=1e-12), 0.0)
    return value_mean - slope * step_mean, slope


def _symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|): log1p for x >= 0, odd, finite for any x."""
    return torch.sign(x) * torch.log1p(x.abs())


def window_inputs(level: torch.Tensor, value: torch.Tensor, observed: torch.Tensor, reference_value: torch.Tensor,
                  log_scale: torch.Tensor, season: int, scaling: str, trend: str
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A window's level inputs (B, C, 6), its reference values (B, H) and log scales (B, s) as the network
    reads them, from its context's series-scaled values (B, C) and observed flags; plus the unit (B,) and the
    line (B, H) that turn the network's outputs back into series-scaled values (`unit * output + line`).

    With trend "none" the unit is the window's scale (1 with "series" scaling), the line zero and the inputs
    log1p of the values over the unit. With "window", `local_line` is fitted to the context, the level inputs
    and the references are taken relative to it (each at the step it reads, `level_lags`), the unit is the
    mean absolute residual of the context (at least MIN_RESIDUAL_SCALE window scales) and the line is
    extrapolated over the target steps; the network also reads the log of the unit over the window's scale and
    the line's rise over the context in units. Only the context enters: nothing at or after step 0.
    """
    horizon = reference_value.shape[1]
    window = torch.ones_like(value[:, 0]) if scaling == "series" else window_scale(value, observed)
    scales = [log_scale] + ([torch.log(window)[:, None]] if scaling == "window" else [])
    if trend == "none":
        past = torch.log1p(level / window[:, None, None])
        reference = torch.log1p(reference_value / window[:, None])
        return (past, reference, torch.cat(scales, dim=1)), window, torch.zeros_like(reference_value)
    start, slope = local_line(value, observed)
    context = value.shape[1]
    steps = torch.arange(-context, 0, device=value.device, dtype=value.dtype)
    residual = (value - start[:, None] - slope[:, None] * steps) * observed
    unit = torch.maximum((residual.abs().sum(dim=1) / observed.sum(dim=1).clamp(min=1)),
                         MIN_RESIDUAL_SCALE * window)
    lags = torch.as_tensor(level_lags(season), device=value.device, dtype=value.dtype)
    read_at = steps[:, None] - torch.nan_to_num(lags)          # (C, 6): the step each level input reads
    shift = (start[:, None, None] + slope[:, None, None] * read_at) * torch.isfinite(lags)
    past = _symlog((level - shift) / unit[:, None, None])
    ahead = torch.arange(horizon, device=value.device, dtype=value.dtype)
    earlier = torch.remainder(ahead, season) - season           # the step each reference value was read at
    reference = _symlog((reference_value - start[:, None] - slope[:, None] * earlier) / unit[:, None])
    scales += [torch.log(unit / window)[:, None], _symlog(slope * context / unit)[:, None]]
    line = start[:, None] + slope[:, None] * ahead
    return (past, reference, torch.cat(scales, dim=1)), unit, line


def to_values(mean: torch.Tensor, quantiles: torch.Tensor, unit: torch.Tensor, line: torch.Tensor,
              scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's mean (B, H) and quantiles (B, H, L) in the series' units: (unit * output + line) times the
    series' scale, the mean at least zero (a falling line may cross it; quantiles are clipped when sorted)."""
    mean = ((mean * unit[:, None] + line) * scale[:, None]).clamp(min=0)
    return mean, (quantiles * unit[:, None, None] + line[..., None]) * scale[:, None, None]


def n_static_scales(scaling: str, trend: str) -> int:
    """How many scale inputs `window_inputs` gives the network."""
    return 1 + (scaling == "window") + 2 * (trend == "window")


def mean_and_quantiles(out: torch.Tensor, positive: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A network's raw outputs (B, H, 1 + levels) as its mean (B, H; softplus when `positive`) and its
    quantiles (B, H, levels): the lowest, then positive increments, so quantiles never cross."""
    mean = nn.functional.softplus(out[..., 0]) if positive else out[..., 0]
    quantiles = torch.cat([out[..., 1:2], nn.functional.softplus(out[..., 2:])], dim=2).cumsum(dim=2)
    return mean, quantiles


def is_int(value: Any, low: int) -> bool:
    """`value` is an int (not a bool) of at least `low`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def is_number(value: Any) -> bool:
    """`value` is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_setting(owner: str, key: str, value: Any, ok: bool, allowed: str) -> None:
    """ValueError "OWNER: KEY VALUE is not allowed; allowed: ..." unless `ok` (the factory reports it as
    `forecaster.KEY`)."""
    if not ok:
        raise ValueError(f"{owner}: {key} {value!r} is not allowed; allowed: {allowed}")


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` torch CPU threads (unchanged when None), restoring the number after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(before)


class _Network(nn.Module):
    """Stacked LSTM encoder plus a dense head shared by all target steps (told apart by a step embedding)."""

    def __init__(self, n_encoder: int, n_decoder: int, cardinalities: list[int], hidden: int, layers: int,
                 dropout: float, max_horizon: int, n_levels: int, n_scales: int = 1, positive: bool = True) -> None:
        super().__init__()
        self.positive = positive  # a softplus mean (values); False: any sign (residuals from a trend line)
        self.embeddings = nn.ModuleList([nn.Embedding(card, min(8, card)) for card in cardinalities])
        # + log of the series' scale (and of the window's, relative to it; with a trend, its unit and rise)
        n_static = sum(e.embedding_dim for e in self.embeddings) + n_scales
        self.lstm = nn.LSTM(n_encoder + n_static, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.step = nn.Embedding(max_horizon, 8)
        self.head = nn.Sequential(
            nn.Linear(hidden + n_static + n_decoder + 1 + 8, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1 + n_levels))

    def forward(self, past: torch.Tensor, future: torch.Tensor, reference: torch.Tensor, codes: torch.Tensor,
                log_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled mean (B, H) and non-decreasing quantiles (B, H, levels) from the past (B, C, F), the known
        future (B, H, G), each step's value a season earlier (B, H), category codes (B, c) and log scales (B, s)."""
        static = torch.cat([emb(codes[:, j]) for j, emb in enumerate(self.embeddings)] + [log_scale], dim=1)
        context = past.shape[1]
        encoded, _ = self.lstm(torch.cat([past, static[:, None, :].expand(-1, context, -1)], dim=2))
        horizon = future.shape[1]
        state = torch.cat([encoded[:, -1], static], dim=1)[:, None, :].expand(-1, horizon, -1)
        steps = self.step.weight[:horizon][None].expand(past.shape[0], -1, -1)  # not len(): export keeps the batch free
        return mean_and_quantiles(self.head(torch.cat([state, future, reference[..., None], steps], dim=2)),
                                  self.positive)


class LSTMForecaster:
    """Global LSTM forecaster (see the module docstring); `predict(h)` for h <= `max_horizon`.

    Training samples windows from all series (never touching a series' leading
    NaN), minimises squared error on the mean plus pinball loss on the
    quantiles of scaled targets, and stops early on the last periods of every
    series (a time-based validation). With `warm_start`, a later `fit` on the
    same series and inputs continues from the current weights for
    `refit_epochs` epochs. `device="auto"` trains and predicts on CUDA when
    available. `threads` sets torch's CPU threads during fit and predict
    (None: torch's default); on a 2-core CPU shared with other work, 1 thread
    trained many times faster than 2. `scaling` is "window" (each window
    divided by the mean absolute value of its own context, DeepAR-style) or
    "series" (one scale per series over its whole history); `trend` is "none"
    or "window" (inputs, targets and outputs relative to a line through each
    window's context); see the module docstring. Every keyword is checked on
    creation: a bad value is one ValueError "LSTMForecaster: KEY VALUE is not
    allowed; allowed: ..." (a subclass's name in a subclass's), which the
    factory reports as `forecaster.KEY`.
    """

    name = "lstm"

    def __init__(self, *, context: int | None = None, max_horizon: int = 60, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.25, batch_size: int = 256, lr: float = 2e-3, max_epochs: int = 30,
                 windows_per_epoch: int = 8192, patience: int = 5, refit_epochs: int = 5, warm_start: bool = True,
                 levels: tuple[float, ...] = QUANTILE_LEVELS, seed: int = 0, device: str = "auto",
                 threads: int | None = None, scaling: str = "window", trend: str = "none",
                 verbose: bool = True) -> None:
        owner = type(self).__name__  # a subclass's errors name it (TransformerForecaster)

        def check(key: str, value: Any, ok: bool, allowed: str) -> None:
            check_setting(owner, key, value, ok, allowed)

        for key, value in (("max_horizon", max_horizon), ("hidden", hidden), ("layers", layers),
                           ("batch_size", batch_size), ("max_epochs", max_epochs),
                           ("windows_per_epoch", windows_per_epoch), ("patience", patience),
                           ("refit_epochs", refit_epochs)):
            check(key, value, is_int(value, 1), "an integer >= 1")
        for key, value in (("context", context), ("threads", threads)):
            check(key, value, value is None or is_int(value, 1), "null or an integer >= 1")
        check("seed", seed, is_int(seed, 0), "an integer >= 0")
        check("dropout", dropout, is_number(dropout) and 0 <= dropout < 1, "a number in [0, 1)")
        check("lr", lr, is_number(lr) and lr > 0, "a number > 0")
        check("levels", levels, isinstance(levels, (list, tuple)) and len(levels) > 0
              and all(is_number(q) and 0 < q < 1 for q in levels), "a non-empty list of numbers in (0, 1)")
        for key, value in (("warm_start", warm_start), ("verbose", verbose)):
            check(key, value, isinstance(value, bool), "true or false")
        check("scaling", scaling, scaling in SCALINGS, ", ".join(SCALINGS))
        check("trend", trend, trend in TRENDS, ", ".join(TRENDS))
        check("device", device, isinstance(device, str) and (device in ("auto", "cpu", "cuda")
                                                             or device.startswith("cuda:")),
              "auto, cpu, cuda or cuda:N")
        self.scaling, self.trend = scaling, trend
        self.context, self.max_horizon, self.hidden, self.layers = context, max_horizon, hidden, layers
        self.dropout, self.batch_size, self.lr, self.max_epochs = dropout, batch_size, lr, max_epochs
        self.windows_per_epoch, self.patience, self.refit_epochs = windows_per_epoch, patience, refit_epochs
        self.warm_start, self.seed, self.threads = warm_start, seed, threads
        self.levels = tuple(sorted(float(q) for q in levels))
        self.verbose = verbose
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        self.history: SeriesPanel | None = None
        self.network: _Network | None = None
        self.epochs_run = 0                 # epochs of the last fit
        self.losses: list[tuple[float, float]] = []  # (train, validation) loss of each epoch of the last fit

    # ---- features -------------------------------------------------------------------------------------------

    def _layout(self, history: SeriesPanel) -> tuple:
        """What the weights depend on: a refit with the same layout may continue from them."""
        cards = tuple((name, int(codes.max()) + 1 if len(codes) else 1) for name, codes in history.categories.items())
        return (history.ids, history.covariate_names, history.covariates.shape[2], cards, history.freq.name,
                self.levels, self.scaling, self.trend)

    def _features(self, history: SeriesPanel) -> dict[str, torch.Tensor]:
        """Per-step level inputs (n, T, 5: value, lag, rolling statistics, over the series' scale, not yet
        logged), known inputs (n, T + max_horizon, G), and the series-scaled values and targets."""
        arrays = input_arrays(history, self.max_horizon, self._normalisation())

        def tensor(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=self.device)

        return {"level": tensor(arrays["level"]), "known": tensor(arrays["known"]),
                "codes": tensor(arrays["codes"], torch.long), "log_scale": tensor(arrays["log_scale"]),
                "scale": tensor(arrays["scale"]), "value": tensor(arrays["value"]),
                "observed": tensor(arrays["observed"], torch.bool), "target": tensor(arrays["target"])}

    def _normalisation(self) -> Normalisation:
        """The input normalisation of the last fit (agents.forecasting.lstm_inputs)."""
        return Normalisation(cov_mean=self._cov_mean, cov_std=self._cov_std, scale_mean=float(self._scale_mean),
                             scale_std=float(self._scale_std), context=self._context, season=self._season)

    def _context_values(self, f: dict[str, torch.Tensor], rows: torch.Tensor,
                        origins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C) series-scaled values of each window's context [origin - context, origin) and whether each is
        observed (steps before the series' first period are not)."""
        back = origins[:, None] + torch.arange(-self._context, 0, device=self.device)
        index = back.clamp(min=0)
        return f["value"][rows[:, None], index], f["observed"][rows[:, None], index] & (back >= 0)

    def _window_scale(self, f: dict[str, torch.Tensor], rows: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """(B,) scale of each window relative to its series' scale: 1 with "series" scaling; with "window", the
        mean absolute observed value of its context [origin - context, origin), at least MIN_WINDOW_SCALE."""
        if self.scaling == "series":
            return torch.ones(len(rows), device=self.device)
        return window_scale(*self._context_values(f, rows, origins))

    def _batch(self, f: dict[str, torch.Tensor], rows: torch.Tensor, origins: torch.Tensor,
               horizon: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
        """Network inputs for windows ending at `origins` (first target step) of series `rows`, and the unit
        (B,) and line (B, horizon) that turn its outputs into series-scaled values (`window_inputs`)."""
        season = self._season
        back = (origins[:, None] + torch.arange(-self._context, 0, device=self.device)).clamp(min=0)
        ahead = origins[:, None] + torch.arange(horizon, device=self.device)
        # each target step's value one season (or the first whole number of seasons) before it, all in the past
        steps = torch.arange(horizon, device=self.device)
        earlier = origins[:, None] + steps % season - season
        value, observed = self._context_values(f, rows, origins)
        (level, reference, log_scale), unit, line = window_inputs(
            f["level"][rows[:, None], back], value, observed.float(), f["value"][rows[:, None], earlier.clamp(min=0)],
            f["log_scale"][rows][:, None], season, self.scaling, self.trend)
        past = torch.cat([level, f["known"][rows[:, None], back]], dim=2)
        return (past, f["known"][rows[:, None], ahead], reference, f["codes"][rows], log_scale), unit, line

    # ---- fitting --------------------------------------------------------------------------------------------

    def fit(self, history: SeriesPanel) -> None:
        """Train on all series of `history` (or continue training, see `warm_start`)."""
        if any(len(c) and c.min() < 0 for c in history.categories.values()):
            raise ValueError(f"{self.name}.fit: category codes must be >= 0")
        layout = self._layout(history)
        warm = self.warm_start and self.network is not None and layout == self._fitted_layout
        self.history = None  # a failed fit leaves nothing to predict from
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), _threads(self.threads):
            torch.manual_seed(self.seed)
            self._fit(history, layout, warm)
        self.history = history

    def _fit(self, history: SeriesPanel, layout: tuple, warm: bool) -> None:
        n, t = history.values.shape
        validation = min(self.max_horizon, max(1, t // 4))  # the last periods of every series
        if not warm:
            season = history.freq.season_length
            cov = history.covariates[:, :t].reshape(n * t, -1).astype(np.float64)
            self._cov_mean, std = cov.mean(axis=0), cov.std(axis=0)
            self._cov_std = np.where(std > 1e-6, std, 1.0)
            log_scale = np.log(series_scale(history.values))
            self._scale_mean, self._scale_std = log_scale.mean(), max(log_scale.std(), 1.0)
            self._season = max(season, 1)
            wanted = self.context or (56 if history.freq.name == "daily" else max(4 * season, 8))
            self._context = max(1, min(wanted, (t - validation) // 2))  # short histories: a shorter context
        context, horizon = self._context, self.max_horizon
        f = self._features(history)
        self._inputs = f  # predict starts right after this history

        # windows: origin o reads [o - context, o) and predicts [o, o + horizon); training targets end at t - validation
        first = np.argmax(np.isfinite(history.values), axis=1)  # first observation of each series
        first[~np.isfinite(history.values).any(axis=1)] = t
        origins = [np.arange(first[i] + context, t - validation) for i in range(n)]
        rows = np.repeat(np.arange(n), [len(o) for o in origins])
        origins = np.concatenate(origins)
        if not len(rows):
            raise ValueError(f"{self.name}.fit: no series has {context + validation + 1} observed periods "
                             f"(context {context} + validation {validation} + 1); give a longer history")
        train_target = f["target"].clone()
        train_target[:, t - validation:] = float("nan")
        train_target = torch.cat([train_target, torch.full((n, horizon), float("nan"), device=self.device)], dim=1)
        val_target = torch.cat([f["target"], torch.full((n, horizon), float("nan"), device=self.device)], dim=1)
        val_rows = torch.as_tensor(np.flatnonzero(first + context <= t - validation), device=self.device)
        val_origins = torch.full_like(val_rows, t - validation)

        if not warm:
            cards = [card for _, card in layout[3]]
            self.network = self._new_network(f["level"].shape[2] + f["known"].shape[2], f["known"].shape[2],
                                             cards).to(self.device)
            self._fitted_layout = layout
        network = self.network
        optimiser = torch.optim.Adam(network.parameters(), lr=self.lr)
        levels = torch.tensor(self.levels, device=self.device)
        rng = np.random.default_rng(self.seed)
        epochs = self.refit_epochs if warm else self.max_epochs
        # the weights to beat: the current ones (a warm start may not improve on them), then the best epoch's
        best = self._validate(network, f, val_target, val_rows, val_origins, levels)
        best_state, waited = copy.deepcopy(network.state_dict()), 0
        self.losses = []
        for epoch in range(epochs):
            started = time.perf_counter()
            network.train()
            picks = rng.integers(0, len(rows), size=self.windows_per_epoch)
            total = 0.0
            for b in range(0, len(picks), self.batch_size):
                pick = picks[b:b + self.batch_size]
                r = torch.as_tensor(rows[pick], device=self.device)
                o = torch.as_tensor(origins[pick], device=self.device)
                loss = self._loss(network, f, train_target, r, o, levels)
                optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                optimiser.step()
                total += loss.item() * len(pick)
            train_loss = total / len(picks)
            val_loss = self._validate(network, f, val_target, val_rows, val_origins, levels)
            self.losses.append((train_loss, val_loss))
            if self.verbose:  # a warm refit (weekly, in live runs) logs at debug level only
                log.log(logging.DEBUG if warm else logging.INFO, "%s epoch %d/%d: train loss %.4f, validation "
                        "loss %.4f, %.1f s", self.name, epoch + 1, epochs, train_loss, val_loss,
                        time.perf_counter() - started)
            if val_loss < best - 1e-6 or not np.isfinite(best):
                best, best_state, waited = val_loss, copy.deepcopy(network.state_dict()), 0
            else:
                waited += 1
                if waited >= self.patience:
                    break
        self.epochs_run = len(self.losses)
        network.load_state_dict(best_state)
        network.eval()

    def _new_network(self, n_encoder: int, n_decoder: int, cardinalities: list[int]) -> nn.Module:
        """A fresh network for `n_encoder` context and `n_decoder` known-future inputs per step and these
        category cardinalities, with `_Network`'s forward signature (a subclass may build another kind)."""
        return _Network(n_encoder, n_decoder, cardinalities, self.hidden, self.layers, self.dropout,
                        self.max_horizon, len(self.levels), n_scales=n_static_scales(self.scaling, self.trend),
                        positive=self.trend == "none")

    def _loss(self, network: _Network, f: dict[str, torch.Tensor], target: torch.Tensor, rows: torch.Tensor,
              origins: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Squared error of the mean plus the pinball loss of the quantiles, over observed target steps.

        The network predicts in units of each window's scale (with a trend: residuals from the window's line,
        in units of its residual scale); its outputs are turned back into units of the series' scale before the
        loss (rather than the targets divided), so a window at a low level does not weigh more than one at a
        high level: on the twin's demand that was the better choice.
        """
        inputs, unit, line = self._batch(f, rows, origins, self.max_horizon)
        mean, quantiles = network(*inputs)
        mean, quantiles = mean * unit[:, None] + line, quantiles * unit[:, None, None] + line[..., None]
        y = target[rows[:, None], origins[:, None] + torch.arange(self.max_horizon, device=self.device)]
        observed = torch.isfinite(y)
        y = torch.nan_to_num(y)
        error = y[..., None] - quantiles
        pinball = torch.maximum(levels * error, (levels - 1) * error).sum(dim=2)
        per_step = (mean - y) ** 2 + pinball
        return (per_step * observed).sum() / observed.sum().clamp(min=1)

    def _validate(self, network: _Network, f: dict[str, torch.Tensor], target: torch.Tensor, rows: torch.Tensor,
                  origins: torch.Tensor, levels: torch.Tensor) -> float:
        """The loss on the validation windows (NaN when there are none)."""
        if not len(rows):
            return float("nan")
        network.eval()
        with torch.no_grad():
            return self._loss(network, f, target, rows, origins, levels).item()

    # ---- prediction -----------------------------------------------------------------------------------------

    def predict(self, horizon: int) -> Forecast:
        """Mean and quantiles of the `horizon` periods after the fitted history, in one batched forward pass."""
        history = check_horizon(self.name, horizon, self.history, needs_covariates=True)
        self._check_horizon(horizon)
        return self._forecast(self._inputs, history.n, history.length, horizon)

    def predict_from(self, history: SeriesPanel, horizon: int) -> Forecast:
        """Mean and quantiles of the `horizon` periods after another `history` (any series of the same
        frequency, covariates and category names as the fitted one), with the fitted weights and
        normalisation: no training. `predict_from(fitted history, h)` equals `predict(h)`."""
        if self.network is None:
            raise RuntimeError(f"{self.name}.predict_from: call fit(history) first")
        check_horizon(self.name, horizon, history, needs_covariates=True)
        self._check_horizon(horizon)
        self._check_compatible(history)
        return self._forecast(self._features(history), history.n, history.length, horizon)

    def _check_horizon(self, horizon: int) -> None:
        if horizon > self.max_horizon:
            raise ValueError(f"{self.name}.predict: horizon {horizon} is over max_horizon {self.max_horizon}; "
                             f"allowed: 1..{self.max_horizon} (set max_horizon when creating the forecaster)")

    def _check_compatible(self, history: SeriesPanel) -> None:
        """ValueError unless `history` has the fitted frequency, covariates and categories (codes in range)."""
        _, names, _, cards, freq, *_ = self._fitted_layout
        if history.freq.name != freq:
            raise ValueError(f"{self.name}: the history is {history.freq.name}; allowed: {freq} (as fitted)")
        if tuple(history.covariate_names) != tuple(names):
            raise ValueError(f"{self.name}: covariates {list(history.covariate_names)}; allowed: {list(names)} "
                             f"(as fitted, in that order)")
        if [name for name, _ in cards] != list(history.categories):
            raise ValueError(f"{self.name}: categories {list(history.categories)}; allowed: "
                             f"{[name for name, _ in cards]} (as fitted, in that order)")
        for name, card in cards:
            codes = history.categories[name]
            if len(codes) and (codes.min() < 0 or codes.max() >= card):
                raise ValueError(f"{self.name}: category {name!r} has codes outside 0..{card - 1} (the fitted ones)")

    def _forecast(self, f: dict[str, torch.Tensor], n: int, t: int, horizon: int) -> Forecast:
        """One batched forward pass over the windows right after the last of `t` periods of `n` series."""
        rows = torch.arange(n, device=self.device)
        origins = torch.full((n,), t, device=self.device)
        self.network.eval()
        with torch.no_grad(), _threads(self.threads):
            inputs, unit, line = self._batch(f, rows, origins, horizon)
            mean, quantiles = to_values(*self.network(*inputs), unit, line, f["scale"])
        mean = mean.cpu().double().numpy()
        quantiles = sorted_quantiles(mean, quantiles.cpu().double().numpy() - mean[..., None])
        return Forecast(mean=mean, quantiles=quantiles, levels=self.levels)

    # ---- export ---------------------------------------------------------------------------------------------

    def normalisation(self) -> Normalisation:
        """The fitted input normalisation (what a saved model needs besides the weights)."""
        if self.network is None:
            raise RuntimeError(f"{self.name}.normalisation: call fit(history) first")
        return self._normalisation()

    def export_onnx(self, path: str, history: SeriesPanel) -> Forecast:
        """Write the serving model to `path` as ONNX and return torch's forecast that it must reproduce.

        The model (`_Serving`: window scale, network, scaling back) takes the inputs lstm_inputs.SERVING_INPUTS
        that `lstm_inputs.last_window` gathers for the window right after a history, with a dynamic batch axis
        and `max_horizon` steps, and gives "mean" (B, max_horizon) and "quantiles" (B, max_horizon, levels),
        unsorted. The forecast returned is this forecaster's own (`predict_from`'s path, in torch) for all
        `max_horizon` steps after `history` (covariates past the known ones read as zero, as in the model).
        """
        if self.network is None:
            raise RuntimeError(f"{self.name}.export_onnx: call fit(history) first")
        self._check_compatible(history)
        norm = self._normalisation()
        example = last_window(input_arrays(history, self.max_horizon, norm), norm, self.max_horizon)
        rows = np.arange(2) % max(history.n, 1)  # two rows: torch.export specialises a dimension of size 0 or 1
        args = tuple(torch.as_tensor(example[name][rows]) for name in SERVING_INPUTS)
        serving = _Serving(copy.deepcopy(self.network).cpu().eval(), self.scaling, self.trend, self._season)
        batch = torch.export.Dim("batch")
        # the exporter logs the optional libraries it skips, its optimisers (onnxscript, onnx_ir) the rewrites they
        # try and every constant they merge
        quiet = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
        levels = [logger.level for logger in quiet]
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(serving, args, str(path), input_names=list(SERVING_INPUTS),
                                  output_names=list(SERVING_OUTPUTS),
                                  dynamic_shapes=tuple({0: batch} for _ in SERVING_INPUTS), dynamo=True,
                                  external_data=False, verbose=False)
        finally:
            for logger, level in zip(quiet, levels, strict=True):
                logger.setLevel(level)
        return self._forecast(self._features(history), history.n, history.length, self.max_horizon)


class _Serving(nn.Module):
    """The forecast window's arithmetic after the gather (lstm_inputs.last_window): the window's unit and line
    from its context (`window_inputs`), the network, and the outputs back in the series' units (`to_values`);
    the same functions as LSTMForecaster._batch and _forecast."""

    def __init__(self, network: _Network, scaling: str, trend: str, season: int) -> None:
        super().__init__()
        self.network, self.scaling, self.trend, self.season = network, scaling, trend, season

    def forward(self, level: torch.Tensor, past_known: torch.Tensor, context_value: torch.Tensor,
                context_observed: torch.Tensor, future_known: torch.Tensor, reference_value: torch.Tensor,
                codes: torch.Tensor, log_scale: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (level, reference, log_scale), unit, line = window_inputs(
            level, context_value, context_observed, reference_value, log_scale, self.season, self.scaling,
            self.trend)
        past = torch.cat([level, past_known], dim=2)
        mean, quantiles = self.network(past, future_known, reference, codes, log_scale)
        return to_values(mean, quantiles, unit, line, scale)
