"""Per-series model selection (forecaster=auto): the right candidate on series built to favour each, no look-ahead,
keys checked, and auto_choices.csv from experiments.forecast."""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from agents.forecasting.auto import Auto
from agents.forecasting.classical import MovingAverage, SeasonalNaive
from agents.forecasting.data import panel_from_arrays
from agents.forecasting.factory import FORECASTERS, forecaster_factory
from twin.config import SpecError

ROOT = Path(__file__).resolve().parents[2]
INTERMITTENT = {"croston", "tsb", "adida", "imapa"}
CANDIDATES = ["seasonal_naive", "ets", "arima", "croston", "tsb", "adida", "imapa", "gradient_boosting"]


@pytest.fixture(scope="module")
def kinds():
    """Three kinds of daily series (6 of each, 240 days) and auto fitted on all of them, 2 origins of 14 days, each
    series taking its own best."""
    rng = np.random.default_rng(0)
    t = np.arange(240)
    profile = np.array([30.0, 35, 40, 45, 60, 90, 70])  # a weekly season, nothing else
    season = profile[t % 7][None] * rng.uniform(0.8, 1.2, (6, 1)) + rng.normal(0, 1, (6, 240))
    trend = 20 + rng.uniform(0.4, 0.6, (6, 1)) * t[None] + rng.normal(0, 1, (6, 240))  # a steady linear trend
    # zero-inflated: demand on half the days (mean interval 2: intermittent by Syntetos-Boylan), sizes ~ 5 +- 50%
    intermittent = rng.binomial(1, 0.5, (6, 240)) * np.ceil(rng.lognormal(1.5, 0.5, (6, 240)))
    panel = panel_from_arrays(np.vstack([season, trend, intermittent]))
    # margin 0: every series takes its own best (the default margin keeps the best over all series unless clearly
    # beaten, test_the_margin_keeps_the_candidate_best_over_all_series_unless_clearly_beaten)
    model = forecaster_factory({"name": "auto", "candidates": CANDIDATES, "origins": 2, "max_horizon": 14,
                                "margin": 0})()
    model.fit(panel)
    return panel, model


def test_a_pure_season_picks_a_seasonal_model(kinds):
    _, model = kinds
    chosen = [model.choices[f"s{i}"] for i in range(6)]
    assert set(chosen) <= {"seasonal_naive", "ets", "arima"}, chosen  # the models with a weekly season
    scores = model.validation_scores.iloc[:6]
    # by far: a flat rate misses the weekly profile and scores several times worse
    assert (scores[["seasonal_naive", "ets"]].min(axis=1) * 3 < scores[sorted(INTERMITTENT)].min(axis=1)).all()


def test_a_trend_picks_a_trend_model(kinds):
    _, model = kinds
    chosen = [model.choices[f"s{i}"] for i in range(6, 12)]
    assert set(chosen) <= {"ets", "arima"}, chosen
    scores = model.validation_scores.iloc[6:12]
    # seasonal naive lags a week behind the trend, flat rates further
    assert (scores[["ets", "arima"]].min(axis=1) * 2 < scores["seasonal_naive"]).all()


def test_intermittent_demand_picks_a_flat_rate(kinds):
    # Under MASE (absolute errors) an iid zero-inflated series leaves the flat-rate models (croston, tsb, adida,
    # imapa, and ETS's or ARIMA's level, flat on such data) within a few percent of each other, so which of them
    # wins a series is noise; what loses by structure is repeating last week's zeros and spikes (seasonal naive)
    _, model = kinds
    chosen = [model.choices[f"s{i}"] for i in range(12, 18)]
    flat = INTERMITTENT | {"ets", "arima"}
    assert sum(c in flat for c in chosen) >= 4, chosen
    assert INTERMITTENT & set(chosen), chosen
    scores = model.validation_scores.iloc[12:18]
    intermittent = scores[sorted(INTERMITTENT)].min(axis=1)
    assert intermittent.mean() * 1.1 < scores["seasonal_naive"].mean(), scores
    assert (intermittent < scores[["ets", "arima"]].min(axis=1) * 1.1).all(), scores  # as good as a flat level


