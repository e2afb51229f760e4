"""The global Transformer forecaster: it learns a season and a known-in-advance covariate, sees no values after
its origin, keeps the protocol, is reproducible, rejects bad settings naming the key, and is saved and served
as the LSTM is (ONNX, onnxruntime, no torch), its attention mask kept."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agents.forecasting.backtest import BacktestPlan, backtest
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.factory import forecaster_factory
from agents.forecasting.transformer import TransformerForecaster
from twin.config import SpecError

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(d_model=16, heads=2, layers=1, feedforward=32, max_horizon=14, context=14, batch_size=128,
            windows_per_epoch=1024, max_epochs=6, patience=3, device="cpu", threads=1, verbose=False)


@pytest.fixture(scope="module")
def fitted(promotion_panel):
    """A small Transformer fitted once on the promotion panel."""
    panel, future, promo = promotion_panel(weekly=0.4)
    model = TransformerForecaster(**{**TINY, "max_epochs": 15, "patience": 5})
    model.fit(panel)
    return model, panel, future, promo


def test_learns_season_and_covariate_better_than_seasonal_naive(fitted):
    model, panel, future, promo = fitted
    forecast = model.predict(14)
    naive = np.tile(panel.values[:, -7:], 2)  # last week, repeated
    mae, mae_naive = np.abs(forecast.mean - future).mean(), np.abs(naive - future).mean()
    assert mae < 0.75 * mae_naive, (mae, mae_naive)
    # promotion days (demand x3) are forecast well above the others
    assert forecast.mean[promo == 1].mean() > 2 * forecast.mean[promo == 0].mean()
    # the weekly pattern: on days without promotion the forecast follows the true weekly shape
    weekly = 1 + 0.4 * np.sin(2 * np.pi * np.arange(240, 254) / 7)
    plain = np.where(promo == 0, forecast.mean, np.nan)
    assert np.corrcoef(np.nanmean(plain, axis=0), weekly)[0, 1] > 0.8


def test_quantiles_ordered_shapes_and_shorter_horizons(fitted):
    model, panel, _, _ = fitted
    full, short = model.predict(14), model.predict(5)
    assert short.mean.shape == (panel.n, 5) and short.quantiles.shape == (panel.n, 5, 3)
    assert (full.mean >= 0).all() and (full.quantiles >= 0).all() and np.isfinite(full.quantiles).all()
    assert (np.diff(full.quantiles, axis=2) >= 0).all()
    assert (full.quantiles[..., 2] > full.quantiles[..., 0]).mean() > 0.9  # a band, not a point
    # step k attends to steps up to k only: a shorter horizon is the start of the longer one
    np.testing.assert_allclose(short.mean, full.mean[:, :5], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="horizon 15"):
        model.predict(15)


def test_values_after_the_origin_do_not_reach_the_forecast():
    rng = np.random.default_rng(5)
    days = 140
    promotion = (rng.random((4, days)) < 0.2).astype(float)
    mean = 10 * (1 + 0.3 * np.sin(2 * np.pi * np.arange(days) / 7)) * (1 + promotion)
    values = rng.poisson(mean).astype(float)
    panel = panel_from_arrays(values, covariates=promotion[..., None], covariate_names=("promo",),
                              categories={"sku": [0, 1, 0, 1]})
    plan = BacktestPlan.of(panel, horizons=(7, 14), n_origins=2, step=7)
    changed = values.copy()
    changed[:, plan.origins[0]:] = rng.poisson(5 * mean[:, plan.origins[0]:])  # a different future
    make = forecaster_factory({"name": "transformer", **TINY, "max_epochs": 2, "windows_per_epoch": 256})
    first = backtest(panel, {"t": make}, plan).runs["t"]
    second = backtest(replace(panel, values=changed), {"t": make}, plan).runs["t"]
    # the first origin saw none of the changed values (the second one saw a week of them, legitimately)
    np.testing.assert_array_equal(first.mean[0], second.mean[0])
    np.testing.assert_array_equal(first.quantiles[0], second.quantiles[0])
    assert not np.array_equal(first.mean[1], second.mean[1])


def test_deterministic_for_a_seed(promotion_panel):
    panel, _, _ = promotion_panel(n=6, t=120, weekly=0.4)
    forecasts = []
    for seed in (3, 3, 4):
        model = TransformerForecaster(**{**TINY, "max_epochs": 2, "seed": seed})
        model.fit(panel)
        forecasts.append(model.predict(14))
    assert np.array_equal(forecasts[0].mean, forecasts[1].mean)
    assert np.array_equal(forecasts[0].quantiles, forecasts[1].quantiles)
    assert not np.array_equal(forecasts[0].mean, forecasts[2].mean)  # the seed matters


def test_monthly_series_without_covariates_and_a_trend_line():
    rng = np.random.default_rng(1)
    months = np.arange(96)
    values = rng.poisson(20 * (1 + 0.5 * np.sin(2 * np.pi * months / 12)), (3, 96)).astype(float)
    panel = panel_from_arrays(values, start="2015-01-01", freq="MS")
    for trend in ("none", "window"):
        model = TransformerForecaster(**{**TINY, "context": None, "max_horizon": 12, "max_epochs": 2,
                                         "trend": trend})
        model.fit(panel)
        forecast = model.predict(12)
        assert forecast.mean.shape == (3, 12) and np.isfinite(forecast.quantiles).all()


@pytest.mark.parametrize("spec, message", [
    ({"hidden": 64}, r"^forecaster\.hidden: unknown key for forecaster 'transformer'; allowed: context, "),
    ({"d_model": 30}, r"^forecaster\.d_model: .*d_model 30 is not allowed with heads 4; allowed: a multiple"),
    ({"dropout": 1.5}, r"^forecaster\.dropout: .*1\.5 is not allowed; allowed: a number in \[0, 1\)"),
    ({"patch": 0}, r"^forecaster\.patch: .*0 is not allowed; allowed: null or an integer >= 1"),
    ({"trend": "linear"}, r"^forecaster\.trend: .*'linear' is not allowed; allowed: none, window"),
    ({"device": "tpu"}, r"^forecaster\.device: .*'tpu' is not allowed; allowed: auto, cpu, cuda"),
    ({"warm_start": "yes"}, r"^forecaster\.warm_start: .*'yes' is not allowed; allowed: true or false"),
])
def test_a_bad_setting_is_one_spec_error_naming_the_key(spec, message):
    with pytest.raises(SpecError, match=message):
        forecaster_factory({"name": "transformer", **spec})
    with pytest.raises(TypeError, match="hidden is not a setting"):
        TransformerForecaster(hidden=64)


def test_keywords_are_the_lstms_but_its_network_plus_the_transformers_network():
    """One list of shared settings: the Transformer's keywords and defaults are the LSTM's (but hidden, layers
    and dropout) plus TransformerConfig's, dropout 0.1 (the LSTM's is 0.25)."""
    import inspect
    from dataclasses import fields

    from agents.forecasting.lstm import LSTMForecaster
    from agents.forecasting.transformer import TransformerConfig

    def defaults(cls):
        return {p.name: p.default for p in inspect.signature(cls).parameters.values()}

    network = {f.name: f.default for f in fields(TransformerConfig)}
    shared = {k: v for k, v in defaults(LSTMForecaster).items() if k not in ("hidden", "layers", "dropout")}
    assert defaults(TransformerForecaster) == {**shared, **network}
    assert network == {"patch": None, "d_model": 32, "heads": 4, "layers": 2, "feedforward": 64, "dropout": 0.1}
    assert list(defaults(TransformerForecaster))[:3] == ["context", "max_horizon", "patch"]
    model = TransformerForecaster(device="cpu")
    assert (model.hidden, model.layers, model.dropout) == (32, 2, 0.1)
    assert all(getattr(model, k) == v for k, v in shared.items() if k not in ("device", "levels"))
    assert model.levels == (0.1, 0.5, 0.9)


@pytest.mark.parametrize("setting, allowed", [
    ({"max_epochs": 0}, "an integer >= 1"),
    ({"levels": []}, r"a non-empty list of numbers in \(0, 1\)"),
    ({"lr": -1.0}, "a number > 0"),
    ({"device": "gpu"}, "auto, cpu, cuda or cuda:N"),
])
def test_a_bad_shared_keyword_names_the_transformer_and_the_key(setting, allowed):
    """Checked by the LSTM, reported under the Transformer's name, and by the factory under the key."""
    (key, value), = setting.items()
    message = rf"TransformerForecaster: {key} {re.escape(repr(value))} is not allowed; allowed: {allowed}$"
    with pytest.raises(ValueError, match="^" + message):
        TransformerForecaster(**setting)
    with pytest.raises(SpecError, match=rf"^forecaster\.{key}: {message}"):
        forecaster_factory({"name": "transformer", **setting})


