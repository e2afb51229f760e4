"""Saved forecasters (agents.forecasting.saved): save -> load -> forecast equals the fitted model's own forecast,
bad directories and histories are refused naming the file or field, the oracle is refused, and a saved LSTM or
Transformer serves through onnxruntime without torch. And the protection-period sums of a daily forecast
(live.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.forecasting.base import Forecast, Frequency
from agents.forecasting.data import panel_from_twin
from agents.forecasting.factory import forecaster_factory
from agents.forecasting.live import Z_80, daily_sd, over_periods
from agents.forecasting.oracle import TrueMean
from agents.forecasting.saved import (
    MANIFEST,
    NETWORKS,
    ONNX_FILE,
    ONNX_FILES,
    TREE_FILE,
    load_forecaster,
    save_forecaster,
)
from twin.config import SpecError
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
NETWORK = ROOT / "conf" / "network" / "small.yaml"
DAYS, FUTURE, HORIZON = 180, 14, 14
SPECS = {
    "seasonal_naive": {"name": "seasonal_naive"},
    "moving_average": {"name": "moving_average", "window": 14},
    "ets": {"name": "ets"},
    "glm": {"name": "glm"},
    "gradient_boosting": {"name": "gradient_boosting", "max_iter": 20, "quantile_max_iter": 10},
    "lstm": {"name": "lstm", "hidden": 16, "layers": 1, "max_horizon": HORIZON, "context": 14, "batch_size": 128,
             "windows_per_epoch": 512, "max_epochs": 2, "device": "cpu", "threads": 1, "verbose": False},
    "transformer": {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1, "feedforward": 32,
                    "max_horizon": HORIZON, "context": 14, "batch_size": 128, "windows_per_epoch": 512,
                    "max_epochs": 2, "device": "cpu", "threads": 1, "verbose": False},
}
PANEL_CODE = (  # the same panel in a subprocess (twin data only: no torch)
    "import yaml\nfrom agents.forecasting.data import panel_from_twin\nfrom twin.spec import network_from_dict\n"
    f"net = network_from_dict(yaml.safe_load(open({str(NETWORK)!r})), 'network')\n"
    f"panel = panel_from_twin(net, {DAYS + FUTURE}, seed=3).until({DAYS}, {FUTURE})\n")


def twin_panel(seed: int = 3):
    import yaml

    network = network_from_dict(yaml.safe_load(NETWORK.read_text()), "network")
    return panel_from_twin(network, DAYS + FUTURE, seed=seed).until(DAYS, FUTURE)  # covariates 14 days ahead


@pytest.fixture(scope="module")
def panel():
    return twin_panel()


@pytest.fixture(scope="module")
def saved(panel, tmp_path_factory):
    """Each forecaster fitted on the panel and saved once: name -> (model, directory)."""
    out = {}
    for name, spec in SPECS.items():
        model = forecaster_factory(spec)()
        model.fit(panel)
        directory = tmp_path_factory.mktemp(name)
        save_forecaster(model, name, panel, directory)
        out[name] = model, directory
    return out


@pytest.mark.parametrize("name", list(SPECS))
def test_a_loaded_forecaster_forecasts_as_the_fitted_one(saved, panel, name):
    model, directory = saved[name]
    loaded = load_forecaster(directory)
    expected, got = model.predict(HORIZON), loaded.forecast(panel, HORIZON)
    assert got.mean.shape == (panel.n, HORIZON) and got.levels == expected.levels
    if name in NETWORKS:  # onnxruntime against torch
        np.testing.assert_allclose(got.mean, expected.mean, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.quantiles, expected.quantiles, rtol=0, atol=1e-4)
        assert loaded.manifest[name]["onnx_max_abs_diff"] <= 1e-4
    else:
        np.testing.assert_array_equal(got.mean, expected.mean)
        np.testing.assert_array_equal(got.quantiles, expected.quantiles)
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["format"] == "twin.forecaster/1" and manifest["name"] == name
    assert manifest["frequency"] == {"alias": "D", "name": "daily", "season_length": 7}
    assert manifest["training"] == {"first_date": "2021-01-01", "last_date": str(panel.dates[DAYS - 1].date()),
                                    "series": panel.n, "periods": DAYS}
    assert set(manifest["files"]) == {"gradient_boosting": {TREE_FILE}, "lstm": {ONNX_FILE},
                                      "transformer": {"transformer.onnx"}}.get(name, set())
    assert manifest["version"] and manifest["created"]
    if name in ("gradient_boosting", *NETWORKS):
        assert manifest["covariates"] == list(panel.covariate_names)
        assert set(manifest["categories"]) == set(panel.categories)
    else:  # local models read neither: any covariates and categories are accepted
        assert manifest["covariates"] is None and manifest["categories"] is None
    assert {k: v for k, v in manifest["parameters"].items() if k in SPECS[name]} == \
        {k: v for k, v in SPECS[name].items() if k != "name"}


@pytest.mark.parametrize("name", ["gradient_boosting", "lstm", "transformer"])
def test_a_global_model_forecasts_a_new_history_without_refitting(saved, name):
    """Another run's demand (another seed), some series only, a shorter history: the fitted parameters are
    applied to it, as the model's own predict_from does."""
    model, directory = saved[name]
    other = twin_panel(seed=11).select(np.array([4, 1, 2])).until(120, FUTURE)
    got = load_forecaster(directory).forecast(other, 7)
    expected = model.predict_from(other, 7)
    np.testing.assert_allclose(got.mean, expected.mean, rtol=0, atol=1e-4 if name in NETWORKS else 0)
    assert not np.allclose(got.mean, model.predict(7).mean[[4, 1, 2]])  # not the fitted history's forecast