def test_multiplicative_demand_driven_by_known_covariates_picks_the_regression():
    # retail demand as the twin builds it: level x weekday x price^-elasticity x exp(sensitivity x weather), with
    # an elasticity and a weather sensitivity per SKU and the prices and weather known ahead
    rng = np.random.default_rng(3)
    n_store, n_sku, t = 3, 4, 300
    n, days = n_store * n_sku, np.arange(t)
    sku = np.tile(np.arange(n_sku), n_store)
    level = rng.uniform(30, 100, n_sku)[sku] * np.repeat(rng.uniform(0.7, 1.3, n_store), n_sku)
    weekday = np.array([0.8, 0.9, 1.0, 1.0, 1.1, 1.4, 0.8])[days % 7]
    price = 1 - 0.3 * (rng.random((n, t)) < 0.2)
    weather = np.tile(np.sin(days / 9.0) + rng.normal(0, 0.5, t), (n, 1))
    rate = (level[:, None] * weekday[None] * price ** -np.array([0.5, 1.5, 2.5, 3.5])[sku][:, None]
            * np.exp(np.array([-0.4, 0.0, 0.3, 0.6])[sku][:, None] * weather))
    panel = panel_from_arrays(rng.poisson(rate).astype(float), covariates=np.stack([price, weather], -1),
                              covariate_names=("price", "weather"), categories={"sku": sku})
    tree = {"name": "gradient_boosting", "max_iter": 60, "quantile_max_iter": 20}
    model = forecaster_factory({"name": "auto", "candidates": ["seasonal_naive", tree, "glm"], "origins": 2,
                                "max_horizon": 14})()
    model.fit(panel)
    scores = model.validation_scores.mean()
    assert scores["glm"] < 0.95 * scores["gradient_boosting"] and scores["glm"] * 3 < scores["seasonal_naive"]
    assert set(model.choices.values()) == {"glm"}, model.choices


def test_segments_choose_per_segment_of_the_horizon():
    # AR(1) around a constant (phi 0.7): the last value is the better forecast one step ahead (error variance
    # 2 (1 - 0.7) V against V for the mean), the long-run mean from two steps on (2 (1 - 0.49) V > V)
    rng = np.random.default_rng(0)
    deviation = np.zeros((10, 400))
    for j in range(1, 400):
        deviation[:, j] = 0.7 * deviation[:, j - 1] + rng.normal(0, 5, 10)
    panel = panel_from_arrays(50 + deviation, freq="MS")  # monthly: 20 validation origins fit in 400 periods
    model = Auto({"last": lambda: MovingAverage(window=1), "mean": lambda: MovingAverage(window=28)}, origins=20,
                 max_horizon=14, margin=0, segments=[1, 14])
    model.fit(panel)
    first, rest = (table.mean() for table in model.segment_scores)
    assert first["last"] < first["mean"] and rest["mean"] < rest["last"], (first, rest)
    frame = model.choices_frame()
    assert list(frame.columns) == ["unique_id", "steps", "chosen", "last", "mean"] and len(frame) == 20
    assert (frame["steps"] == "1").sum() == 10 and (frame["steps"] == "2-14").sum() == 10
    split = [sid for sid, choice in model.choices.items() if choice == "last@1|mean@2-14"]
    assert len(split) >= 6, model.choices
    forecast = model.predict(20)  # steps past the last segment keep its choice
    rows = [panel.ids.index(sid) for sid in split]
    np.testing.assert_allclose(forecast.mean[rows, 0], panel.values[rows, -1])
    np.testing.assert_allclose(forecast.mean[rows, 1:], np.repeat(panel.values[rows, -28:].mean(axis=1)[:, None],
                                                                  19, axis=1))
    # one segment (the default): one choice per series, as before
    whole = Auto(model.candidates, origins=20, max_horizon=14, margin=0)
    whole.fit(panel)
    assert len(whole.segment_scores) == 1
    assert [whole.choices[sid] for sid in panel.ids] == whole.validation_scores.idxmin(axis=1).tolist()


def test_validation_windows_leave_a_whole_year_of_history_where_there_is_room():
    model = Auto([SeasonalNaive], origins=6, max_horizon=30)
    # 500 days: room for origins after a year (365..470 step 30: 4 of them), none before it
    assert model.plan(panel_from_arrays(np.ones((1, 500)))).origins == (380, 410, 440, 470)
    # 300 days: no year to leave, so only max(2 seasons, 8) = 14 days before the first origin
    assert model.plan(panel_from_arrays(np.ones((1, 300)))).origins == (120, 150, 180, 210, 240, 270)
    # monthly data: two seasons (24 months) are more than a year already
    monthly = Auto([SeasonalNaive], origins=6, max_horizon=12)
    assert monthly.plan(panel_from_arrays(np.ones((1, 60)), freq="MS")).origins == (24, 36, 48)


