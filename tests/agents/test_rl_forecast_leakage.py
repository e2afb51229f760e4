"""No look-ahead in training: what the agents observe of a learned forecast holds no demand after today.

The envs are built as `experiments.train` builds them: `TrainingSetup.from_plain` (the network env, with or
without `env.worlds`, or the single-node env of a case file) and the agent's RLlib `AlgorithmConfig`, whose env
class is instantiated on its env_config, as an env runner does. Two runs of one env setup share the episode seed
and the actions; in the second, every store's customer demand from day CHANGE on is 3 x its draw (the run's
demand model is wrapped where the engine draws it). The twin draws each store-day from that day's own segment of
the store's stream (twin/demand.py), so the runs' demand is identical before CHANGE and differs from it on, which
each test asserts of the demand both runs logged.

At the decision point of day d the twin has drawn the demand of days < d only, so every observation up to and
including day CHANGE must be identical and the next one must differ (stock has met the changed demand). The
forecast itself must change at the first refit after CHANGE (the weekly schedule of `Refitting`): the forecaster
does read the demand, just no day of it too early. A deliberately leaky forecaster (it also fits on today's
demand, drawn after the decision) is caught by the same harness at day CHANGE: the harness can fail.

An episode of DAYS = 21 ends on a refit day, so its last observation (after the last day, no decision follows)
also checks that a learned forecaster does not refit where no day is left to forecast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from gymnasium import spaces

from agents.forecasting.factory import forecaster_factory
from agents.forecasting.live import LiveForecaster, Refitting
from agents.rl.algorithms import PPOAgent, Resources, TrainingSetup
from scenarios.reference import read_case_data
from twin.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
NETWORK = yaml.safe_load((ROOT / "conf/network/small.yaml").read_text())
CASE = ROOT / "tests/reference_cases/case_base_stock_SS_example_4_4_L4.json"
CHANGE = 7   # demand differs from this day on; a refit day of the weekly schedule
REFIT = 7    # Refitting's default refit_every, which the env's forecasters use
DAYS = 21    # refits on days 0, 7 and 14; the run ends on day 21, a refit day
SEED = 11
# a distribution of worlds (agents/envs/worlds.py) whose shocks may start inside the episode
WORLDS = {"scenarios": {"flash_sale": 1.0, "port_strike": 1.0, "holiday_peak": 1.0},
          "start_day": {"low": 2, "high": 12}, "severity": {"low": 0.5, "high": 1.5},
          "demand_profile": {"scale": {"low": 0.8, "high": 1.2}, "yearly_amplitude": {"low": 0.0, "high": 0.3}}}


def training_env(kind: str, forecaster: str, **env_settings):
    """The env an RLlib env runner builds for experiments.train: `network` (the small network), `worlds` (the same
    with env.worlds) or `single_node` (a case file: the single-node Gymnasium env, `single_node_env.forecaster`);
    `env_settings`: more keys of the env section."""
    env = {"episode_days": DAYS, "forecaster": forecaster, **env_settings}
    if kind == "single_node":
        plain = {"case": read_case_data(CASE), "env": env}
    else:
        plain = {"network": NETWORK, "scenario": {"name": "baseline"},
                 "env": {**env, "worlds": WORLDS} if kind == "worlds" else env}
    setup = TrainingSetup.from_plain(plain)
    assert setup.single_node == (kind == "single_node")
    config = PPOAgent().algorithm_config(setup, Resources(), seed=0)
    return config.env(config.env_config)


class SeesToday(Refitting):
    """Deliberately leaky (test only): fitted on the demand up to and including today, which the twin draws after
    the decision; it reads today's draw from the run's demand model as the engine will draw it (each day's draw
    restarts from its own segment of the stream, so reading it does not change the run)."""

    def history(self, day, future):
        engine = self.engine
        self.log = engine.demand_log.copy()
        if day < engine.horizon:
            for i in self.stores:
                name = engine.topology.names[i]
                multiplier = engine.effects.demand[i] if engine.demand_shocked else None
                mean = engine.demand_model.mean(name, day, multiplier)
                self.log[day, i] = engine.demand_model.draw(name, day, mean, multiplier)
            day += 1
        return super().history(day, future)


def tripled_from(engine: Engine, first_day: int) -> None:
    """From `first_day` on, every store's demand in this run is 3 x what it would have been."""
    model = engine.demand_model
    draw = model.draw

    def changed(store, day, mean, multiplier=None):
        out = draw(store, day, mean, multiplier)
        return 3 * out if day >= first_day else out

    model.draw = changed  # the engine looks the method up at each draw