def test_a_changed_or_missing_file_is_refused_naming_it(saved, tmp_path):
    for name, file in (("gradient_boosting", TREE_FILE), *ONNX_FILES.items()):
        copy = tmp_path / name
        copy.mkdir()
        for f in saved[name][1].iterdir():
            (copy / f.name).write_bytes(f.read_bytes())
        data = bytearray((copy / file).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (copy / file).write_bytes(bytes(data))
        with pytest.raises(SpecError, match=rf"{file}: sha256 differs from {MANIFEST}"):
            load_forecaster(copy)
        (copy / file).unlink()
        with pytest.raises(SpecError, match=rf"{file}: listed in {MANIFEST} but missing"):
            load_forecaster(copy)
    manifest = json.loads((saved["ets"][1] / MANIFEST).read_text())
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / MANIFEST).write_text(json.dumps({**manifest, "format": "twin.forecaster/0"}))
    with pytest.raises(SpecError, match=r"forecaster.json: format: 'twin.forecaster/0'; allowed: 'twin.forecaster/1'"):
        load_forecaster(tmp_path / "old")
    with pytest.raises(SpecError, match=r"forecaster.json: not found"):
        load_forecaster(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["seasonal_naive", "gradient_boosting", "lstm", "transformer"])
def test_another_frequency_is_refused_naming_the_field(saved, panel, name):
    weekly = replace(panel, freq=Frequency("W-SUN", "weekly", 52),
                     dates=pd.date_range("2021-01-03", periods=len(panel.dates), freq="W-SUN"))
    with pytest.raises(SpecError, match=r"history.freq: weekly .*forecaster.json frequency is daily"):
        load_forecaster(saved[name][1]).forecast(weekly, 4)


@pytest.mark.parametrize("name", ["gradient_boosting", "lstm", "transformer"])
def test_other_covariates_or_unknown_categories_are_refused_naming_the_field(saved, panel, name):
    loaded = load_forecaster(saved[name][1])
    none = replace(panel, covariates=panel.covariates[:, :, :0], covariate_names=())
    with pytest.raises(SpecError, match=r"history.covariate_names: \[\], but .*forecaster.json covariates are "
                                        r"\['promotion', 'price', 'holiday', 'weather'\]"):
        loaded.forecast(none, 7)
    swapped = replace(panel, covariate_names=("price", "promotion", "holiday", "weather"))
    with pytest.raises(SpecError, match=r"history.covariate_names"):
        loaded.forecast(swapped, 7)
    with pytest.raises(SpecError, match=r"horizon: 11 needs the covariates .* 11 periods past the history, which "
                                        r"has 10"):
        loaded.forecast(panel.until(DAYS, 10), 11)
    sku = panel.categories["sku"].copy()
    sku[2] = 99  # a SKU the model never saw
    new_sku = replace(panel, categories={**panel.categories, "sku": sku})
    assert loaded.unknown_series(new_sku).tolist() == [i == 2 for i in range(panel.n)]
    with pytest.raises(SpecError, match=rf"history.categories: sku \[99\] \(series {panel.ids[2]}\) were never seen"):
        loaded.forecast(new_sku, 7)
    fewer = replace(panel, categories={k: v for k, v in panel.categories.items() if k != "region"})
    with pytest.raises(SpecError, match=r"history.categories: \['category', 'sku', 'store'\], but"):
        loaded.forecast(fewer, 7)
    # the known series alone are forecast
    known = new_sku.select(~loaded.unknown_series(new_sku))
    assert loaded.forecast(known, 7).mean.shape == (panel.n - 1, 7)


