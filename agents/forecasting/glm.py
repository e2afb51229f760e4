"""A global log-linear demand regression (a Poisson GLM): the textbook retail demand model, fitted on all series.

    log E[y_it] = level_i + season(t) + yearly(t) + trend x years(t)
                  + sum over covariates c of (beta_c + beta_c,g(i)) x_c,it

`level_i` is one coefficient per series; `season` one per position in the season (day of week, month, quarter,
hour); `yearly` `harmonics` sine/cosine pairs of the day of year (daily, weekly and hourly data); `trend` one slope
for all series (`trend="global"`), one per series (`"series"`) or none, and only on a history of at least
`trend_min_years` years: over a shorter one a slope and the yearly season explain the same rise, and the slope,
extrapolated, runs away (on the twin's demand: 1.6-2.2x the oracle's MAE 60 days after 190-250 days of history,
against 1.02-1.04 without it). A covariate positive at every observed value (a price, a lift) enters as its
log, so its coefficient is an elasticity; others (flags, indices) as they are. With
`interactions`, each level g of those categories (e.g. the SKU) gets its own coefficient on every covariate: a price
elasticity per SKU. Demand that multiplies factors like these (the twin's does: twin/demand.py) is linear here.

The coefficients maximise the Poisson likelihood (scikit-learn's PoissonRegressor, L-BFGS on a sparse design, a
small ridge penalty `alpha` that keeps collinear columns finite); the values must be >= 0 but need not be counts.
Quantiles: each series' in-sample Pearson residuals (y - mu) / sqrt(mu) at the levels, times sqrt(mu) at each
step (the Poisson shape: the spread grows with the square root of the mean), not widened with the step.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import PoissonRegressor

from agents.forecasting.base import (
    PERIODS_PER_YEAR,
    QUANTILE_LEVELS,
    Forecast,
    SeriesPanel,
    check_horizon,
    dates_ahead,
    nan_quantiles,
    sorted_quantiles,
)

TRENDS = ("global", "series", "none")
SEASON_POSITIONS = {"daily": 7, "hourly": 24, "monthly": 12, "quarterly": 4}  # weekly: the yearly harmonics carry
# its season; yearly: none


def _season_position(dates: pd.DatetimeIndex, freq_name: str) -> np.ndarray:
    """Each date's position in its season (0-based), for the frequencies of SEASON_POSITIONS."""
    if freq_name == "daily":
        return dates.dayofweek.to_numpy()
    if freq_name == "hourly":
        return dates.hour.to_numpy()
    if freq_name == "monthly":
        return dates.month.to_numpy() - 1
    return dates.quarter.to_numpy() - 1


def _check_int(key: str, value: object, low: int) -> None:
    """ValueError naming `key` unless `value` is an integer >= `low`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"PoissonGLM: {key} {value!r} is not allowed; allowed: an integer >= {low}")


def _check_number(key: str, value: object) -> float:
    """`value` as a float; ValueError naming `key` unless it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < np.inf:
        raise ValueError(f"PoissonGLM: {key} {value!r} is not allowed; allowed: a finite number >= 0")
    return float(value)


