"""Data in for the forecasters: files of series_id, date, value (checked, frequency inferred), the twin's
history, and the real series bundled in statsmodels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from agents.forecasting.data import DataError, frequency_of, load_panel, panel_from_frame, panel_from_twin
from agents.forecasting.datasets import REAL_DATASETS
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]


def frame(n_days=30, series=("a", "b"), freq="D", **extra):
    dates = pd.date_range("2024-01-01", periods=n_days, freq=freq)
    parts = [pd.DataFrame({"series_id": s, "date": dates, "value": np.arange(n_days, dtype=float) + i, **extra})
             for i, s in enumerate(series)]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("freq, name, season", [("D", "daily", 7), ("W-MON", "weekly", 52), ("MS", "monthly", 12),
                                                ("ME", "monthly", 12), ("QS", "quarterly", 4), ("YS", "yearly", 1),
                                                ("h", "hourly", 24)])
def test_the_frequency_is_inferred_from_the_dates(freq, name, season):
    f = frequency_of(pd.date_range("2020-01-01", periods=12, freq=freq))
    assert (f.name, f.season_length) == (name, season)


def test_a_file_becomes_a_panel_with_covariates_and_categories(tmp_path):
    data = frame(promo=0.0)
    data["region"] = np.where(data["series_id"] == "a", "north", "south")
    data.loc[5, "promo"] = 1.0
    path = tmp_path / "sales.csv"
    data.to_csv(path, index=False)
    panel = load_panel(path)
    assert panel.ids == ("a", "b") and panel.values.shape == (2, 30) and panel.freq.name == "daily"
    assert panel.covariate_names == ("promo",) and panel.covariates[0, 5, 0] == 1.0
    assert panel.categories["region"].tolist() == [0, 1]
    np.testing.assert_array_equal(panel.values[1], np.arange(30) + 1)
    data.to_parquet(tmp_path / "sales.parquet")
    np.testing.assert_array_equal(load_panel(tmp_path / "sales.parquet").values, panel.values)


def test_a_series_may_start_late():
    data = frame()
    data = data[~((data["series_id"] == "b") & (data["date"] < "2024-01-05"))]
    panel = panel_from_frame(data)
    assert np.isnan(panel.values[1, :4]).all() and not np.isnan(panel.values[1, 4:]).any()


def _broken(kind):
    data = frame()
    if kind == "missing column":
        return data.drop(columns="value"), r"missing column\(s\) 'value'; required: series_id, date, value"
    if kind == "non-monotone dates":
        data.loc[[3, 4], "date"] = data.loc[[4, 3], "date"].to_numpy()
        return data, r"row 6 \(series 'a'\): column 'date' .* does not come after the series' previous date"
    if kind == "duplicate date":
        data.loc[4, "date"] = data.loc[3, "date"]
        return data, r"row 6 .* does not come after"
    if kind == "negative value":
        data.loc[7, "value"] = -2.0
        return data, r"row 9 \(series 'a'\): column 'value' value -2.0 is not allowed; allowed: a finite number >= 0"
    if kind == "NaN value":
        data.loc[40, "value"] = np.nan
        return data, r"row 42 \(series 'b'\): column 'value' value nan is missing or not a number"
    if kind == "bad date":
        data["date"] = data["date"].astype(str)
        data.loc[2, "date"] = "yesterday"
        return data, r"row 4 .* column 'date' value 'yesterday' is not a date"
    if kind == "gap":
        return data.drop(index=10), r"series 'a' has missing periods after 2024-01-10"
    if kind == "ragged end":
        return data.drop(index=59), r"series 'b' ends before 2024-01-30"
    if kind == "text covariate":
        data["colour"] = ["red", "blue"] * 30
        return data, r"column 'colour' is text that varies within series 'a'"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing column", "non-monotone dates", "duplicate date", "negative value",
                                  "NaN value", "bad date", "gap", "ragged end", "text covariate"])
def test_a_bad_file_gives_one_error_naming_the_problem(tmp_path, kind):
    data, message = _broken(kind)
    path = tmp_path / "bad.csv"
    data.to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        load_panel(path)


def test_irregular_dates_and_unreadable_files_are_named(tmp_path):
    dates = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-09"])
    with pytest.raises(DataError, match="not regularly spaced"):
        panel_from_frame(pd.DataFrame({"series_id": "a", "date": dates, "value": 1.0}))
    with pytest.raises(DataError, match="is not a file"):
        load_panel(tmp_path / "nope.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="allowed: .csv, .csv.gz, .parquet"):
        load_panel(tmp_path / "x.json")


def test_twin_history_carries_the_true_mean_and_covariates():
    network = network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()))
    panel = panel_from_twin(network, 60, seed=4)
    stores = [n for n in network.nodes if n.kind == "store"]
    assert panel.n == len(stores) * network.skus.n and panel.length == 60
    assert panel.covariate_names == ("promotion", "price", "holiday", "weather")
    # over all series and days, demand averages its true mean (Poisson-like noise around it)
    assert abs(panel.values.mean() / panel.oracle_mean[:, :60].mean() - 1) < 0.05
    assert panel.dates[0] == pd.Timestamp("2021-01-01") and panel.freq.name == "daily"
    again = panel_from_twin(network, 60, seed=4)
    np.testing.assert_array_equal(panel.values, again.values)
    # every series in units sold (auto's metric=auto validates by MAE); its views and subsets say so too
    assert panel.shared_unit and panel.until(30).shared_unit and panel.select(slice(0, 2)).shared_unit


@pytest.mark.parametrize("name", list(REAL_DATASETS))
def test_real_series_bundled_in_statsmodels_load(name):
    panel = load_panel(f"statsmodels:{name}")
    assert not panel.shared_unit  # a file's units may differ (macrodata: GDP, a rate): unless data.shared_unit
    assert panel.length > 150 and np.isfinite(panel.values).all() and (panel.values >= 0).all()
    with pytest.raises(DataError, match="allowed: statsmodels:elec_equip"):
        load_panel("statsmodels:airline")


def test_nixtlas_long_format_reads_as_the_same_panel(tmp_path):
    data = frame(promo=0.0)
    data["region"] = np.where(data["series_id"] == "a", "north", "south")
    data.loc[5, "promo"] = 1.0
    ours = panel_from_frame(data)
    nixtla = data.rename(columns={"series_id": "unique_id", "date": "ds", "value": "y"})
    path = tmp_path / "nixtla.csv"
    nixtla.to_csv(path, index=False)
    theirs = load_panel(path)
    assert theirs.ids == ours.ids and theirs.freq == ours.freq and theirs.covariate_names == ours.covariate_names
    np.testing.assert_array_equal(theirs.values, ours.values)
    np.testing.assert_array_equal(theirs.covariates, ours.covariates)
    assert theirs.categories["region"].tolist() == ours.categories["region"].tolist()
    # an error names the file's own column
    bad = nixtla.copy()
    bad.loc[3, "y"] = -2.0
    with pytest.raises(DataError, match=r"row 5 \(series 'a'\): column 'y' value -2.0 is not allowed"):
        panel_from_frame(bad)
    with pytest.raises(DataError, match=r"columns 'y' and 'value' name the same thing"):
        panel_from_frame(nixtla.assign(value=1.0))
    with pytest.raises(DataError, match=r"Nixtla's column\(s\) 'unique_id', 'ds' without 'y'"):
        panel_from_frame(nixtla.drop(columns="y"))