def test_local_models_accept_any_covariates_and_categories(saved, panel):
    loaded = load_forecaster(saved["seasonal_naive"][1])
    bare = replace(panel, covariates=panel.covariates[:, :DAYS, :0], covariate_names=(), categories={},
                   dates=panel.dates[:DAYS], oracle_mean=None)
    np.testing.assert_array_equal(loaded.forecast(bare, 7).mean, saved["seasonal_naive"][0].predict(7).mean)


def test_a_saved_glm_refits_on_the_request_and_refuses_what_it_cannot_forecast(saved, panel):
    loaded = load_forecaster(saved["glm"][1])
    other = twin_panel(seed=4)  # another history: glm is refitted on it, as a local model is
    refit = forecaster_factory(SPECS["glm"])()
    refit.fit(other)
    np.testing.assert_array_equal(loaded.forecast(other, HORIZON).mean, refit.predict(HORIZON).mean)
    with pytest.raises(SpecError, match=rf"^history: .*horizon {HORIZON + 1} needs covariates"):
        loaded.forecast(panel, HORIZON + 1)  # the covariates are known 14 days ahead


@pytest.mark.parametrize("name", NETWORKS)
def test_a_network_horizon_is_bounded_by_its_max_horizon(saved, panel, name):
    with pytest.raises(SpecError, match=rf"horizon: {HORIZON + 1} is over the saved {name}'s max_horizon"):
        load_forecaster(saved[name][1]).forecast(panel, HORIZON + 1)


def test_the_oracle_cannot_be_saved(panel, tmp_path):
    oracle = TrueMean()
    oracle.fit(panel)
    with pytest.raises(SpecError, match="oracle.*exists only inside the twin"):
        save_forecaster(oracle, "oracle", panel, tmp_path)
    with pytest.raises(SpecError, match="oracle.*exists only inside the twin"):
        save_forecaster(oracle, "seasonal_naive", panel, tmp_path)
    with pytest.raises(SpecError, match="'ensemble' cannot be saved"):
        save_forecaster(forecaster_factory("ensemble")(), "ensemble", panel, tmp_path)
    assert not (tmp_path / MANIFEST).exists()


def test_an_unfitted_global_model_is_refused(panel, tmp_path):
    with pytest.raises(SpecError, match="gradient_boosting is not fitted"):
        save_forecaster(forecaster_factory(SPECS["gradient_boosting"])(), "gradient_boosting", panel, tmp_path)


def test_serving_a_saved_lstm_transformer_and_gradient_boosting_imports_no_torch(saved):
    code = PANEL_CODE + (
        "import sys\nfrom agents.forecasting.saved import load_forecaster\n"
        f"for d in {[str(saved[n][1]) for n in ('lstm', 'transformer', 'gradient_boosting')]!r}:\n"
        f"    f = load_forecaster(d).forecast(panel, {HORIZON})\n"
        "    assert f.mean.shape == (panel.n, 14)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ sums over protection periods


def test_sums_over_protection_periods_with_spread_from_the_quantiles():
    mean = np.array([[1.0, 2.0, 3.0], [10.0, 10.0, 10.0]])
    sd = np.array([[1.0, 1.0, 2.0], [0.0, 3.0, 4.0]])
    quantiles = np.stack([mean - Z_80 * sd, mean, mean + Z_80 * sd], axis=-1)
    forecast = Forecast(mean=mean, quantiles=quantiles)
    np.testing.assert_allclose(daily_sd(forecast), sd)
    total, spread = over_periods(forecast, np.array([2, 3]))
    np.testing.assert_allclose(total, [3.0, 30.0])
    np.testing.assert_allclose(spread, [np.sqrt(2.0), 5.0])
    # from day 1; days past the horizon count as its last day; a period of 0 days is nothing
    total, spread = over_periods(forecast, np.array([4, 0]), start=1)
    np.testing.assert_allclose(total, [2 + 3 + 3 + 3, 0.0])
    np.testing.assert_allclose(spread, [np.sqrt(1 + 4 + 4 + 4), 0.0])
    # without an 80% interval: Poisson-like
    point = Forecast(mean=mean, quantiles=mean[..., None], levels=(0.5,))
    np.testing.assert_allclose(over_periods(point, np.array([1, 1]))[1], [1.0, np.sqrt(10.0)])
    for bad in (np.array([1]), np.array([1.5, 2.0]), np.array([-1, 2])):
        with pytest.raises(ValueError, match="over_periods: periods"):
            over_periods(forecast, bad)