def test_the_margin_keeps_the_candidate_best_over_all_series_unless_clearly_beaten(kinds):
    scores = pd.DataFrame({"a": [0.5, 0.5, 0.5, np.nan, np.nan], "b": [0.45, 0.3, 1.2, np.nan, 0.2]},
                          index=pd.Index([f"s{i}" for i in range(5)], name="unique_id"))
    model = Auto({"a": SeasonalNaive, "b": MovingAverage})  # the default margin, 0.2
    weights = model.choose(scores)
    assert model.fallback == "a"  # mean 0.5 against 0.5375
    # s0: 0.45 is not 20% below 0.5; s1: 0.3 is; s3 has no score; s4 has none for the fallback
    assert [("a", "b")[i] for i in weights.argmax(axis=1)] == ["a", "b", "a", "a", "b"]
    model.margin = 0.0
    assert [("a", "b")[i] for i in model.choose(scores).argmax(axis=1)] == ["b", "b", "a", "a", "b"]
    # on the three kinds: the intermittent series, whose flat-rate candidates are within a few percent of each
    # other, keep the best over all series (a flat level on them), and every seasonal or trend series still gets a
    # seasonal or trend model
    _, fitted = kinds
    default = Auto(fitted.candidates)
    chosen = [CANDIDATES[i] for i in default.choose(fitted.validation_scores).argmax(axis=1)]
    assert default.fallback in {"ets", "arima"}
    assert chosen[12:] == [default.fallback] * 6, chosen
    assert set(chosen[:12]) <= {"seasonal_naive", "ets", "arima"}, chosen


def test_the_margin_widens_where_a_short_history_fits_fewer_validation_windows():
    scores = pd.DataFrame({"a": [1.0, 1.0, 0.5], "b": [0.75, 0.5, 1.5]},
                          index=pd.Index(["s0", "s1", "s2"], name="unique_id"))
    model = Auto({"a": SeasonalNaive, "b": MovingAverage}, origins=6)  # margin 0.2 at 6 windows
    assert model.required_ratio() == pytest.approx(0.8)
    assert [("a", "b")[i] for i in model.choose(scores).argmax(axis=1)] == ["b", "b", "a"]  # fallback a
    # 3 of 6 windows: 0.8 ** sqrt(2) = 0.729; s0's 0.75 is not enough
    assert model.required_ratio(3) == pytest.approx(0.8 ** math.sqrt(2))
    assert [("a", "b")[i] for i in model.choose(scores, windows=3).argmax(axis=1)] == ["a", "b", "a"]
    # 1 of 6: 0.8 ** sqrt(6) = 0.579; s1's 0.5 still leaves
    assert model.required_ratio(1) == pytest.approx(0.8 ** math.sqrt(6))
    assert [("a", "b")[i] for i in model.choose(scores, windows=1).argmax(axis=1)] == ["a", "b", "a"]
    # a fit on a history with room for 3 windows of 14 days (after 14 of history: max(2 weeks, 8)) uses the wider one
    rng = np.random.default_rng(4)
    short = Auto({"a": SeasonalNaive, "b": MovingAverage}, origins=6, max_horizon=14)
    short.fit(panel_from_arrays(50 + rng.normal(0, 5, (3, 14 + 3 * 14))))
    assert len(short.validation_origins) == 3 and short.required_ratio() == pytest.approx(0.8 ** math.sqrt(2))


def test_metric_auto_weighs_the_busiest_series_most_where_the_series_share_a_unit():
    """One busy series (1000 a day, a weekly season) and five small ones (10 a day, white noise): seasonal naive is
    far better on the busy one, the moving average somewhat better on each small one. In units sold (MAE, the
    default where the panel says its series share one unit) the busy series decides the candidate best over the
    panel; in MASE, every series alike, the five small ones do."""
    rng = np.random.default_rng(0)
    t = np.arange(200)
    busy = 1000 + 45 * np.array([1, -1, 1, -1, 1, -1, 0])[t % 7] + rng.normal(0, 20, 200)
    values = np.vstack([busy, 10 + rng.normal(0, 2, (5, 200))])
    candidates = {"seasonal_naive": SeasonalNaive, "moving_average": MovingAverage}
    fitted = {}
    for shared in (True, False):
        model = Auto(candidates, origins=3, max_horizon=14)  # metric="auto", the default
        model.fit(panel_from_arrays(values, shared_unit=shared))
        fitted[shared] = model
    assert (fitted[True].fitted_metric, fitted[True].fallback) == ("mae", "seasonal_naive")
    assert (fitted[False].fitted_metric, fitted[False].fallback) == ("mase", "moving_average")
    for shared, metric in ((True, "mae"), (False, "mase")):  # the same scores as the metric named outright
        named = Auto(candidates, origins=3, max_horizon=14, metric=metric)
        named.fit(panel_from_arrays(values, shared_unit=not shared))
        pd.testing.assert_frame_equal(named.validation_scores, fitted[shared].validation_scores)


