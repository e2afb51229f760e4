"""Per-series model selection (`forecaster=auto`): rolling-origin validation inside the fit history picks, for each
series, the candidate forecaster that did best on that series' own recent past (or weights them).

At fit time every candidate is backtested (`backtest.backtest`, as `Conformal` backtests its base) on `origins`
rolling origins inside the history it was given, `step` periods apart, the last one `max_horizon` periods before the
history's end, so the last validation window ends with the history and nothing after it is read. Each candidate gets
one score per series: its error over every validation origin and step ahead (`metric`: MASE, each origin's absolute
errors divided by the series' in-sample seasonal-naive MAE before that origin, as the backtests score; or MAE,
RMSE; "auto", the default: MAE where the panel's series share one unit (`SeriesPanel.shared_unit`: the twin's and an
ERP's units sold), MASE otherwise). The metric sets how the candidate best over all series is found: the mean of
per-series MAEs is the panel's MAE, the busiest series weighing most, as a panel in units sold is judged (on the
twin the log-linear regression is ahead on the busy series and level on the rest, so the equal weights of MASE
tie it with gradient boosting, README); MASE weighs every series alike, as series in different units need.
`mode="select"` gives each series the candidate with the lowest score if that score is more than `margin`
(relative) below the score of the candidate best over all series (the `fallback`, lowest mean score), and the
fallback otherwise (also to a series without a score, e.g. one that starts inside the validation windows): with few
validation windows a series' own ranking of near-equal candidates is noise, and on the twin's panel following it
(margin 0, 2 validation origins) cost 3-4% MASE against the best single candidate, where the default 0.2 margin and 6
validation origins cost nothing measurable (auto / best 1.00, README). `margin` holds for `origins` validation
windows; where a short history fits fewer, k, a series needs more to leave the fallback, its score below
(1 - margin) ** sqrt(origins / k) of the fallback's (0.8 at 6 of 6 windows, 0.73 at 3, 0.58 at 1): the noise in
the log of a mean of k window scores falls as 1 / sqrt(k). `shared_unit_candidates` (in the conf's and the
factory's default glm, a Poisson regression of counts on the calendar and the covariates; none in the class's) are
validated only on panels whose series share one unit: on the twin's units sold glm is the well-specified model, on
a file's series a static regression without lags that one noisy window can still favour (macrodata's realinv, 21%
below ARIMA in validation and far above it after, README). `mode="weight"` averages the candidates' means and
quantiles with per-series weights proportional to 1 / score (only each series' `top` best,
if set). The candidates needed are then refitted on the whole history, and `predict` takes each series' rows from
its own candidate (mean and quantiles). `choices` (series id -> candidate) and `validation_scores` (a table series x
candidate) say what was chosen and why; `choices_frame()` is the two as one table.

With `segments` (the last step of each segment of the horizon, e.g. [1, 3, 5]; "auto": the backtest's default
horizons of the frequency) each segment gets its own choice per series, scored on the validation errors of its
steps only: one candidate may be best one step ahead (ARIMA on sunspots, the last value on cigar) and another
further out (gradient boosting on both). `choices` then names each segment's choice ("arima@1|gradient_boosting@2-5")
and `choices_frame()` has one row per series and segment.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from agents.forecasting.backtest import DEFAULT_HORIZONS, BacktestPlan, backtest
from agents.forecasting.base import PERIODS_PER_YEAR, Forecast, Forecaster, SeriesPanel, check_horizon
from agents.forecasting.features import series_scale

log = logging.getLogger("agents.forecasting.auto")

DEFAULT_CANDIDATES = ("seasonal_naive", "ets", "arima", "croston", "tsb", "adida", "imapa", "gradient_boosting")
DEFAULT_SHARED_UNIT_CANDIDATES = ("glm",)  # a Poisson regression: a model of counts, for panels of units sold
METRICS = ("auto", "mase", "mae", "rmse")
MODES = ("select", "weight")


def _label(candidate: object) -> str:
    """A candidate's name: its `name` attribute (a class or an instance), else its repr."""
    return str(getattr(candidate, "name", None) or getattr(candidate, "__name__", None) or candidate)