class PoissonGLM:
    """A global log-linear regression on series level, season, yearly harmonics, trend and covariates (Poisson).

    `harmonics`: sine/cosine pairs of the day of year (daily, weekly, hourly data). `trend`: "global", "series"
    or "none", fitted only on a history of at least `trend_min_years` years. `interactions`: category names whose
    levels get their own covariate coefficients, or "auto" (every category with 2 to `max_levels` levels and fewer
    levels than series). `alpha`: the ridge penalty (per row of the mean deviance). `max_train_rows`: rows
    sampled (with `seed`) when there are more.
    """

    name = "glm"

    def __init__(self, harmonics: int = 3, trend: str = "global", trend_min_years: float = 2.0,
                 interactions: str | list[str] = "auto", max_levels: int = 100, alpha: float = 1e-6,
                 max_iter: int = 1000, max_train_rows: int = 400_000, levels: tuple = QUANTILE_LEVELS,
                 seed: int = 0) -> None:
        _check_int("harmonics", harmonics, 0)
        _check_int("max_levels", max_levels, 2)
        _check_int("max_iter", max_iter, 1)
        _check_int("max_train_rows", max_train_rows, 1)
        _check_int("seed", seed, 0)
        if trend not in TRENDS:
            raise ValueError(f"PoissonGLM: trend {trend!r} is not allowed; allowed: {', '.join(TRENDS)}")
        if not (interactions == "auto" or (isinstance(interactions, (list, tuple))
                                           and all(isinstance(c, str) for c in interactions))):
            raise ValueError(f"PoissonGLM: interactions {interactions!r} is not allowed; allowed: auto or a list "
                             f"of category names")
        if not (isinstance(levels, (list, tuple)) and levels
                and all(isinstance(q, numbers.Real) and not isinstance(q, bool) and 0 < q < 1 for q in levels)
                and all(a < b for a, b in zip(levels, levels[1:]))):
            raise ValueError(f"PoissonGLM: levels {levels!r} is not allowed; allowed: increasing numbers strictly "
                             f"between 0 and 1")
        self.levels = tuple(float(q) for q in levels)
        self.harmonics = harmonics
        self.trend = trend
        self.trend_min_years = _check_number("trend_min_years", trend_min_years)
        self.interactions = interactions if interactions == "auto" else list(interactions)
        self.max_levels = max_levels
        self.alpha = _check_number("alpha", alpha)
        self.max_iter = max_iter
        self.max_train_rows = max_train_rows
        self.seed = seed
        self._history: SeriesPanel | None = None

    # ------------------------------------------------------------------ design

    def _settle(self, history: SeriesPanel) -> None:
        """Decide, from the fit history, which categories interact and which covariates enter as logs."""
        n = history.n
        if self.interactions == "auto":
            self._interacting = [c for c in sorted(history.categories)
                                 if 2 <= len(np.unique(history.categories[c])) <= min(self.max_levels, n - 1)]
        else:
            unknown = [c for c in self.interactions if c not in history.categories]
            if unknown:
                raise ValueError(f"PoissonGLM: interactions {unknown} are not categories of the data; allowed: "
                                 f"{sorted(history.categories)}")
            self._interacting = list(self.interactions)
        self._category_levels = {c: np.unique(history.categories[c]) for c in self._interacting}
        # a covariate enters as its log where it is positive at every observed value of the history (not before a
        # series starts, where a data file leaves covariates at 0, nor in the known future)
        observed = ~np.isnan(history.values)
        past = history.covariates[:, :history.length][observed]  # (observed cells, k)
        self._log_covariate = np.array([len(past) > 0 and bool(np.all(past[:, j] > 0)) for j in range(past.shape[1])],
                                       dtype=bool)
        self._season = SEASON_POSITIONS.get(history.freq.name, 0)
        self._freq_name = history.freq.name
        span = self._years(history.dates[:history.length])[-1] + 1 / PERIODS_PER_YEAR.get(self._freq_name, 1)
        self._trend = self.trend if span >= self.trend_min_years else "none"

    def _design(self, history: SeriesPanel, dates: pd.DatetimeIndex, covariates: np.ndarray, rows: np.ndarray,
                times: np.ndarray) -> sp.csr_matrix:
        """The sparse design matrix of series `rows` at periods `times` (indices into `dates` and `covariates`)."""
        n, m = history.n, len(rows)
        blocks = [sp.csr_matrix((np.ones(m), (np.arange(m), rows)), shape=(m, n))]  # the series' level
        if self._season > 1:
            position = _season_position(dates, self._freq_name)[times]
            keep = position > 0  # the first position is the reference
            blocks.append(sp.csr_matrix((np.ones(keep.sum()), (np.arange(m)[keep], position[keep] - 1)),
                                        shape=(m, self._season - 1)))
        dense = []
        if self.harmonics and self._freq_name in ("daily", "weekly", "hourly"):
            year = (dates.dayofyear.to_numpy()[times] - 1) / 365.25
            for k in range(1, self.harmonics + 1):
                dense += [np.sin(2 * np.pi * k * year), np.cos(2 * np.pi * k * year)]
        years = self._years(dates)[times]
        if self._trend == "global":
            dense.append(years)
        x = covariates[rows, times].astype(float)
        if x.shape[1]:
            logged = x[:, self._log_covariate]
            if (logged <= 0).any():
                at, column = np.argwhere(logged <= 0)[0]
                j = np.flatnonzero(self._log_covariate)[column]
                raise ValueError(f"PoissonGLM: covariate {history.covariate_names[j]!r} is {x[at, j]} at "
                                 f"{dates[times[at]].date()} (series {history.ids[rows[at]]!r}), where the fit took "
                                 f"its log (positive at every observed value); allowed: a value > 0")
            x[:, self._log_covariate] = np.log(logged)
            dense += list(x.T)
        if dense:
            blocks.append(sp.csr_matrix(np.column_stack(dense)))
        if self._trend == "series":
            blocks.append(sp.csr_matrix((years, (np.arange(m), rows)), shape=(m, n)))
        for name, known in self._category_levels.items():
            code = np.searchsorted(known, history.categories[name][rows])
            for j in range(x.shape[1]):
                blocks.append(sp.csr_matrix((x[:, j], (np.arange(m), code)), shape=(m, len(known))))
        return sp.hstack(blocks, format="csr")

    def _years(self, dates: pd.DatetimeIndex) -> np.ndarray:
        """Time since the fit history's first date, in years (`dates` start with it, at the panel's frequency)."""
        return np.arange(len(dates), dtype=float) / PERIODS_PER_YEAR.get(self._freq_name, 1)

    # ------------------------------------------------------------------ fit and predict

    def fit(self, history: SeriesPanel) -> None:
        """Fit the coefficients on (a deterministic sample of) every observed period of every series."""
        values = history.values
        negative = np.argwhere(values < 0)
        if len(negative):
            i, t = negative[0]
            raise ValueError(f"PoissonGLM: series {history.ids[i]!r} has value {values[i, t]} at "
                             f"{history.dates[t].date()}; allowed: values >= 0 (a Poisson likelihood)")
        self._settle(history)
        rows, times = np.nonzero(~np.isnan(values))
        if len(rows) == 0:
            raise ValueError("PoissonGLM: no observed value; allowed: at least one")
        design = self._design(history, history.dates, history.covariates, rows, times)  # every observed period
        keep = slice(None)
        if len(rows) > self.max_train_rows:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(rows), self.max_train_rows, replace=False))
        self._model = PoissonRegressor(alpha=self.alpha, fit_intercept=False, max_iter=self.max_iter,
                                       solver="lbfgs").fit(design[keep], values[rows, times][keep])
        # spread: each series' in-sample Pearson residuals over all its observed periods
        mu = self._model.predict(design)
        pearson = np.full(values.shape, np.nan)
        pearson[rows, times] = (values[rows, times] - mu) / np.sqrt(np.maximum(mu, 1e-9))
        self._pearson_quantiles = nan_quantiles(pearson, self.levels)  # (n, levels)
        self._history = history

    def predict(self, horizon: int) -> Forecast:
        """Mean and quantiles for the `horizon` periods after the fitted history."""
        history = check_horizon(self.name, horizon, self._history, needs_covariates=True)
        n, t = history.values.shape
        dates = dates_ahead(history, t + horizon)
        covariates = history.covariates
        if covariates.shape[1] < t + horizon:  # no covariates (k == 0): nothing to read ahead
            covariates = np.zeros((n, t + horizon, 0), np.float32)
        rows = np.repeat(np.arange(n), horizon)
        times = np.tile(np.arange(t, t + horizon), n)
        mean = self._model.predict(self._design(history, dates, covariates, rows, times)).reshape(n, horizon)
        mean[np.isnan(history.values).all(axis=1)] = 0.0  # a series never observed has no level: forecast 0
        spread = np.sqrt(mean)[..., None] * self._pearson_quantiles[:, None, :]
        return Forecast(mean=mean, quantiles=sorted_quantiles(mean, spread), levels=self.levels)