def test_an_unknown_keyword_is_a_type_error_listing_the_allowed():
    with pytest.raises(TypeError, match=r"^TransformerForecaster: width is not a setting; allowed: context, "
                                        r"max_horizon, patch, d_model, heads, layers, feedforward, dropout, "
                                        r"batch_size, .*, verbose$"):
        TransformerForecaster(width=3)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    """The fitted Transformer saved once (ONNX export and parity check): its directory."""
    from agents.forecasting.saved import save_forecaster

    model, panel, _, _ = fitted
    return save_forecaster(model, "transformer", panel, tmp_path_factory.mktemp("saved") / "transformer")


def test_saved_and_loaded_it_forecasts_as_before_without_torch(fitted, saved, tmp_path):
    """Saved as the LSTM is (forecaster.json naming the kind, transformer.onnx), loaded and run by onnxruntime
    in a process that never imports torch: the mean and the quantiles are torch's, to float32 precision."""
    model, panel, _, _ = fitted
    manifest = json.loads((saved / "forecaster.json").read_text())
    assert manifest["format"] == "twin.forecaster/1" and manifest["name"] == "transformer"
    assert set(manifest["files"]) == {"transformer.onnx"} and manifest["max_horizon"] == 14
    assert manifest["transformer"]["onnx_max_abs_diff"] <= 1e-4  # the parity check at save time passed
    assert {k: manifest["parameters"][k] for k in ("d_model", "heads", "layers", "feedforward", "patch")} == \
        {"d_model": 16, "heads": 2, "layers": 1, "feedforward": 32, "patch": None}
    with open(tmp_path / "panel.pkl", "wb") as f:
        pickle.dump(panel, f)
    code = ("import pickle, sys\nimport numpy as np\nfrom agents.forecasting.saved import load_forecaster\n"
            f"panel = pickle.load(open({str(tmp_path / 'panel.pkl')!r}, 'rb'))\n"
            f"forecast = load_forecaster({str(saved)!r}).forecast(panel, 14)\n"
            f"np.savez({str(tmp_path / 'out.npz')!r}, mean=forecast.mean, quantiles=forecast.quantiles)\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"  # served without torch
    got, expected = np.load(tmp_path / "out.npz"), model.predict(14)
    np.testing.assert_allclose(got["mean"], expected.mean, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["quantiles"], expected.quantiles, rtol=0, atol=1e-4)


def test_the_exported_attention_mask_keeps_later_steps_out(fitted, saved):
    """The ONNX model keeps the mask: other promotions from step 7 on change steps 7.. of the served forecast
    only, as in torch (predict_from on the changed history)."""
    from agents.forecasting.saved import load_forecaster

    model, panel, _, _ = fitted
    loaded = load_forecaster(saved)
    covariates = panel.covariates.copy()
    covariates[:, panel.length + 7:, 0] = 1 - covariates[:, panel.length + 7:, 0]
    changed = replace(panel, covariates=covariates)
    before, after = loaded.forecast(panel, 14), loaded.forecast(changed, 14)
    np.testing.assert_allclose(after.mean[:, :7], before.mean[:, :7], rtol=0, atol=1e-6)
    np.testing.assert_allclose(after.quantiles[:, :7], before.quantiles[:, :7], rtol=0, atol=1e-6)
    assert np.abs(after.mean[:, 7:] - before.mean[:, 7:]).max() > 1.0
    expected = model.predict_from(changed, 14)
    np.testing.assert_allclose(after.mean, expected.mean, rtol=0, atol=1e-4)
    np.testing.assert_allclose(after.quantiles, expected.quantiles, rtol=0, atol=1e-4)


def test_what_cannot_be_saved_is_one_clear_error(fitted, tmp_path, monkeypatch):
    """Unfitted; an export that fails; an ONNX model outside the tolerance: each one SpecError naming the
    forecaster, and nothing left behind that loads."""
    import torch

    from agents.forecasting import saved as saving

    model, panel, _, _ = fitted
    with pytest.raises(SpecError, match=r"^forecaster: transformer is not fitted"):
        saving.save_forecaster(TransformerForecaster(**TINY), "transformer", panel, tmp_path / "unfitted")

    def unsupported(*args, **kwargs):
        raise RuntimeError("\x1b[96mNo ONNX function found\x1b[0m for aten.x\n(the exporter's advice)")

    with monkeypatch.context() as patch:
        patch.setattr(torch.onnx, "export", unsupported)
        with pytest.raises(SpecError, match=r"^forecaster: transformer: the ONNX export failed \(RuntimeError: No ONNX "
                                            r"function found for aten\.x\); allowed: a network that torch\.onnx "
                                            r"exports$"):
            saving.save_forecaster(model, "transformer", panel, tmp_path / "export")
    monkeypatch.setattr(saving, "ONNX_TOLERANCE", -1.0)
    with pytest.raises(SpecError, match=r"^forecaster: transformer: the ONNX model differs from torch"):
        saving.save_forecaster(model, "transformer", panel, tmp_path / "parity")
    for directory in ("export", "parity"):
        assert list((tmp_path / directory).iterdir()) == []
