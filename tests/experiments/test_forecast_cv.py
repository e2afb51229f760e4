"""A backtest's cv.csv is Nixtla's cross-validation frame: utilsforecast's evaluate gives scores.csv's numbers."""

from __future__ import annotations

import csv
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from utilsforecast import losses
from utilsforecast.evaluation import evaluate

from agents.forecasting.backtest import BacktestPlan, backtest, quantile_column
from agents.forecasting.base import Forecast, SeriesPanel
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.datasets import real_series
from agents.forecasting.oracle import TrueMean
from experiments.forecast_report import write_scores

ROOT = Path(__file__).resolve().parents[2]


class Drift:
    """The last value plus a drift, with an interval of +-3 around it (levels 0.1, 0.5, 0.9)."""

    def fit(self, history: SeriesPanel) -> None:
        self.last = history.values[:, -1]

    def predict(self, horizon: int) -> Forecast:
        mean = self.last[:, None] + 0.5 * np.arange(1, horizon + 1)
        return Forecast(mean=mean, quantiles=np.stack([mean - 3, mean, mean + 3], axis=-1))


def small_result():
    rng = np.random.default_rng(3)
    truth = 10 + 3 * np.sin(np.arange(90) * 2 * np.pi / 7)[None, :] + rng.uniform(0, 5, (3, 1))
    values = rng.poisson(truth).astype(float) + 1  # no zero actual: MAPE is defined everywhere
    panel = panel_from_arrays(values, oracle_mean=truth)
    plan = BacktestPlan.of(panel, horizons=(3, 7), n_origins=3, step=5)
    return panel, backtest(panel, {"drift": Drift, "oracle": TrueMean}, plan)


def test_the_cv_frame_holds_every_forecast_in_nixtlas_layout():
    panel, result = small_result()
    cv = result.cv_frame()
    assert list(cv.columns[:4]) == ["unique_id", "ds", "cutoff", "y"]
    for model in ("drift", "oracle"):
        assert {model, quantile_column(model, 0.1), quantile_column(model, 0.9)} <= set(cv.columns)
    assert quantile_column("drift", 0.1) == "drift-lo-80" and quantile_column("drift", 0.5) == "drift-median"
    assert len(cv) == panel.n * 3 * 7 and not cv.duplicated(["unique_id", "ds", "cutoff"]).any()
    # series 1, second origin, third period after it
    origin = result.plan.origins[1]
    row = cv[(cv.unique_id == panel.ids[1]) & (cv.cutoff == panel.dates[origin - 1])].iloc[2]
    assert row.ds == panel.dates[origin + 2] and row.y == panel.values[1, origin + 2]
    assert row.drift == result.runs["drift"].mean[1, 1, 2]
    assert row["drift-hi-80"] == result.runs["drift"].quantiles[1, 1, 2, 2]


def utilsforecast_scores(cv: pd.DataFrame, train: pd.DataFrame, models: list[str], horizon: int,
                         season: int) -> dict[str, dict[str, float]]:
    """The README's metrics of the first `horizon` periods after every cutoff, from utilsforecast's evaluate.

    evaluate scores each (series, cutoff) and every one holds `horizon` points, so the mean over them is the
    pooled mean of scores.csv; RMSE is the root of the mean MSE (evaluate's RMSE is a mean of per-series RMSEs).
    """
    first = cv[cv.groupby(["unique_id", "cutoff"]).cumcount() < horizon]
    ev = evaluate(first, metrics=[losses.mae, losses.mse, losses.mape, losses.smape,
                                  partial(losses.mase, seasonality=season), losses.coverage, losses.quantile_loss],
                  models=models, train_df=train, level=[80])
    mean = ev.groupby("metric")[models].mean()
    median = losses.quantile_loss(first, models={m: quantile_column(m, 0.5) for m in models}, q=0.5)
    return {m: {"mae": mean.loc["mae", m], "rmse": np.sqrt(mean.loc["mse", m]), "mape": 100 * mean.loc["mape", m],
                "smape": 200 * mean.loc["smape", m], "mase": mean.loc["mase", m],
                "coverage_80": mean.loc["coverage_level80", m],
                "quantile_loss": np.mean([mean.loc["quantile_loss_q0.1", m], median[m].mean(),
                                          mean.loc["quantile_loss_q0.9", m]])}
            for m in models}


def train_frame(panel: SeriesPanel) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": np.repeat(panel.ids, panel.length), "ds": np.tile(panel.dates, panel.n),
                         "y": panel.values.reshape(-1)})


def test_utilsforecast_evaluates_the_cv_frame_to_the_backtests_scores(tmp_path):
    panel, result = small_result()
    result.cv_frame().to_csv(tmp_path / "cv.csv", index=False)
    cv = pd.read_csv(tmp_path / "cv.csv", parse_dates=["ds", "cutoff"])
    write_scores(tmp_path / "scores.csv", result.scores(), result)
    written = {(r["forecaster"], int(r["horizon"])): r for r in csv.DictReader((tmp_path / "scores.csv").open())}
    for row in result.scores():
        theirs = utilsforecast_scores(cv, train_frame(panel), ["drift", "oracle"], row["horizon"], 7)
        for metric, value in theirs[row["forecaster"]].items():
            assert value == pytest.approx(row[metric], rel=1e-9), (row["forecaster"], row["horizon"], metric)
            assert value == pytest.approx(float(written[row["forecaster"], row["horizon"]][metric]), abs=1e-5)


def test_experiments_forecast_writes_a_cv_csv_that_utilsforecast_scores_alike(tmp_path):
    path = tmp_path / "macro.csv"
    real_series("macrodata").to_csv(path, index=False)
    done = subprocess.run([sys.executable, "-m", "experiments.forecast", "forecaster=moving_average",
                           "forecaster.window=4", "compare=[seasonal_naive]", f"data.path={path}",
                           "backtest.origins=2", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cv = pd.read_csv(tmp_path / "run" / "cv.csv", parse_dates=["ds", "cutoff"])
    assert {"unique_id", "ds", "cutoff", "y", "moving_average", "seasonal_naive-lo-80"} <= set(cv.columns)
    history = pd.read_csv(path, parse_dates=["date"])
    train = history.rename(columns=dict(zip(history.columns[:3], ["unique_id", "ds", "y"])))
    rows = list(csv.DictReader((tmp_path / "run" / "scores.csv").open()))
    assert rows
    for row in rows:
        theirs = utilsforecast_scores(cv, train, ["moving_average", "seasonal_naive"], int(row["horizon"]), 4)
        for metric, value in theirs[row["forecaster"]].items():
            assert value == pytest.approx(float(row[metric]), abs=1e-5, rel=1e-6), (row, metric)