def free_label(label: str, taken: Mapping[str, object]) -> str:
    """`label`, or where it is taken `label_k` for the first free k from len(taken) up: how auto labels a
    candidate named twice (its own lists and the factory's configs alike)."""
    if label not in taken:
        return label
    k = len(taken)
    while f"{label}_{k}" in taken:
        k += 1
    return f"{label}_{k}"


def _builders(candidates: object, key: str, allow_empty: bool = False) -> dict[str, Callable[[], Forecaster]]:
    """label -> builder from a mapping, or from a sequence of builders labelled by their `name` (a repeated name
    numbered); ValueError naming `key` for anything else."""
    if isinstance(candidates, Mapping):
        builders = dict(candidates)
    elif isinstance(candidates, Sequence) and not isinstance(candidates, str):
        builders = {}
        for candidate in candidates:
            label = _label(candidate)
            builders[free_label(label, builders)] = candidate
    else:
        raise ValueError(f"Auto: {key} {candidates!r} is not allowed; allowed: a list of forecasters")
    if not (builders or allow_empty) or not all(callable(b) for b in builders.values()):
        raise ValueError(f"Auto: {key} {candidates!r} is not allowed; allowed: "
                         f"{'a list of forecasters' if allow_empty else 'one or more forecasters'}")
    return builders