def middle(space: spaces.Space):
    """A fixed action: the middle of the grid (for every SKU of a node)."""
    if isinstance(space, spaces.Discrete):
        return int(space.n // 2)
    return np.full(space.shape, space.nvec.flat[0] // 2, dtype=np.int64)


@dataclass
class Run:
    obs: list[np.ndarray]       # at each decision point, day 0 to DAYS (the last one after the run's last day)
    forecast: list[np.ndarray]  # the forecast's mean (nodes, SKUs) the observation holds, at the same points
    demand: np.ndarray          # (DAYS, nodes, SKUs) every store's customer demand


def run(env, changed: bool, forecaster: LiveForecaster | None = None) -> Run:
    """One episode of seed SEED with fixed actions; `changed`: demand tripled from day CHANGE on."""
    sim = getattr(env, "par_env", env).sim
    if forecaster is not None:
        sim.forecaster = forecaster
    multi = hasattr(env, "par_env")
    obs, _ = env.reset(seed=SEED)
    demand = sim.engine.record_demand()  # from day 0: the decision point of day 0 comes before its demand
    if changed:
        tripled_from(sim.engine, CHANGE)
    if multi:
        actions = {a: middle(env.action_spaces[a]) for a in env.possible_agents}
    flat = (lambda o: np.stack([o[a] for a in env.possible_agents])) if multi else np.asarray
    out = Run([flat(obs)], [sim._forecast.copy()], demand)
    done = False
    while not done:
        if multi:
            obs, _, _, truncated, _ = env.step(actions)
            done = truncated["__all__"]
        else:
            obs, _, _, done, _ = env.step(middle(env.action_space))
        out.obs.append(flat(obs))
        out.forecast.append(sim._forecast.copy())
    assert len(out.obs) == DAYS + 1 and sim.engine.done
    return out


def first_difference(a: list[np.ndarray], b: list[np.ndarray]) -> int | None:
    """The first decision point at which the two runs' arrays differ (None: never)."""
    return next((day for day, (x, y) in enumerate(zip(a, b, strict=True)) if not np.array_equal(x, y)), None)


def both_runs(kind: str, name: str, make: LiveForecaster | None = None, **env_settings) -> tuple[Run, Run]:
    same = run(training_env(kind, name, **env_settings), changed=False, forecaster=make() if make else None)
    changed = run(training_env(kind, name, **env_settings), changed=True, forecaster=make() if make else None)
    # the construction: demand identical before CHANGE, different on CHANGE and after it
    np.testing.assert_array_equal(same.demand[:CHANGE], changed.demand[:CHANGE])
    assert same.demand[:CHANGE].sum() > 0
    for day in range(CHANGE, DAYS):
        assert not np.array_equal(same.demand[day], changed.demand[day]), day
    return same, changed


@pytest.mark.parametrize(("kind", "name"), [
    ("network", "oracle"), ("network", "seasonal_naive"), ("network", "moving_average"),
    ("network", "gradient_boosting"), ("worlds", "seasonal_naive"), ("worlds", "gradient_boosting"),
    ("single_node", "seasonal_naive"), ("single_node", "gradient_boosting"), ("network", "glm"),
])
def test_training_observations_hold_no_demand_after_today(kind, name):
    same, changed = both_runs(kind, name)
    # identical through the decision point of day CHANGE (it has seen days < CHANGE); the next one has seen more
    assert first_difference(same.obs, changed.obs) == CHANGE + 1
    # the learned forecast moves at its first refit after CHANGE (the oracle reads the demand model, never the draws)
    assert first_difference(same.forecast, changed.forecast) == (None if name == "oracle" else CHANGE + REFIT)


def test_a_forecaster_fitted_once_before_the_episode_sees_no_demand_after_today():
    """env.forecast_refit_every=0 (the README's Table 2 with a learned forecast): gradient boosting fitted once on
    the year before the episode, re-forecast weekly from the demand seen; the forecast moves at the first weekly
    re-forecast after CHANGE, and never earlier."""
    same, changed = both_runs("network", "gradient_boosting", forecast_refit_every=0)
    sim = training_env("network", "gradient_boosting", forecast_refit_every=0).par_env.sim
    assert sim.forecaster.refit_every == 0
    assert first_difference(same.obs, changed.obs) == CHANGE + 1
    assert first_difference(same.forecast, changed.forecast) == CHANGE + REFIT


def test_a_small_lstm_refitted_as_in_training_sees_no_demand_after_today():
    """The LSTM, too small to learn much and quick to fit, in the env's place of `env.forecaster=lstm`
    (a Refitting of the same class; the env builds it with the default network, a minute per run on 2 cores)."""
    lstm = {"name": "lstm", "hidden": 8, "layers": 1, "max_epochs": 2, "windows_per_epoch": 256, "max_horizon": 14,
            "verbose": False}
    same, changed = both_runs("network", "seasonal_naive", lambda: Refitting(forecaster_factory(lstm), "lstm"))
    assert first_difference(same.obs, changed.obs) == CHANGE + 1
    assert first_difference(same.forecast, changed.forecast) == CHANGE + REFIT


@pytest.mark.parametrize(("kind", "base"), [("network", "moving_average"), ("worlds", "moving_average"),
                                          ("single_node", "moving_average"), ("network", "seasonal_naive")])
def test_the_harness_catches_a_forecaster_that_sees_todays_demand(kind, base):
    same, changed = both_runs(kind, base, lambda: SeesToday(forecaster_factory(base), "sees_today"))
    forecast_day, obs_day = first_difference(same.forecast, changed.forecast), first_difference(same.obs, changed.obs)
    assert forecast_day < CHANGE + REFIT  # the honest test's forecast assertion fails
    if base == "moving_average":
        # caught at once: the refit of day CHANGE saw day CHANGE's demand, so its level moved
        assert forecast_day == obs_day == CHANGE
    else:
        # seasonal naive fitted through today repeats today's demand a week on, which only the DC's 6-day
        # protection period reaches, from the next day: no observation differs before an honest run's (stock has
        # met the changed demand by then), but the forecast does, days before an honest refit could move it
        assert obs_day == CHANGE + 1 and CHANGE < forecast_day
