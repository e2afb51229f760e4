"""The observation: one versioned ObsSpec, built from a twin `Snapshot` plus demand forecasts.

Everything that decides from an observation builds it here, from the same two inputs:
the envs (from their engine's snapshot at each decision point), `TrainedPolicy`
(from the snapshot it is given), and anything that starts from a state that did
not come from the twin (a snapshot converted from another system). Nothing here
reads a running engine.

An observation is a (nodes, SKUs, features) float32 array. Every quantity is
divided by the (node, SKU)'s mean daily demand (`scale`), so a value reads as
"days of demand" and one policy works across SKUs of very different volume.

Features of ObsSpec version 1, in order:

    on_hand, backorders              at the decision point, in days of demand
    unshipped                        ordered, not yet dispatched by the supplier (its backlog)
    pipeline_age_0 .. _{A-1}         in transit, by days since dispatch (the last bucket: A-1 or older)
    inventory_position               on hand + in transit + on order - backorders
    forecast_lead_review             forecast demand over lead time + review period
    lead_time_days                   the lane's expected lead time today, / 10
    lead_time_ratio                  today's expected lead time / the nominal one (a lead-time shock raises it)
    demand_cv                        standard deviation / mean of the (node, SKU)'s daily demand (static)
    critical_ratio                   shortage cost / (shortage + holding cost) per unit-day (static; 0 at a DC
                                     whose backorders cost nothing of their own)
    dow_sin, dow_cos, doy_sin, doy_cos  calendar
    shock_<class>                    1 while a shock of that class is active anywhere in the network
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from agents.forecasting.live import DemandForecast
from twin.coverage import protection_periods
from twin.shocks import CapacityCut, DcClosure, DemandShock, LeadTimeShock, SupplierOutage
from twin.snapshot import Snapshot
from twin.stats import demand_over

SHOCK_CLASSES = (DemandShock, LeadTimeShock, SupplierOutage, DcClosure, CapacityCut)
OBS_CLIP = 100.0  # days of demand: beyond this an observation is clipped (keeps networks' inputs bounded)


@dataclass(frozen=True)
class ObsInputs:
    """What an observation is built from, per node (and SKU): the boundary between a twin run and a policy."""

    day: int
    on_hand: np.ndarray            # (nodes, SKUs)
    backorders: np.ndarray         # (nodes, SKUs)
    unshipped: np.ndarray          # (nodes, SKUs)
    pipeline_by_age: np.ndarray    # (nodes, ages, SKUs)
    forecast: np.ndarray           # (nodes, SKUs) over lead time + review period
    lead_time: np.ndarray          # (nodes,) expected lead time today, days
    nominal_lead_time: np.ndarray  # (nodes,)
    shock_flags: np.ndarray        # (len(SHOCK_CLASSES),) 0/1
    profile: ItemProfile
    spread: np.ndarray | None = None  # (nodes, SKUs) the forecast's sd over lead time + review, where asked for

    def rows(self, nodes: np.ndarray) -> ObsInputs:
        """The inputs of `nodes` only (indices): their observation is those rows of the whole network's."""
        p = self.profile
        profile = ItemProfile(scale=p.scale[nodes], demand_cv=p.demand_cv[nodes],
                              critical_ratio=p.critical_ratio[nodes], nominal_lead_time=p.nominal_lead_time[nodes],
                              lead_time_variance=None if p.lead_time_variance is None else p.lead_time_variance[nodes])
        return ObsInputs(day=self.day, on_hand=self.on_hand[nodes], backorders=self.backorders[nodes],
                         unshipped=self.unshipped[nodes], pipeline_by_age=self.pipeline_by_age[nodes],
                         forecast=self.forecast[nodes], lead_time=self.lead_time[nodes],
                         nominal_lead_time=self.nominal_lead_time[nodes], shock_flags=self.shock_flags,
                         profile=profile, spread=None if self.spread is None else self.spread[nodes])


