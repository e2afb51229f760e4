"""Customer demand at stores: the true mean per store, SKU and day, and the draws.

The mean is a product of factors, precomputed once per run as a (days, SKUs)
matrix per region:

    base mean (SKU) x store scale x weekly x yearly seasonality x trend
    x holiday lift x price effect (promotion discount, elasticity) x promotion lift
    x weather effect (region index, SKU sensitivity)

Shocks multiply it further at run time. The covariates (promotion flag, price,
holiday lift, weather index) are kept so forecasters can use them, and `mean`
is the oracle a forecaster can be compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.spec import NetworkSpec, SkuCatalog
from twin.streams import Streams


@dataclass(frozen=True)
class Covariates:
    """What a forecaster may know besides past demand: per day (and SKU, or region) over the horizon."""

    promotion: np.ndarray          # (days, SKUs) bool: SKU on promotion
    price: np.ndarray              # (days, SKUs) shelf price (discounted during promotions)
    holiday: np.ndarray            # (days,) holiday lift (1 on ordinary days)
    weather: dict[str, np.ndarray]  # region -> (days,) weather index


DAY_STRIDE = 1 << 50  # random values reserved per store-day, far more than one day uses


class DemandModel:
    """True demand process of a network over a horizon; draws come from per-store streams."""

    def __init__(self, network: NetworkSpec, horizon: int, streams: Streams) -> None:
        skus, spec = network.skus, network.demand
        self.skus = skus
        self.horizon = horizon
        days = np.arange(horizon)
        doy = days % 365
        weekly = np.asarray(spec.weekly, dtype=float)
        weekly = weekly / weekly.mean()
        seasonal = 1 + spec.yearly_amplitude * np.cos(2 * np.pi * (doy - spec.yearly_peak_day) / 365)
        trend = 1 + spec.trend_per_year * days / 365
        self.holiday = np.ones(horizon)
        for h in spec.holidays:
            in_window = (doy - h.day) % 365 < h.duration_days  # a window may run into the next year
            self.holiday[in_window] *= h.lift
        calendar = weekly[days % 7] * seasonal * trend * self.holiday

        self.promotion = _draw_promotions(spec.promotion, horizon, skus.n, streams.generator("network", "promotion"))
        discount = spec.promotion.discount * self.promotion
        self.price = skus.price[None, :] * (1 - discount)
        price_effect = (1 - discount) ** (-skus.price_elasticity[None, :])
        promo_lift = np.where(self.promotion, spec.promotion.extra_lift, 1.0)
        self.sku_day = calendar[:, None] * price_effect * promo_lift * skus.mean[None, :]

        self.regions = sorted({n.region for n in network.nodes})
        self.weather = {r: _draw_weather(spec.weather_ar, spec.weather_sd, doy, streams.generator(r, "weather"))
                        for r in self.regions}
        self._region_rate = {}
        for r in self.regions:
            if np.any(skus.weather_sensitivity != 0):
                effect = np.exp(np.outer(self.weather[r], skus.weather_sensitivity))
                self._region_rate[r] = self.sku_day * effect
            else:
                self._region_rate[r] = self.sku_day

        self.stores = [n for n in network.nodes if n.kind == "store"]
        self._samplers = {n.name: StoreDemand(n.name, n.region, n.demand_scale, network, streams)
                          for n in self.stores}

    def mean(self, store: str, day: int, multiplier: np.ndarray | float | None = None) -> np.ndarray:
        """Expected demand of every SKU at `store` on `day` (the oracle forecast); None: no multiplier."""
        sampler = self._samplers[store]
        rate = self._region_rate[sampler.region][day] * sampler.scale
        return rate if multiplier is None else rate * multiplier

    def covariates(self) -> Covariates:
        """The covariates of this run (promotions and weather are drawn per seed)."""
        return Covariates(promotion=self.promotion, price=self.price, holiday=self.holiday, weather=self.weather)

    def draw(self, store: str, day: int, mean: np.ndarray, multiplier: np.ndarray | float | None = None) -> np.ndarray:
        """Day `day`'s demand of every SKU at `store` around the expected demand `mean` (which holds the shocks'
        `multiplier` already; a history's model, twin/demand_history.py, needs it)."""
        return self._samplers[store].draw(day, mean)

    def mean_matrix(self, store: str) -> np.ndarray:
        """Expected demand (days, SKUs) at `store` over the horizon, without shocks."""
        sampler = self._samplers[store]
        return self._region_rate[sampler.region] * sampler.scale

    def variance_matrix(self, store: str) -> np.ndarray:
        """Variance (days, SKUs) of each day's draw at `store` around its expected demand, without shocks."""
        return draw_variance(self.mean_matrix(store), self.skus)

    def sample(self, store: str, day: int, multiplier: np.ndarray | float | None = None) -> np.ndarray:
        """One day's demand of every SKU at `store`."""
        return self._samplers[store].draw(day, self.mean(store, day, multiplier))


