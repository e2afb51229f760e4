"""The named scenarios, one small builder class each, composed from twin.shocks.

Every builder's fields are its parameters (the keys of conf/scenario/<name>.yaml).
Days count from day 0 of the run (day-of-year 0 is 1 January). Windows that reach
past the horizon are clipped; shocks that start after it are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scenarios.base import (
    KEY,
    ScenarioBuilder,
    check_known,
    check_reroute,
    param,
    pick_dc,
    scaled,
    sku_groups,
    store_regions,
    suppliers,
    whole_days,
)
from twin.config import ConfigReader
from twin.shocks import CapacityCut, DcClosure, DemandShock, LeadTimeShock, Shock, SupplierOutage, shock_from_dict
from twin.spec import NetworkSpec


@dataclass(frozen=True)
class Baseline(ScenarioBuilder):
    """Business as usual: no shocks."""

    name = "baseline"
    description = "Business as usual: no shocks."

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        return []


@dataclass(frozen=True)
class Covid2020(ScenarioBuilder):
    """COVID-19 in 2020 as a composition of shocks, on a timeline that starts at `start_day`.

    Days after `start_day` (every duration times `time_scale`):

    - 0-25: panic buying, `surge_groups` demand x `panic_multiplier`;
    - 25-67: pantry destocking, `surge_groups` demand x `destock_multiplier`;
    - 14-70: lockdown, `lockdown_groups` demand x `lockdown_multiplier`;
    - 7-127: supplier lead times x `lead_time_multiplier` (LeadTimeShock on every supplier);
    - 21 for `dc_closure_days`: one DC closed (`dc`, default the first DC by name), its stores
      re-routed to their backup DC when `reroute` (else starved);
    - then recovery: every parameter back to normal.

    `severity` moves every multiplier away from 1 (0: no effect, 1: as given, 2: twice as far).
    SKU groups must exist in the network: an unknown group is an error, `[]` means all SKUs.
    """

    name = "covid_2020"
    description = ("COVID-19 2020: panic buying then destocking of staples, a lockdown dip in general goods, "
                   "long supplier lead times, one DC closed for two weeks, then recovery.")

    start_day: int = param(70, low=0)
    severity: float = param(1.0, low=0, high=3)
    time_scale: float = param(1.0, low=0.05, high=10)
    panic_multiplier: float = param(2.5, low=0, high=20)
    destock_multiplier: float = param(0.7, low=0, high=1)
    lockdown_multiplier: float = param(0.7, low=0, high=1)
    lead_time_multiplier: float = param(2.5, low=0, high=10)
    surge_groups: tuple[str, ...] = ("staples",)
    lockdown_groups: tuple[str, ...] = ("general",)
    dc: str | None = None
    dc_closure_days: int = param(14, low=0)
    reroute: bool = True

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        surge = sku_groups(network, "surge_groups", self.surge_groups)
        lockdown = sku_groups(network, "lockdown_groups", self.lockdown_groups)
        dc = pick_dc(network, "dc", self.dc)
        if dc is not None and self.reroute and self.dc_closure_days > 0:
            check_reroute(network, dc)

        def at(offset: float) -> int:
            return self.start_day + whole_days(offset * self.time_scale)

        def m(name: str) -> float:
            return scaled(name, getattr(self, name), self.severity)

        shocks: list[Shock] = [
            DemandShock(at(0), at(25), multiplier=m("panic_multiplier"), groups=surge),
            DemandShock(at(25), at(67), multiplier=m("destock_multiplier"), groups=surge),
            DemandShock(at(14), at(70), multiplier=m("lockdown_multiplier"), groups=lockdown),
            LeadTimeShock(at(7), at(127), multiplier=m("lead_time_multiplier"),
                          sources=suppliers(network, "suppliers", ())),
        ]
        if dc is not None and self.dc_closure_days > 0:
            start = at(21)
            shocks.append(DcClosure(start, start + whole_days(self.dc_closure_days * self.time_scale), dc=dc,
                                    reroute=self.reroute))
        return shocks


@dataclass(frozen=True)
class FlashSale(ScenarioBuilder):
    """A short, big demand surge: `multiplier` for `days` days from `start_day`, optionally in some regions
    or SKU groups only."""

    name = "flash_sale"
    description = "A flash sale: a few days of demand several times the normal level."

    start_day: int = param(180, low=0)
    days: int = param(3, low=1)
    multiplier: float = param(4.0, low=0, high=100)
    groups: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        return [DemandShock(self.start_day, self.start_day + self.days, multiplier=self.multiplier,
                            groups=sku_groups(network, "groups", self.groups),
                            regions=store_regions(network, "regions", self.regions))]


@dataclass(frozen=True)
class PortStrike(ScenarioBuilder):
    """A port strike: supplier lead times x `lead_time_multiplier` for `days` days; with `outage_days` > 0
    the suppliers first ship nothing at all for that many days (orders wait in their backlog)."""

    name = "port_strike"
    description = "A port strike: supplier lead times several times longer for weeks (optionally a full stop first)."

    start_day: int = param(120, low=0)
    days: int = param(28, low=1)
    lead_time_multiplier: float = param(3.0, low=0, high=50)
    outage_days: int = param(0, low=0)
    suppliers: tuple[str, ...] = ()

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        names = suppliers(network, "suppliers", self.suppliers)
        shocks: list[Shock] = [LeadTimeShock(self.start_day, self.start_day + self.days,
                                             multiplier=self.lead_time_multiplier, sources=names)]
        if self.outage_days > 0:
            shocks += [SupplierOutage(self.start_day, self.start_day + self.outage_days, supplier=s) for s in names]
        return shocks


@dataclass(frozen=True)
class DcOutage(ScenarioBuilder):
    """One DC ships nothing for `days` days (fire, flood, IT failure); its stores are starved unless `reroute`
    sends their orders to their backup DC."""

    name = "dc_outage"
    description = "A DC outage: one DC ships nothing for two weeks; its stores are starved (or re-routed)."

    start_day: int = param(150, low=0)
    days: int = param(14, low=1)
    dc: str | None = None
    reroute: bool = False

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        dc = pick_dc(network, "dc", self.dc)
        if dc is None:
            return []
        if self.reroute:
            check_reroute(network, dc)
        return [DcClosure(self.start_day, self.start_day + self.days, dc=dc, reroute=self.reroute)]


@dataclass(frozen=True)
class HolidayPeak(ScenarioBuilder):
    """A long, moderate surge over the end-of-year weeks (on top of the network's own holiday lifts), with the
    DCs' capacities cut to `capacity_factor` (congestion, short staff) over the same window.

    The cut multiplies storage, inbound-lane and supply capacities, so it only bites where the network's DCs
    have finite ones (paper_5x20's DCs have a storage capacity)."""

    name = "holiday_peak"
    description = "An end-of-year peak: demand up for six weeks while DC capacity is cut."

    start_day: int = param(320, low=0)
    days: int = param(45, low=1)
    multiplier: float = param(1.3, low=0, high=100)
    groups: tuple[str, ...] = ()
    capacity_factor: float = param(0.6, low=0, high=1)

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        end = self.start_day + self.days
        shocks: list[Shock] = [DemandShock(self.start_day, end, multiplier=self.multiplier,
                                           groups=sku_groups(network, "groups", self.groups))]
        if self.capacity_factor < 1:
            shocks += [CapacityCut(self.start_day, end, node=n.name, factor=self.capacity_factor)
                       for n in network.nodes_of_kind("dc") if n.storage_capacity is not None]
        return shocks


@dataclass(frozen=True)
class Custom(ScenarioBuilder):
    """Shocks listed in the config, each a mapping with a `type` (demand, lead_time, supplier_outage,
    dc_closure, capacity_cut), `start`, `end` and the shock's own fields (see twin.shocks)."""

    name = "custom"
    description = "User-composed shocks from the configuration."

    shocks_config: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Custom:
        """`shocks` is the only parameter: a list of mappings, parsed when the network is known."""
        check_known(cls.name, params, ["shocks"])
        return cls(shocks_config=tuple(ConfigReader(params, KEY).sequence("shocks", ())))

    def shocks(self, network: NetworkSpec, horizon: int) -> list[Shock]:
        return [shock_from_dict(data, network, f"{KEY}.shocks[{i}]") for i, data in enumerate(self.shocks_config)]
