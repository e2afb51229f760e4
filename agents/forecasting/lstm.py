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
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

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
)

log = logging.getLogger("agents.forecasting.lstm")

SCALINGS = ("window", "series")


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
                 dropout: float, max_horizon: int, n_levels: int, n_scales: int = 1) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList([nn.Embedding(card, min(8, card)) for card in cardinalities])
        # + log of the series' scale (and of the window's, relative to it)
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
        out = self.head(torch.cat([state, future, reference[..., None], steps], dim=2))
        mean = nn.functional.softplus(out[..., 0])
        # the lowest quantile, then positive increments: quantiles never cross
        quantiles = torch.cat([out[..., 1:2], nn.functional.softplus(out[..., 2:])], dim=2).cumsum(dim=2)
        return mean, quantiles


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
    "series" (one scale per series over its whole history); see the module
    docstring.
    """

    name = "lstm"

    def __init__(self, *, context: int | None = None, max_horizon: int = 60, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.25, batch_size: int = 256, lr: float = 2e-3, max_epochs: int = 30,
                 windows_per_epoch: int = 8192, patience: int = 5, refit_epochs: int = 5, warm_start: bool = True,
                 levels: tuple[float, ...] = QUANTILE_LEVELS, seed: int = 0, device: str = "auto",
                 threads: int | None = None, scaling: str = "window", verbose: bool = True) -> None:
        if scaling not in SCALINGS:
            raise ValueError(f"LSTMForecaster: scaling {scaling!r} is not allowed; allowed: {', '.join(SCALINGS)}")
        self.scaling = scaling
        self.context, self.max_horizon, self.hidden, self.layers = context, max_horizon, hidden, layers
        self.dropout, self.batch_size, self.lr, self.max_epochs = dropout, batch_size, lr, max_epochs
        self.windows_per_epoch, self.patience, self.refit_epochs = windows_per_epoch, patience, refit_epochs
        self.warm_start, self.levels, self.seed, self.threads = warm_start, tuple(sorted(levels)), seed, threads
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
                self.levels, self.scaling)

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

    def _window_scale(self, f: dict[str, torch.Tensor], rows: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """(B,) scale of each window relative to its series' scale: 1 with "series" scaling; with "window", the
        mean absolute observed value of its context [origin - context, origin), at least MIN_WINDOW_SCALE."""
        if self.scaling == "series":
            return torch.ones(len(rows), device=self.device)
        back = origins[:, None] + torch.arange(-self._context, 0, device=self.device)
        index = back.clamp(min=0)
        observed = f["observed"][rows[:, None], index] & (back >= 0)
        total = (f["value"][rows[:, None], index].abs() * observed).sum(dim=1)
        return (total / observed.sum(dim=1).clamp(min=1)).clamp(min=MIN_WINDOW_SCALE)

    def _batch(self, f: dict[str, torch.Tensor], rows: torch.Tensor, origins: torch.Tensor,
               horizon: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Network inputs for windows ending at `origins` (first target step) of series `rows`, and the windows'
        scales relative to their series' (B,)."""
        season = self._season
        window = self._window_scale(f, rows, origins)
        back = (origins[:, None] + torch.arange(-self._context, 0, device=self.device)).clamp(min=0)
        ahead = origins[:, None] + torch.arange(horizon, device=self.device)
        past = torch.cat([torch.log1p(f["level"][rows[:, None], back] / window[:, None, None]),
                          f["known"][rows[:, None], back]], dim=2)
        # each target step's value one season (or the first whole number of seasons) before it, all in the past
        steps = torch.arange(horizon, device=self.device)
        earlier = origins[:, None] + steps % season - season
        reference = torch.log1p(f["value"][rows[:, None], earlier.clamp(min=0)] / window[:, None])
        log_scale = f["log_scale"][rows][:, None]
        if self.scaling == "window":
            log_scale = torch.cat([log_scale, torch.log(window)[:, None]], dim=1)
        return (past, f["known"][rows[:, None], ahead], reference, f["codes"][rows], log_scale), window

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
            self.network = _Network(f["level"].shape[2] + f["known"].shape[2], f["known"].shape[2], cards,
                                    self.hidden, self.layers, self.dropout, horizon, len(self.levels),
                                    n_scales=2 if self.scaling == "window" else 1).to(self.device)
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

    def _loss(self, network: _Network, f: dict[str, torch.Tensor], target: torch.Tensor, rows: torch.Tensor,
              origins: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Squared error of the mean plus the pinball loss of the quantiles, over observed target steps.

        The network predicts in units of each window's scale; its outputs are multiplied back to units of the
        series' scale before the loss (rather than the targets divided), so a window at a low level does not
        weigh more than one at a high level: on the twin's demand that was the better choice.
        """
        inputs, window = self._batch(f, rows, origins, self.max_horizon)
        mean, quantiles = network(*inputs)
        mean, quantiles = mean * window[:, None], quantiles * window[:, None, None]
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
        _, names, _, cards, freq, _, _ = self._fitted_layout
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
            inputs, window = self._batch(f, rows, origins, horizon)
            mean, quantiles = self.network(*inputs)
            scale = f["scale"] * window
            mean, quantiles = mean * scale[:, None], quantiles * scale[:, None, None]
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
        serving = _Serving(copy.deepcopy(self.network).cpu().eval(), self.scaling)
        batch = torch.export.Dim("batch")
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        exporter_log.setLevel(logging.ERROR)  # the exporter logs the optional libraries it skips
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(serving, args, str(path), input_names=list(SERVING_INPUTS),
                                  output_names=list(SERVING_OUTPUTS),
                                  dynamic_shapes=tuple({0: batch} for _ in SERVING_INPUTS), dynamo=True,
                                  external_data=False, verbose=False)
        finally:
            exporter_log.setLevel(level)
        return self._forecast(self._features(history), history.n, history.length, self.max_horizon)


class _Serving(nn.Module):
    """The forecast window's arithmetic after the gather (lstm_inputs.last_window): the window's scale from its
    context, log1p of the level inputs and the reference over it, the network, and the outputs times the
    series' and the window's scale; the same operations as LSTMForecaster._batch and _forecast."""

    def __init__(self, network: _Network, scaling: str) -> None:
        super().__init__()
        self.network, self.scaling = network, scaling

    def forward(self, level: torch.Tensor, past_known: torch.Tensor, context_value: torch.Tensor,
                context_observed: torch.Tensor, future_known: torch.Tensor, reference_value: torch.Tensor,
                codes: torch.Tensor, log_scale: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scaling == "series":
            window = torch.ones_like(scale)
        else:
            total = (context_value.abs() * context_observed).sum(dim=1)
            window = (total / context_observed.sum(dim=1).clamp(min=1)).clamp(min=MIN_WINDOW_SCALE)
        past = torch.cat([torch.log1p(level / window[:, None, None]), past_known], dim=2)
        reference = torch.log1p(reference_value / window[:, None])
        if self.scaling == "window":
            log_scale = torch.cat([log_scale, torch.log(window)[:, None]], dim=1)
        mean, quantiles = self.network(past, future_known, reference, codes, log_scale)
        factor = scale * window
        return mean * factor[:, None], quantiles * factor[:, None, None]