class StoreDemand:
    """Draws a store's daily demand vector, one vectorised call per demand law."""

    def __init__(self, name: str, region: str, scale: float, network: NetworkSpec, streams: Streams) -> None:
        skus = network.skus
        self.region = region
        self.scale = scale
        self.rng = streams.generator(name, "demand")
        self.start = self.rng.bit_generator.state
        self.truncate = network.demand.truncate_normal
        self.integer = network.demand.integer_units
        self.n = skus.n
        # one group per demand law, in order of first appearance, with its SKUs' parameters picked out once
        # here rather than every day (draws are the engine's hot spot; the draws themselves are unchanged)
        dist = np.asarray(skus.dist)
        self.groups = []
        for law in dict.fromkeys(skus.dist):
            idx = _as_slice(np.flatnonzero(dist == law))
            self.groups.append(_LawGroup(law, idx, skus.dispersion[idx], 1 - skus.zero_prob[idx], skus.cv[idx]))

    def draw(self, day: int, mean: np.ndarray) -> np.ndarray:
        # Each day draws from its own segment of the store's stream. Poisson and gamma samplers use a number
        # of random values that depends on the mean, so without this a demand shock on one day would shift
        # every later draw: two scenarios with the same seed would then differ after the shock by sampling
        # noise, not only by the shock (common random numbers across scenarios, not only across policies).
        bit_generator = self.rng.bit_generator
        bit_generator.state = self.start
        bit_generator.advance(day * DAY_STRIDE)
        out = np.empty(self.n)
        for group in self.groups:
            out[group.idx] = self._draw(group, mean[group.idx])  # integer draws become floats here
        return out

    def _draw(self, g: _LawGroup, mean: np.ndarray) -> np.ndarray:
        rng = self.rng
        if g.law == "poisson":
            return rng.poisson(mean)
        if g.law == "negative_binomial":  # as a gamma-Poisson mixture (what numpy does inside, less checking)
            return rng.poisson(rng.gamma(g.dispersion, mean / g.dispersion))
        if g.law == "zero_inflated_poisson":  # Poisson draws only where the structural zero did not strike
            kept = rng.random(len(mean)) < g.keep
            out = np.zeros(len(mean))
            out[kept] = rng.poisson(mean[kept] / g.keep[kept])
            return out
        draws = rng.normal(mean, g.cv * mean)  # normal
        if self.truncate:
            draws = np.maximum(draws, 0.0)
        return np.rint(draws) if self.integer else draws


def draw_variance(mean: np.ndarray, skus: SkuCatalog) -> np.ndarray:
    """Variance of one store-day's demand draw whose expected value is `mean` (..., SKUs), per SKU's law.

        poisson                 m
        negative_binomial       m + m^2 / dispersion       (a gamma-Poisson mixture with shape `dispersion`)
        zero_inflated_poisson   m (1 + m (1 - keep) / keep) (Poisson(m / keep) with probability keep = 1 - zero_prob)
        normal                  (cv m)^2

    Normal draws are taken as N(m, (cv m)^2): truncation at zero and rounding to whole units are ignored.
    """
    variance = np.array(mean, dtype=float)  # a copy; poisson: m
    dist = np.asarray(skus.dist)
    nb = dist == "negative_binomial"
    variance[..., nb] = mean[..., nb] + mean[..., nb] ** 2 / skus.dispersion[nb]
    zip_ = dist == "zero_inflated_poisson"
    keep = 1 - skus.zero_prob[zip_]
    variance[..., zip_] = mean[..., zip_] * (1 + mean[..., zip_] * (1 - keep) / keep)
    normal = dist == "normal"
    variance[..., normal] = (skus.cv[normal] * mean[..., normal]) ** 2
    return variance


@dataclass(frozen=True)
class _LawGroup:
    """The SKUs of a store that share one demand law, and their parameters."""

    law: str
    idx: slice | np.ndarray     # a slice when the SKUs are contiguous (the usual case): views, no copies
    dispersion: np.ndarray      # negative binomial r
    keep: np.ndarray            # zero-inflated Poisson: 1 - probability of a structural zero
    cv: np.ndarray              # normal


def _as_slice(idx: np.ndarray) -> slice | np.ndarray:
    """`idx` (sorted, unique) as a slice if it is a contiguous run, else unchanged."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _draw_promotions(spec, horizon: int, n_sku: int, rng: np.random.Generator) -> np.ndarray:
    """Promotion flags (days, SKUs): each SKU may start a promotion at the start of each week."""
    active = np.zeros((horizon, n_sku), dtype=bool)
    if spec.weekly_probability <= 0:
        return active
    for start in range(0, horizon, 7):
        starts = rng.random(n_sku) < spec.weekly_probability
        starts &= ~active[start]
        active[start:start + spec.duration_days, starts] = True
    return active


def _draw_weather(ar: float, sd: float, doy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A weather index per day: a yearly cycle (peak in July) plus AR(1) noise with stationary sd `sd`."""
    cycle = np.cos(2 * np.pi * (doy - 196) / 365)
    noise = np.zeros(len(doy))
    shocks = rng.normal(0, sd * np.sqrt(1 - ar**2), len(doy))
    level = rng.normal(0, sd)
    for t in range(len(doy)):
        level = ar * level + shocks[t]
        noise[t] = level
    return cycle + noise