@dataclass(frozen=True)
class ItemProfile:
    """What is known of each (node, SKU) before a run: demand level and variability, its cost ratio, and the
    nominal lead time of each node's inbound lane."""

    scale: np.ndarray              # (nodes, SKUs) mean daily demand (floored above 0)
    demand_cv: np.ndarray          # (nodes, SKUs)
    critical_ratio: np.ndarray     # (nodes, SKUs) in [0, 1]
    nominal_lead_time: np.ndarray  # (nodes,) days
    lead_time_variance: np.ndarray | None = None  # (nodes,) days^2 of the inbound lane; needed by over_protection

    def over_protection(self, review_period: int) -> DemandForecast:
        """The long-run demand (mean and standard deviation) over each node's nominal lead time + review period:
        what a static base-stock's levels are set from (DemandStats.over, with the floored mean `scale`)."""
        if self.lead_time_variance is None:
            raise ValueError("ItemProfile.over_protection: this profile has no lead_time_variance")
        mean, spread = demand_over(self.scale, (self.demand_cv * self.scale) ** 2, self.lead_time_variance,
                                   protection_periods(self.nominal_lead_time, review_period))
        return DemandForecast(mean=mean, spread=spread)


@dataclass(frozen=True)
class ObsSpec:
    """Versioned observation layout: named features, built from ObsInputs."""

    pipeline_ages: int = 8
    version: int = 1

    @cached_property  # read at every decision point (n_features): built once per spec
    def feature_names(self) -> tuple[str, ...]:
        return (("on_hand", "backorders", "unshipped")
                + tuple(f"pipeline_age_{a}" for a in range(self.pipeline_ages))
                + ("inventory_position", "forecast_lead_review", "lead_time_days", "lead_time_ratio",
                   "demand_cv", "critical_ratio", "dow_sin", "dow_cos", "doy_sin", "doy_cos")
                + tuple(f"shock_{cls.__name__}" for cls in SHOCK_CLASSES))

    @cached_property
    def n_features(self) -> int:
        return len(self.feature_names)

    def build(self, x: ObsInputs) -> np.ndarray:
        """The observation (nodes, SKUs, features), float32, clipped to [-OBS_CLIP, OBS_CLIP]."""
        n, k = x.on_hand.shape
        inv_scale = 1.0 / x.profile.scale
        in_transit = x.pipeline_by_age.sum(axis=1)
        position = x.on_hand + in_transit + x.unshipped - x.backorders
        out = np.empty((n, k, self.n_features), dtype=np.float32)
        out[:, :, 0] = x.on_hand * inv_scale
        out[:, :, 1] = x.backorders * inv_scale
        out[:, :, 2] = x.unshipped * inv_scale
        a = self.pipeline_ages
        out[:, :, 3:3 + a] = (x.pipeline_by_age * inv_scale[:, None, :]).transpose(0, 2, 1)
        j = 3 + a
        out[:, :, j] = position * inv_scale
        out[:, :, j + 1] = x.forecast * inv_scale
        out[:, :, j + 2] = (x.lead_time / 10.0)[:, None]
        out[:, :, j + 3] = (x.lead_time / np.maximum(x.nominal_lead_time, 1e-9))[:, None]
        out[:, :, j + 4] = x.profile.demand_cv
        out[:, :, j + 5] = x.profile.critical_ratio
        dow, doy = 2 * np.pi * (x.day % 7) / 7, 2 * np.pi * (x.day % 365) / 365
        out[:, :, j + 6: j + 10] = (np.sin(dow), np.cos(dow), np.sin(doy), np.cos(doy))
        out[:, :, j + 10:] = x.shock_flags
        np.clip(out, -OBS_CLIP, OBS_CLIP, out=out)
        return out


def observation_inputs(snapshot: Snapshot, forecast: DemandForecast, profile: ItemProfile,
                       spec: ObsSpec) -> ObsInputs:
    """ObsInputs of the network in `snapshot`, with `forecast` over each node's protection period."""
    active = {type(s) for s in snapshot.disruptions}
    flags = np.array([float(any(issubclass(a, cls) for a in active)) for cls in SHOCK_CLASSES])
    return ObsInputs(day=snapshot.day, on_hand=snapshot.on_hand, backorders=snapshot.backorders,
                     unshipped=snapshot.on_order, pipeline_by_age=snapshot.pipeline_by_age(spec.pipeline_ages),
                     forecast=forecast.mean, lead_time=snapshot.expected_lead_time,
                     nominal_lead_time=profile.nominal_lead_time, shock_flags=flags, profile=profile,
                     spread=forecast.spread)