class Auto:
    """The best candidate per series by rolling-origin validation inside the fit history (or a weighted mix).

    `candidates`: a mapping label -> forecaster builder (a class or a function returning a fresh forecaster), or
    a sequence of builders labelled by their `name`; `shared_unit_candidates` (the same forms) join them on a panel
    whose series share one unit (`SeriesPanel.shared_unit`), and only there. `origins` validation origins, `step`
    periods apart (default `max_horizon`), the last `max_horizon` periods before the history's end (default: the
    longest default backtest horizon of the frequency); origins that would leave less than max(2 seasons, 8)
    periods of history are dropped (an error if none is left), and on daily, weekly and hourly data those that
    would leave less than a year where at least one leaves a year (`plan`). `metric`: "mase", "mae" or "rmse" per
    series; "auto": "mae" on a panel whose series share one unit, else "mase". `mode`: "select" (`margin`: how
    much better, relative, a series' own best must score than the candidate best over all series to replace it, at
    `origins` validation windows, more where fewer fit; 0: always its own best) or "weight" (`top`: only each
    series' `top` best candidates weighted; None: all). A candidate that raises while it is validated is logged
    and left out.
    """

    name = "auto"

    def __init__(self, candidates: Mapping[str, Callable[[], Forecaster]] | Sequence[Callable[[], Forecaster]],
                 origins: int = 6, step: int | None = None, max_horizon: int | None = None, metric: str = "auto",
                 mode: str = "select", top: int | None = None, margin: float = 0.2,
                 segments: str | Sequence[int] | None = None,
                 shared_unit_candidates: Mapping[str, Callable[[], Forecaster]] | Sequence[Callable[[], Forecaster]]
                 = ()) -> None:
        builders = _builders(candidates, "candidates")
        unit_builders = _builders(shared_unit_candidates, "shared_unit_candidates", allow_empty=True)
        if isinstance(origins, bool) or not isinstance(origins, int) or origins < 1:
            raise ValueError(f"Auto: origins {origins!r} is not allowed; allowed: an integer >= 1")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
            raise ValueError(f"Auto: step {step!r} is not allowed; allowed: an integer >= 1 or null")
        if max_horizon is not None and (isinstance(max_horizon, bool) or not isinstance(max_horizon, int)
                                        or max_horizon < 1):
            raise ValueError(f"Auto: max_horizon {max_horizon!r} is not allowed; allowed: an integer >= 1 or null")
        if metric not in METRICS:
            raise ValueError(f"Auto: metric {metric!r} is not allowed; allowed: {', '.join(map(repr, METRICS))}")
        if mode not in MODES:
            raise ValueError(f"Auto: mode {mode!r} is not allowed; allowed: {', '.join(map(repr, MODES))}")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
            raise ValueError(f"Auto: top {top!r} is not allowed; allowed: an integer >= 1 or null")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
            raise ValueError(f"Auto: margin {margin!r} is not allowed; allowed: a number in [0, 1)")
        if not (segments is None or segments == "auto" or (
                isinstance(segments, Sequence) and not isinstance(segments, str) and len(segments) > 0
                and all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in segments)
                and all(a < b for a, b in zip(segments, segments[1:])))):
            raise ValueError(f"Auto: segments {segments!r} is not allowed; allowed: null, auto or increasing "
                             f"integers >= 1 (the last step of each segment)")
        self.candidates = builders
        self.shared_unit_candidates = unit_builders
        self.origins = origins
        self.step = step
        self.max_horizon = max_horizon
        self.metric = metric
        self.fitted_metric: str | None = None  # `metric` as resolved for the history fitted ("auto": mae or mase)
        self.mode = mode
        self.top = top
        self.margin = float(margin)
        self.segments = segments if segments is None or segments == "auto" else tuple(segments)
        self.segment_ends: tuple[int, ...] = ()  # the last step of each segment, as fitted
        self.segment_scores: list[pd.DataFrame] = []  # per segment: series x candidate
        self.segment_weights: np.ndarray | None = None  # (segments, n, candidates)
        self.validation_origins: tuple[int, ...] = ()
        self.validation_scores = pd.DataFrame()
        self.choices: dict[str, str] = {}
        self.fallback: str | None = None
        self.weights: np.ndarray | None = None  # (n, candidates) per-series weights over all steps; one-hot when
        # selecting (with several segments what predict uses is `segment_weights`)
        self._builders: dict[str, Callable[[], Forecaster]] = {}  # the candidates of the history fitted
        self._models: dict[str, Forecaster] = {}
        self._labels: list[str] = []
        self._history: SeriesPanel | None = None

    def plan(self, history: SeriesPanel) -> BacktestPlan:
        """The validation origins inside `history`: up to `origins` of them, `step` apart, the last window ending
        with the history, each leaving max(2 seasons, 8) periods before it, and a whole year where the history
        has room for one such origin; ValueError if none fits."""
        horizon = self.max_horizon or DEFAULT_HORIZONS[history.freq.name][-1]
        step = self.step or horizon
        min_train = max(2 * history.freq.season_length, 8)
        # the fit being chosen for sees the yearly cycle if the history holds one; a candidate judged on windows
        # whose histories do not (daily data 190 days in) is judged on a problem the final fit does not have. The
        # price: a history just over a year and a horizon long keeps one validation window, where a day less
        # kept `origins` (fewer windows, noisier choices, but on the problem the fit has)
        year = math.ceil(PERIODS_PER_YEAR.get(history.freq.name, 1))
        if history.length - horizon >= year:
            min_train = max(min_train, year)
        fits = (history.length - horizon - min_train) // step + 1
        if fits < 1:
            raise ValueError(f"Auto: a history of {history.length} periods is too short for a validation origin "
                             f"with max_horizon {horizon} and {min_train} periods before it; allowed: a smaller "
                             f"max_horizon or a longer history")
        return BacktestPlan.of(history, (horizon,), min(self.origins, fits), step, min_train)

    def validate(self, history: SeriesPanel) -> pd.DataFrame:
        """Scores (series x candidate) of every candidate backtested on the validation origins inside `history`
        (agents.forecasting.backtest, as experiments.forecast scores forecasters), over every step ahead; with
        `segments`, `segment_scores` gets the same table per segment, over its steps only."""
        plan = self.plan(history)
        horizon = plan.horizons[-1]
        ends = self._segment_ends(history, horizon)
        metric = self.metric_for(history)
        builders = self.candidates_for(history)
        errors = {}
        for label, build in builders.items():
            try:
                key = f"auto validation, {label}"  # how the backtest's progress lines name it
                result = backtest(history, {key: build}, plan)
            except Exception as error:  # noqa: BLE001 - a candidate that cannot fit this history is left out
                log.warning("auto: candidate %s failed in validation (%s: %s); left out", label,
                            type(error).__name__, error)
                continue
            error = np.abs(result.actual - result.runs[key].mean)  # (origins, n, horizon)
            if metric == "mase":  # each origin's in-sample seasonal naive MAE (mean absolute value if flat)
                flat = np.stack([series_scale(history.values[:, :o]) for o in plan.origins])
                error = error / np.where(np.isfinite(result.scale), result.scale, flat)[..., None]
            elif metric == "rmse":
                error = error ** 2
            errors[label] = error
        if not errors:
            raise ValueError("Auto: every candidate failed in validation")
        self.validation_origins = plan.origins
        self.segment_ends = ends
        self.fitted_metric = metric
        self._builders = builders
        starts = (0,) + ends[:-1]
        self.segment_scores = [self._scores(history, errors, slice(a, b), metric) for a, b in zip(starts, ends)]
        return self.segment_scores[0] if len(ends) == 1 else self._scores(history, errors, slice(0, horizon), metric)

    def candidates_for(self, history: SeriesPanel) -> dict[str, Callable[[], Forecaster]]:
        """The candidates validated on `history`: `candidates`, and where its series share one unit those of
        `shared_unit_candidates` that `candidates` does not already name (glm listed in both: validated once)."""
        builders = dict(self.candidates)
        if history.shared_unit:
            builders.update({label: build for label, build in self.shared_unit_candidates.items()
                             if label not in builders})
        return builders

    def metric_for(self, history: SeriesPanel) -> str:
        """The per-series validation metric on `history`: `metric`, or for "auto" MAE where the series share one
        unit (their errors may be summed, the busiest weighing most) and MASE where they may not."""
        if self.metric != "auto":
            return self.metric
        return "mae" if history.shared_unit else "mase"

    def required_ratio(self, windows: int | None = None) -> float:
        """How far below the fallback's score a series' own best must be to replace it: 1 - margin at `origins`
        validation windows, (1 - margin) ** sqrt(origins / k) at k fewer (`windows`; default: as many as the last
        fit validated on, else `origins`). k counts the panel's windows: a series that starts inside some of them
        is held to the panel's ratio."""
        windows = windows or len(self.validation_origins) or self.origins
        return (1 - self.margin) ** math.sqrt(max(self.origins / windows, 1.0))

    def segment_labels(self) -> list[str]:
        """The fitted segments' steps as text, 1-based: "1", "2-3", "4-5"."""
        starts = (1,) + tuple(e + 1 for e in self.segment_ends[:-1])
        return [f"{a}-{b}" if b > a else str(a) for a, b in zip(starts, self.segment_ends)]

    def _segment_ends(self, history: SeriesPanel, horizon: int) -> tuple[int, ...]:
        """The last step of each segment, within the validated `horizon` (one segment without `segments`)."""
        if self.segments is None:
            return (horizon,)
        ends = DEFAULT_HORIZONS[history.freq.name] if self.segments == "auto" else self.segments
        return tuple(e for e in ends if e < horizon) + (horizon,)

    def _scores(self, history: SeriesPanel, errors: dict[str, np.ndarray], steps: slice,
                metric: str) -> pd.DataFrame:
        """(series x candidate) mean validation error over every origin and the `steps` ahead (root for rmse)."""
        scores = {}
        for label, error in errors.items():
            error = error[..., steps]
            finite = np.isfinite(error)
            with np.errstate(all="ignore"):  # a series without a finite error: NaN
                per_series = np.where(finite, error, 0.0).sum(axis=(0, 2)) / finite.sum(axis=(0, 2))
            scores[label] = np.sqrt(per_series) if metric == "rmse" else per_series
        return pd.DataFrame(scores, index=pd.Index(history.ids, name="unique_id"))

    def choose(self, scores: pd.DataFrame, windows: int | None = None) -> np.ndarray:
        """(series, candidates) weights from validation `scores` (series x candidate) over `windows` validation
        windows (`required_ratio`'s default if None): one-hot when selecting; sets `fallback`, the candidate with
        the lowest mean score over all series."""
        table = scores.to_numpy(dtype=float)
        with np.errstate(all="ignore"):
            pooled = np.array([np.nanmean(c) if np.isfinite(c).any() else np.inf for c in table.T])
        best = int(np.argmin(pooled))
        self.fallback = str(scores.columns[best])
        scored = np.isfinite(table).any(axis=1)
        if self.mode == "select":
            own = np.argmin(np.where(np.isfinite(table), table, np.inf), axis=1)
            # a series leaves the candidate best over all series only for one clearly better on its own history
            clearly = table[np.arange(len(own)), own] < self.required_ratio(windows) * table[:, best]
            index = np.where(scored & (clearly | ~np.isfinite(table[:, best])), own, best)
            return np.eye(len(pooled))[index]
        inverse = np.where(np.isfinite(table), 1 / np.maximum(table, 1e-9), 0.0)
        if self.top is not None and self.top < len(pooled):  # only each series' `top` best candidates
            kth = -np.sort(-inverse, axis=1)[:, self.top - 1: self.top]
            inverse = np.where(inverse >= kth, inverse, 0.0)
        inverse[~scored] = np.eye(len(pooled))[best]
        return inverse / inverse.sum(axis=1, keepdims=True)

    def fit(self, history: SeriesPanel) -> None:
        """Validate every candidate inside `history`, choose (or weight) per series (and segment), refit what is
        needed on all of it."""
        scores = self.validate(history)
        labels = list(scores.columns)
        self.segment_weights = np.stack([self.choose(table[labels]) for table in self.segment_scores])
        self.weights = self.choose(scores) if len(self.segment_ends) > 1 else self.segment_weights[0]
        self.validation_scores = scores
        chosen = np.argmax(self.segment_weights, axis=2)  # (segments, n)
        steps = self.segment_labels()
        self.choices = {}
        for i, sid in enumerate(history.ids):
            picks = [labels[k] for k in chosen[:, i]]
            self.choices[sid] = picks[0] if len(set(picks)) == 1 else "|".join(
                f"{pick}@{where}" for pick, where in zip(picks, steps))
        self._models = {}
        for j, label in enumerate(labels):
            if self.segment_weights[:, :, j].any():
                model = self._builders[label]()
                model.fit(history)
                self._models[label] = model
        self._labels = labels
        self._history = history
        log.info("auto: %d series, validation origins %s, metric %s%s; chosen %s", history.n,
                 list(self.validation_origins), self.fitted_metric,
                 f", a series' own best needs {1 - self.required_ratio():.0%} below the fallback"
                 if self.mode == "select" and len(self.validation_origins) < self.origins else "",
                 pd.Series(self.choices).value_counts().to_dict())

    def predict(self, horizon: int) -> Forecast:
        """Each series' rows of its chosen candidate's forecast (or the weighted average of the candidates'), per
        segment of the horizon; steps past the last segment take its choice."""
        history = check_horizon(self.name, horizon, self._history)
        segment = np.searchsorted(np.asarray(self.segment_ends), np.arange(1, horizon + 1))
        segment = np.minimum(segment, len(self.segment_ends) - 1)  # (horizon,) each step's segment
        mean = np.zeros((history.n, horizon))
        quantiles, levels = None, None
        for label, model in self._models.items():
            forecast = model.predict(horizon)
            if levels is None:
                levels = forecast.levels
                quantiles = np.zeros((history.n, horizon, len(levels)))
            elif forecast.levels != levels:
                raise ValueError(f"Auto: candidate {label} forecasts quantile levels {forecast.levels}, another "
                                 f"{levels}; allowed: the same levels for all")
            w = self.segment_weights[segment, :, self._labels.index(label)].T  # (n, horizon)
            mean += np.where(w > 0, w * forecast.mean, 0.0)  # a NaN where unused is no NaN
            quantiles += np.where(w[..., None] > 0, w[..., None] * forecast.quantiles, 0.0)
        return Forecast(mean=mean, quantiles=quantiles, levels=levels)  # weighted sums of sorted quantiles: sorted

    def choices_frame(self) -> pd.DataFrame:
        """One row per series: unique_id, chosen and each candidate's validation score (`metric`); with several
        segments one row per series and segment, its `steps` and that segment's choice and scores."""
        if len(self.segment_ends) <= 1:
            frame = self.validation_scores.copy()
            frame.insert(0, "chosen", [self.choices[sid] for sid in frame.index])
            return frame.reset_index()
        labels = self._labels
        frames = []
        for k, (table, steps) in enumerate(zip(self.segment_scores, self.segment_labels())):
            frame = table[labels].copy()
            frame.insert(0, "chosen", [labels[j] for j in np.argmax(self.segment_weights[k], axis=1)])
            frame.insert(0, "steps", steps)
            frames.append(frame.reset_index())
        return pd.concat(frames, ignore_index=True)
