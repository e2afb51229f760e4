"""experiments.forecast writes paired.csv / paired.md: the main forecaster's MASE over each compared one's, with a
paired bootstrap CI over cutoffs (tests/agents/test_forecast_paired.py tests the computation itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.forecast", "data.path=statsmodels:elec_equip",
                           *args, f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_paired_csv_holds_the_mase_ratios_of_scores_csv(tmp_path):
    done = run(tmp_path, "forecaster=moving_average", "compare=[seasonal_naive,ets]", "backtest.origins=3")
    assert done.returncode == 0, done.stderr[-3000:]
    mase = pd.read_csv(tmp_path / "scores.csv").set_index(["forecaster", "horizon"])["mase"]
    rows = pd.read_csv(tmp_path / "paired.csv")
    assert list(rows.columns) == ["forecaster", "horizon", "versus", "compared", "mase", "mase_compared", "ratio",
                                  "ci_low", "ci_high", "cutoffs", "verdict"]
    assert list(zip(rows.horizon, rows.versus)) == [(h, v) for h in (3, 6, 12)
                                                    for v in ("seasonal_naive", "ets", "best single")]
    for r in rows.itertuples():
        assert r.forecaster == "moving_average" and r.cutoffs == 3
        assert r.ratio == pytest.approx(mase["moving_average", r.horizon] / mase[r.compared, r.horizon], rel=1e-4)
        assert r.ci_low <= r.ratio <= r.ci_high
        assert r.verdict == ("better" if r.ci_high < 1 else "worse" if r.ci_low > 1 else "tie")
    for h, best in rows[rows.versus == "best single"].set_index("horizon")["compared"].items():
        assert best == min(("seasonal_naive", "ets"), key=lambda name: mase[name, h])
        assert f"h={h}: MASE moving_average / best single ({best})" in done.stderr
    assert "| 12 | **best single:" in (tmp_path / "paired.md").read_text()


def test_no_paired_file_without_compared_forecasters_and_no_interval_under_three_cutoffs(tmp_path):
    done = run(tmp_path / "alone", "forecaster=seasonal_naive", "compare=[]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "alone" / "scores.csv").exists() and not (tmp_path / "alone" / "paired.csv").exists()
    done = run(tmp_path / "two", "forecaster=seasonal_naive", "compare=[moving_average]", "backtest.origins=2")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "two" / "paired.csv", keep_default_na=False)  # else "n/a" reads as NaN
    assert (rows.ci_low == "").all() and (rows.ci_high == "").all() and (rows.verdict == "n/a").all()
    assert "no CI (fewer than 3 cutoffs)" in done.stderr
