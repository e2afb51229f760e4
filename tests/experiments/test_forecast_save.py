"""experiments.forecast output.save_forecaster=true: the forecaster fitted on the whole panel is saved into the run
directory, and loads to forecast as the same forecaster fitted in process; the oracle is refused."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.forecasting.data import panel_from_twin
from agents.forecasting.factory import forecaster_factory
from agents.forecasting.saved import load_forecaster
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
SMALL_TWIN = ["network=small", "data.days=150", "backtest.origins=1", "backtest.horizons=[7,14]", "compare=[]",
              "data.covariates=[]"]
PARAMS = {"gradient_boosting": {"max_iter": 20, "quantile_max_iter": 10},
          "lstm": {"hidden": 8, "layers": 1, "context": 14, "windows_per_epoch": 256, "max_epochs": 1,
                   "device": "cpu", "threads": 1}}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.forecast", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("name", list(PARAMS))
def test_the_fitted_forecaster_is_saved_into_the_run_directory(tmp_path, name):
    done = run(f"forecaster={name}", *[f"forecaster.{k}={v}" for k, v in PARAMS[name].items()], *SMALL_TWIN,
               "output.save_forecaster=true", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    saved = load_forecaster(tmp_path / "forecaster")
    assert saved.name == name and saved.covariates == ()  # data.covariates=[]: ready for an ERP history
    assert saved.manifest["training"]["periods"] == 150 and saved.manifest["training"]["series"] == 6
    # the same forecaster fitted here on the same panel forecasts the same
    network = network_from_dict(yaml.safe_load((ROOT / "conf/network/small.yaml").read_text()), "network")
    panel = panel_from_twin(network, 150, seed=0)
    panel = replace(panel, covariates=panel.covariates[:, :, :0], covariate_names=())
    if name == "lstm":
        assert saved.max_horizon == 14  # the backtest's longest horizon
        ours = forecaster_factory({"name": name, "max_horizon": 14, "seed": 0, **PARAMS[name]})()
    else:
        ours = forecaster_factory({"name": name, "seed": 0, **PARAMS[name]})()
    ours.fit(panel)
    np.testing.assert_allclose(saved.forecast(panel, 7).mean, ours.predict(7).mean, rtol=0,
                               atol=1e-4 if name == "lstm" else 0)


def test_saving_the_oracle_is_refused_before_any_work(tmp_path):
    done = run("forecaster=oracle", "output.save_forecaster=true", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2
    assert "config error: forecaster.name: 'oracle' cannot be saved" in done.stderr
    assert "exists only inside the twin" in done.stderr and not (tmp_path / "forecaster").exists()