def test_shared_unit_candidates_are_validated_only_where_the_series_share_a_unit():
    """glm by default: a Poisson regression of counts, for panels in units sold (the twin), not a file's series."""
    values = 40 + np.random.default_rng(5).normal(0, 4, (4, 120))
    model = Auto({"seasonal_naive": SeasonalNaive}, origins=2, max_horizon=14,
                 shared_unit_candidates={"moving_average": MovingAverage})
    model.fit(panel_from_arrays(values, shared_unit=True))
    assert list(model.validation_scores.columns) == ["seasonal_naive", "moving_average"]
    assert set(model.choices.values()) == {"moving_average"}  # white noise: the average, by far
    model.fit(panel_from_arrays(values))
    assert list(model.validation_scores.columns) == ["seasonal_naive"]
    assert set(model.choices.values()) == {"seasonal_naive"}
    assert list(forecaster_factory({"name": "auto", "shared_unit_candidates": []})().shared_unit_candidates) == []
    # one named in both lists is validated once; labels that clash within a list are numbered past those taken
    both = Auto({"moving_average": MovingAverage}, shared_unit_candidates={"moving_average": SeasonalNaive})
    assert both.candidates_for(panel_from_arrays(values, shared_unit=True)) == {"moving_average": MovingAverage}
    assert list(Auto([MovingAverage, SeasonalNaive, MovingAverage]).candidates) == [
        "moving_average", "seasonal_naive", "moving_average_2"]
    configured = forecaster_factory({"name": "auto", "candidates": ["moving_average", "seasonal_naive",
                                                                    {"name": "moving_average", "window": 7}]})()
    assert list(configured.candidates) == ["moving_average", "seasonal_naive", "moving_average_2"]  # the same rule


def test_predict_takes_each_series_rows_from_its_choice():
    rng = np.random.default_rng(1)
    t = np.arange(150)
    season = 40 + 15 * np.sin(2 * np.pi * t / 7)[None] + rng.normal(0, 1, (4, 150))
    level = 40 + rng.normal(0, 8, (4, 150))  # white noise: last week's values are a poor forecast
    panel = panel_from_arrays(np.vstack([season, level]))
    candidates = ["seasonal_naive", "moving_average", "tsb"]
    model = forecaster_factory({"name": "auto", "candidates": candidates, "max_horizon": 14})()
    model.fit(panel)
    assert [model.choices[f"s{i}"] for i in range(4)] == ["seasonal_naive"] * 4
    assert {model.choices[f"s{i}"] for i in range(4, 8)} <= {"moving_average", "tsb"}
    forecast = model.predict(14)
    for label in set(model.choices.values()):
        alone = forecaster_factory(label)()
        alone.fit(panel)
        expected = alone.predict(14)
        rows = [i for i, sid in enumerate(panel.ids) if model.choices[sid] == label]
        np.testing.assert_allclose(forecast.mean[rows], expected.mean[rows])
        np.testing.assert_allclose(forecast.quantiles[rows], expected.quantiles[rows])
    frame = model.choices_frame()
    assert list(frame.columns) == ["unique_id", "chosen", *candidates]
    assert frame["chosen"].tolist() == [model.choices[sid] for sid in panel.ids]
    assert (frame[candidates].idxmin(axis=1) == frame["chosen"]).all()


class Spy(MovingAverage):
    """A moving average that keeps every history it was fitted on."""

    fitted: list = []

    def fit(self, history):
        Spy.fitted.append(history)
        super().fit(history)


def test_validation_reads_only_prefixes_of_the_fit_history():
    rng = np.random.default_rng(2)
    values = 50 + rng.normal(0, 5, (20, 200))
    Spy.fitted = []
    model = Auto({"spy": Spy, "seasonal_naive": SeasonalNaive}, origins=3, step=10, max_horizon=14)
    model.fit(panel_from_arrays(values).until(150))
    assert model.validation_origins == (116, 126, 136)  # the last window [136, 150) ends with the history
    assert [h.length for h in Spy.fitted] == [116, 126, 136, 150]
    for fitted in Spy.fitted:
        np.testing.assert_array_equal(fitted.values, values[:, :fitted.length])
        assert len(fitted.dates) <= 150
    # values after the fit end changed beyond recognition: the same choices and scores
    changed = values.copy()
    changed[:, 150:] = rng.normal(500, 100, (20, 50))
    again = Auto({"spy": Spy, "seasonal_naive": SeasonalNaive}, origins=3, step=10, max_horizon=14)
    again.fit(panel_from_arrays(changed).until(150))
    assert again.choices == model.choices
    pd.testing.assert_frame_equal(again.validation_scores, model.validation_scores)
    # ... while a change inside the last validation window does move the scores (the check can fail)
    inside = values.copy()
    inside[:, 140:150] += 40
    moved = Auto({"spy": Spy, "seasonal_naive": SeasonalNaive}, origins=3, step=10, max_horizon=14)
    moved.fit(panel_from_arrays(inside).until(150))
    assert not np.allclose(moved.validation_scores.to_numpy(), model.validation_scores.to_numpy())


