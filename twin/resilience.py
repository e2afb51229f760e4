"""Resilience figures of a stress test, from a run's daily series (numpy only).

The fill rate here means what the twin's fill rate KPI means (`twin.kpi`): units served from stock on the day
they were asked for / units asked, i.e. `series["filled"] / series["demand"]` of a `RunResult` (customer demand
at stores; orders received at DCs). The series hold the warm-up days too (the KPIs do not): slice them off with
`series[f][warmup:]` to compare with the KPIs.

`demand` and `fulfilled` are (days,) or (days, nodes) arrays of the same shape; a (days, nodes) input gives one
figure per column (node). Figures that count days return floats, with `math.inf` for "never within the run".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

WEEK = 7


def rolling_fill_rate(demand, fulfilled, window: int = WEEK) -> np.ndarray:
    """Fill rate over the trailing `window` days, same shape as the input.

    rate[t] = sum(fulfilled[t-window+1 .. t]) / sum(demand[t-window+1 .. t]); over the first window - 1 days
    the sums cover the days available (days 0 .. t). NaN where the window holds no demand.
    """
    demand, fulfilled, one = _runs(demand, fulfilled)
    window = _whole(window, "window", low=1)
    rate = _rolling(demand, fulfilled, window)
    return rate[:, 0] if one else rate


def time_to_recover(demand, fulfilled, shock_start: int, *, window: int = WEEK, tolerance: float = 0.02,
                    pre_days: int = 28):
    """Days from the shock's start until the rolling fill rate is back in the pre-shock band.

    level = sum(fulfilled) / sum(demand) over the `pre_days` days before `shock_start` (fewer if the run has
    fewer); the band is rate >= level - tolerance (one-sided: a rate above the pre-shock level is in the band).
    Let d be the first day >= shock_start whose `rolling_fill_rate` is below the band; the answer is r -
    shock_start for the first day r > d whose rolling rate is in the band again (staying there afterwards is not
    required). 0 if the rate never left the band from shock_start on; math.inf if it never came back within the
    run. Days with no demand in their window are skipped. A float, or a (nodes,) array for (days, nodes) input.
    """
    demand, fulfilled, one = _runs(demand, fulfilled)
    shock_start = _whole(shock_start, "shock_start", low=1, high=len(demand) - 1)
    window = _whole(window, "window", low=1)
    pre_days = _whole(pre_days, "pre_days", low=1)
    tolerance = _number(tolerance, "tolerance", low=0.0)
    before = slice(max(0, shock_start - pre_days), shock_start)
    pre_demand = demand[before].sum(axis=0)
    if np.any(pre_demand <= 0):
        raise ValueError(f"demand: no demand in the {pre_days} days before shock_start={shock_start} (column "
                         f"{int(np.argmax(pre_demand <= 0))}), so there is no pre-shock fill rate")
    floor = fulfilled[before].sum(axis=0) / pre_demand - tolerance
    rate = _rolling(demand, fulfilled, window)[shock_start:]
    answers = []
    for j in range(rate.shape[1]):
        below = np.flatnonzero(rate[:, j] < floor[j])
        if below.size == 0:
            answers.append(0.0)
            continue
        back = np.flatnonzero(rate[below[0]:, j] >= floor[j])
        answers.append(float(below[0] + back[0]) if back.size else math.inf)
    return _shaped(np.array(answers), one)


def time_to_survive(demand, fulfilled, disruption_start: int, target: float, *, window: int = WEEK):
    """Days from the disruption's start until the rolling fill rate first drops below `target`.

    The first day t >= disruption_start with rolling_fill_rate[t] < target gives t - disruption_start (the days
    survived; 0 if it is already below on the first day); math.inf if it never drops within the run (the loss
    is survived). The trailing window of the first days after the start still holds days before it. Days with
    no demand in their window are skipped. A float, or a (nodes,) array for (days, nodes) input.
    """
    demand, fulfilled, one = _runs(demand, fulfilled)
    disruption_start = _whole(disruption_start, "disruption_start", low=0, high=len(demand) - 1)
    target = _target(target)
    window = _whole(window, "window", low=1)
    rate = _rolling(demand, fulfilled, window)[disruption_start:]
    answers = []
    for j in range(rate.shape[1]):
        below = np.flatnonzero(rate[:, j] < target)
        answers.append(float(below[0]) if below.size else math.inf)
    return _shaped(np.array(answers), one)


def worst_week_fill_rate(demand, fulfilled):
    """The lowest fill rate over any 7 consecutive days (a rolling window, not calendar weeks).

    min over t >= 6 of sum(fulfilled[t-6 .. t]) / sum(demand[t-6 .. t]); only full 7-day windows count, windows
    with no demand are skipped (NaN if all are). Needs at least 7 days. A float, or a (nodes,) array.
    """
    demand, fulfilled, one = _runs(demand, fulfilled)
    if len(demand) < WEEK:
        raise ValueError(f"demand: {len(demand)} days; a worst week needs at least {WEEK}")
    full = _rolling(demand, fulfilled, WEEK)[WEEK - 1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no demand at all: NaN, said above
        return _shaped(np.nanmin(full, axis=0), one)


def days_below_target(demand, fulfilled, target: float, window: int = WEEK):
    """Count of days t whose rolling_fill_rate[t] (with `window`) is below `target`.

    Every day of the run counts, the first window - 1 (shorter windows) included; days with no demand in their
    window are not counted. An int, or a (nodes,) int array.
    """
    demand, fulfilled, one = _runs(demand, fulfilled)
    target = _target(target)
    window = _whole(window, "window", low=1)
    return _shaped(np.count_nonzero(_rolling(demand, fulfilled, window) < target, axis=0), one)


def peak(series):
    """The maximum over days (axis 0), e.g. peak backorders: a float for (days,), a (nodes,) array for
    (days, nodes)."""
    array = _days_array(series, "series")
    return array.max().item() if array.ndim == 1 else array.max(axis=0)


def cvar(samples, level: float = 0.95) -> float:
    """Conditional value at risk of costs: the mean of the worst (highest) 1 - level share of the outcomes.

    With the n samples sorted from highest to lowest, x_1 >= ... >= x_n, and k = n * (1 - level):
    CVaR = (x_1 + ... + x_floor(k) + (k - floor(k)) * x_(floor(k)+1)) / k, each sample weighing 1/n and the
    boundary sample its fractional share (Acerbi-Tasche; the Rockafellar-Uryasev minimum for the empirical
    distribution), so it is exact for any n. level = 0 gives the mean. 1..100 at 0.95: mean of 96..100 = 98.
    """
    x = _finite(samples, "samples")
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"samples: expected a non-empty 1-D array of outcomes, got shape {x.shape}")
    level = _number(level, "level", low=0.0)
    if level >= 1:
        raise ValueError(f"level: {level} is outside [0, 1)")
    worst_first = np.sort(x)[::-1]
    k = len(x) * (1 - level)
    if abs(k - round(k)) < 1e-9:  # 100 * (1 - 0.95) is 5.000000000000004 in floating point
        k = float(round(k))
    weights = np.clip(k - np.arange(len(x)), 0.0, 1.0)
    return float(weights @ worst_first / k)


def fan_quantiles(paths, qs: Sequence[float] = (5, 25, 50, 75, 95)) -> np.ndarray:
    """Percentiles across replications for a fan chart: paths (replications, days[, ...]) -> (len(qs), days[, ...]).

    np.nanpercentile over axis 0 (linear interpolation), NaN-aware: NaNs are left out, a point NaN in every
    replication gives NaN. `qs` are percentiles in [0, 100].
    """
    array = np.asarray(paths, dtype=float)
    if array.ndim < 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"paths: expected (replications, days[, ...]) with at least one of each, got shape "
                         f"{array.shape}")
    if np.isinf(array).any():
        raise ValueError("paths: holds an infinite value")
    q = np.asarray(qs, dtype=float)
    if q.ndim != 1 or q.size == 0 or np.isnan(q).any() or q.min() < 0 or q.max() > 100:
        raise ValueError(f"qs: expected a non-empty sequence of percentiles in [0, 100], got {qs!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points: NaN, said above
        return np.nanpercentile(array, q, axis=0)


# ---------------------------------------------------------------------------
# Checks and shared steps
# ---------------------------------------------------------------------------

def _rolling(demand: np.ndarray, fulfilled: np.ndarray, window: int) -> np.ndarray:
    """Trailing-window sums as exact sums of each window (no cumulative-sum round-off), zeros padded in front."""
    pad = np.zeros((window - 1,) + demand.shape[1:])
    view = np.lib.stride_tricks.sliding_window_view
    asked = view(np.concatenate([pad, demand]), window, axis=0).sum(axis=-1)
    served = view(np.concatenate([pad, fulfilled]), window, axis=0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(asked > 0, served / asked, np.nan)


def _runs(demand, fulfilled) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both series as float (days, nodes) arrays, and whether they came as one (days,) column."""
    d = _days_array(demand, "demand")
    f = _days_array(fulfilled, "fulfilled")
    if d.shape != f.shape:
        raise ValueError(f"fulfilled: shape {f.shape} differs from demand's {d.shape}")
    for name, a in (("demand", d), ("fulfilled", f)):
        if a.min() < 0:
            raise ValueError(f"{name}: expected non-negative numbers, found {a.min():g}")
    one = d.ndim == 1
    if one:
        d, f = d[:, None], f[:, None]
    excess = f - d - 1e-9 * np.maximum(d, 1.0)  # a little float round-off is not serving more than was asked
    if excess.max() > 0:
        day, j = np.unravel_index(np.argmax(excess), excess.shape)
        raise ValueError(f"fulfilled: more than the demand on day {day}, column {j} ({f[day, j]:g} > {d[day, j]:g})")
    return d, f, one


def _days_array(values, name: str) -> np.ndarray:
    """A finite float (days,) or (days, nodes) array with at least one day and one node."""
    array = _finite(values, name)
    if array.ndim not in (1, 2) or array.shape[0] == 0 or (array.ndim == 2 and array.shape[1] == 0):
        raise ValueError(f"{name}: expected a non-empty (days,) or (days, nodes) array, got shape {array.shape}")
    return array


def _finite(values, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected numbers, got {type(values).__name__}") from error
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: holds a NaN or infinite value")
    return array


def _shaped(values: np.ndarray, one: bool):
    """One figure per column: a Python number for a (days,) input, else the (nodes,) array."""
    return values[0].item() if one else values


def _whole(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected whole days, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}: {value} is outside {allowed}")
    return int(value)


def _number(value, name: str, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: {value} is below {low}")
    return float(value)


def _target(target) -> float:
    target = _number(target, "target", low=-math.inf)
    if not 0 < target <= 1:
        raise ValueError(f"target: {target} is outside (0, 1]")
    return target
