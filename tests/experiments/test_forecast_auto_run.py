"""experiments.forecast with forecaster=auto: the run writes auto_choices.csv, each series' choice by the rule of
agents/forecasting/auto.py (tests/agents/test_forecast_auto.py tests the forecaster itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_experiments_forecast_writes_auto_choices(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.forecast", "forecaster=auto",
                           "forecaster.candidates=[seasonal_naive,ets,croston]", "compare=[seasonal_naive]",
                           "data.path=statsmodels:macrodata", "backtest.origins=2",
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    choices = pd.read_csv(tmp_path / "run" / "auto_choices.csv")
    assert list(choices.columns) == ["unique_id", "chosen", "seasonal_naive", "ets", "croston", "cutoff", "metric"]
    assert set(choices["metric"]) == {"mase"}  # metric=auto on a file, whose units may differ (data.shared_unit)
    assert len(choices) == 2 * 6 and choices["cutoff"].nunique() == 2  # 6 series at each of 2 origins
    assert set(choices["chosen"]) <= {"seasonal_naive", "ets", "croston"}
    for _, at in choices.groupby("cutoff"):  # its own best where 20% below the best over all series (the default)
        scores = at[["seasonal_naive", "ets", "croston"]]
        fallback = scores.mean().idxmin()
        clearly = scores.min(axis=1) < 0.8 * scores[fallback]
        assert (at["chosen"] == scores.idxmin(axis=1).where(clearly, fallback)).all()
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    assert {"auto", "seasonal_naive"} <= set(scores["forecaster"])