def test_weight_mode_averages_with_inverse_error_weights():
    rng = np.random.default_rng(3)
    t = np.arange(160)
    values = 40 + 10 * np.sin(2 * np.pi * t / 7)[None] + rng.normal(0, 2, (5, 160))
    panel = panel_from_arrays(values)
    model = Auto({"seasonal_naive": SeasonalNaive, "moving_average": MovingAverage}, max_horizon=14, mode="weight")
    model.fit(panel)
    scores = model.validation_scores.to_numpy()
    np.testing.assert_allclose(model.weights, (1 / scores) / (1 / scores).sum(axis=1, keepdims=True))
    assert (model.weights[:, 0] > model.weights[:, 1]).all()  # the seasonal model, better here, weighs more
    parts = []
    for cls in (SeasonalNaive, MovingAverage):
        alone = cls()
        alone.fit(panel)
        parts.append(alone.predict(14).mean)
    expected = model.weights[:, :1] * parts[0] + model.weights[:, 1:] * parts[1]
    np.testing.assert_allclose(model.predict(14).mean, expected)
    only_best = Auto({"seasonal_naive": SeasonalNaive, "moving_average": MovingAverage}, max_horizon=14,
                     mode="weight", top=1)  # each series' best candidate alone: selection
    only_best.fit(panel)
    np.testing.assert_array_equal(only_best.weights, [[1.0, 0.0]] * 5)
    np.testing.assert_allclose(only_best.predict(14).mean, parts[0])


@pytest.mark.parametrize(("spec", "key"), [
    ({"candidates": ["seasonal_naive", "ets", "crystal_ball"]}, "forecaster.candidates[2].name"),
    ({"candidates": ["ets", {"name": "moving_average", "window": 0}]}, "forecaster.candidates[1].window"),
    ({"candidates": ["ets", 3]}, "forecaster.candidates[1]"),
    ({"candidates": "ets"}, "forecaster.candidates"),
    ({"shared_unit_candidates": ["glm", "crystal_ball"]}, "forecaster.shared_unit_candidates[1].name"),
    ({"shared_unit_candidates": "glm"}, "forecaster.shared_unit_candidates"),
    ({"origins": 0}, "forecaster.origins"),
    ({"step": -1}, "forecaster.step"),
    ({"max_horizon": 0}, "forecaster.max_horizon"),
    ({"metric": "mape"}, "forecaster.metric"),
    ({"mode": "vote"}, "forecaster.mode"),
    ({"top": 0}, "forecaster.top"),
    ({"margin": 1}, "forecaster.margin"),
    ({"segments": [3, 1]}, "forecaster.segments"),
    ({"segments": "daily"}, "forecaster.segments"),
    ({"window": 3}, "forecaster.window"),
])
def test_bad_settings_name_the_key(spec, key):
    with pytest.raises(SpecError, match=f"^{re.escape(key)}: "):
        forecaster_factory({"name": "auto", **spec})


def test_registered_with_default_candidates_and_too_short_a_history_is_an_error():
    assert "auto" in FORECASTERS.allowed()
    model = forecaster_factory({"name": "auto", "max_horizon": 60})()
    assert list(model.candidates) == CANDIDATES and list(model.shared_unit_candidates) == ["glm"]
    with pytest.raises(ValueError, match="max_horizon"):
        model.fit(panel_from_arrays(np.ones((2, 50))))


def test_conf_forecaster_auto_yaml_states_the_class_defaults():
    """forecaster=auto (conf/forecaster/auto.yaml) and Auto() validate alike: origins 6, margin 0.2, ..."""
    conf = yaml.safe_load((ROOT / "conf" / "forecaster" / "auto.yaml").read_text())
    defaults = {p.name: p.default for p in inspect.signature(Auto).parameters.values()}
    assert conf.pop("name") == "auto" and conf.pop("candidates") == CANDIDATES
    assert conf.pop("shared_unit_candidates") == ["glm"]
    assert conf == {key: defaults[key] for key in conf} and conf["origins"] == 6
