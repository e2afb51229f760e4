"""The state of a supply network in ERP terms: pydantic models whose JSON Schema is published with the API.

One `ErpState` is the network at the decision point of its `as_of` date (today's receipts are on hand, today's
sales are not yet known), per location (a DC or a store, by its node name in the network) and SKU (by name):

    on_hand, backorders               stock and what is owed (to customers at a store, to stores at a DC)
    open_orders                       lines not received yet: shipped (ship_date, expected_arrival) or not
    lead_time (per location)          the inbound lane's lead time: mean and sd, or observed lead times
    pack_size, min_order_quantity,    kept for decisions; the twin's snapshot does not use them
    max_order_quantity,               request-only caps on an order (decide.py: CAPPED_BY_CAPACITY); the twin
    storage_capacity                  has no per-item fields for them
    unit, costs, service_level
    policy (per state)                decide with the bundle's policy, or with a learned bundle's rule fallback
    demand_history or forecast        sales per day or week (for a forecaster), or the client's forecast per day
    disruptions (per state)           a DC closed, a supplier delayed or out, a demand change, a capacity cut

Only what depends on nothing but the state itself is checked here (quantities finite, >= 0 and <= MAX_QUANTITY;
numbers strict: a JSON true is no 1; dates in order and within MIN_DATE..MAX_DATE, the twin's day 0 +- 50 years;
unique ids; the limits below); what needs the network or `as_of` (known names, lines that arrived already) is
checked by `agents.deploy.conversion.state_to_twin`. Errors name the field by pydantic's `loc` (`format_loc`
writes it as `locations[3].items[12].open_orders[0].expected_arrival`).

This module needs pydantic only, so a service can publish the schema without loading the twin.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

FORMAT = "erp.state/1"

# limits: a request beyond them is refused naming the field (a service sizes its work by them)
MAX_LOCATIONS = 10_000
MAX_SKUS_PER_LOCATION = 500
MAX_OPEN_ORDERS_PER_ITEM = 1_000
MAX_DISRUPTIONS = 1_000
MAX_HISTORY_PERIODS = 1_096      # three years of days
MAX_FORECAST_DAYS = 366
MAX_LEAD_TIME_DAYS = 365.0
MAX_LEAD_TIME_OBSERVATIONS = 1_000
MAX_ID_LENGTH = 128
MAX_QUANTITY = 1e12              # units (and money per unit): beyond any real network, far below float overflow
MIN_PACK_SIZE = 1e-6             # units: an order is at most MAX_QUANTITY / MIN_PACK_SIZE = 1e18 packs (finite)

Z_80 = 1.2815515655446004  # the standard normal's 90% quantile (as agents/forecasting/live.py): q90 - q10 = 2 Z_80 sd

# dates: within 50 years of the twin's day 0 (DAY_ZERO, 2021-01-01 in twin/calendar.py, not imported: this module
# needs pydantic only), so every date the conversion derives from them stays within Python's and pandas' range
MIN_DATE = dt.date(1971, 1, 1)
MAX_DATE = dt.date(2071, 1, 1)

Date = Annotated[dt.date, Field(ge=MIN_DATE, le=MAX_DATE, json_schema_extra={
    "formatMinimum": MIN_DATE.isoformat(), "formatMaximum": MAX_DATE.isoformat()})]
# numbers are strict: a JSON boolean (or a numeric string) is refused, not read as 1.0; ints are taken
Quantity = Annotated[float, Field(ge=0, le=MAX_QUANTITY, allow_inf_nan=False, strict=True)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Days = Annotated[float, Field(ge=0, le=MAX_LEAD_TIME_DAYS, allow_inf_nan=False, strict=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def format_loc(loc: Iterable[str | int]) -> str:
    """A field path as text: ('locations', 3, 'items', 0, 'sku') -> 'locations[3].items[0].sku'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ------------------------------------------------------------------ lines, lead times, costs


class OpenOrder(_Model):
    """One open order line of the location for the item: shipped (a `ship_date`) or not shipped yet."""

    quantity: float = Field(gt=0, le=MAX_QUANTITY, allow_inf_nan=False, strict=True,
                            description="units still open (not received)")
    source: Id = Field(description="the supplying location: a supplier or DC of the network")
    ship_date: Date | None = Field(None, description="the date the line was dispatched; left out: not shipped")
    expected_arrival: Date | None = Field(
        None, validate_default=True,
        description="expected arrival date; required when shipped (a line not shipped yet may carry a planned "
                    "date, which the twin does not use)")
    order_date: Date | None = Field(
        None, validate_default=True, description="the date the order was placed; required when not shipped")
    reference: str | None = Field(None, max_length=MAX_ID_LENGTH, description="the ERP document number, kept")

    @field_validator("expected_arrival")
    @classmethod
    def _arrival(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        ship = info.data.get("ship_date")
        if ship is not None and value is None:
            raise ValueError("a shipped line needs its expected arrival date")
        if ship is not None and value < ship:
            raise ValueError(f"{value} is before the ship date {ship}; allowed: on or after it")
        return value

    @field_validator("order_date")
    @classmethod
    def _ordered(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        ship, arrival = info.data.get("ship_date"), info.data.get("expected_arrival")
        if value is None and ship is None and "ship_date" in info.data:
            raise ValueError("a line not shipped yet needs its order date (backlogs are served by order date)")
        if value is not None and ship is not None and value > ship:
            raise ValueError(f"{value} is after the ship date {ship}; allowed: on or before it")
        if value is not None and arrival is not None and value > arrival:
            raise ValueError(f"{value} is after the expected arrival {arrival}; allowed: on or before it")
        return value

    @property
    def shipped(self) -> bool:
        return self.ship_date is not None


class LeadTime(_Model):
    """The lead time of the location's inbound lane in days: `mean_days` (and `sd_days`), or `observed_days`."""

    mean_days: Days | None = Field(None, description="expected lead time (days)")
    sd_days: Days | None = Field(None, description="its standard deviation (days), with mean_days")
    observed_days: list[Days] | None = Field(
        None, min_length=1, max_length=MAX_LEAD_TIME_OBSERVATIONS,
        description="observed lead times of recent receipts (days), instead of mean_days and sd_days")

    @model_validator(mode="after")
    def _one_kind(self) -> LeadTime:
        if (self.mean_days is None) == (self.observed_days is None):
            raise ValueError("give mean_days (and sd_days) or observed_days, one of them")
        if self.sd_days is not None and self.mean_days is None:
            raise ValueError("sd_days goes with mean_days, not with observed_days")
        return self

    @property
    def mean(self) -> float:
        """The expected lead time in days (the mean of the observations where those are given)."""
        if self.mean_days is not None:
            return float(self.mean_days)
        return math.fsum(self.observed_days) / len(self.observed_days)

    @property
    def sd(self) -> float | None:
        """Its standard deviation in days (of the observations, ddof 1; 0 for one), None if not given."""
        if self.observed_days is None:
            return None if self.sd_days is None else float(self.sd_days)
        n = len(self.observed_days)
        if n < 2:
            return 0.0
        mean = self.mean
        return math.sqrt(math.fsum((x - mean) ** 2 for x in self.observed_days) / (n - 1))


class Costs(_Model):
    """Cost rates of the item at the location (money; the twin's kinds, twin/costs.py); any may be left out."""

    holding: Quantity | None = Field(None, description="per unit on hand per day")
    backorder: Quantity | None = Field(None, description="per unit owed to customers per day")
    lost_sale: Quantity | None = Field(None, description="per unit of demand lost")
    in_transit: Quantity | None = Field(None, description="per unit in transit into the location per day")
    fixed_order: Quantity | None = Field(None, description="per order line placed")
    unit_cost: Quantity | None = Field(None, description="per unit bought")


# ------------------------------------------------------------------ demand: history or the client's forecast


class DemandHistory(_Model):
    """Customer demand (sales) of the item at the location per period, oldest first, with no gaps.

    A daily history ends the day before `as_of`; a weekly one with the last whole week before it (the week
    that ends within the 7 days before `as_of`); every weekly history of a state uses the same weeks.
    """

    frequency: Literal["daily", "weekly"]
    start: Date = Field(description="the first day of the first period")
    values: list[Quantity] = Field(min_length=1, max_length=MAX_HISTORY_PERIODS)

    @property
    def period_days(self) -> int:
        return 1 if self.frequency == "daily" else 7

    @property
    def end(self) -> dt.date:
        """The day after the last period."""
        return self.start + dt.timedelta(days=self.period_days * len(self.values))


DailyValues = Annotated[list[Quantity], Field(min_length=1, max_length=MAX_FORECAST_DAYS)]


class ClientForecast(_Model):
    """The client's own forecast of the item's daily demand from `start`: `mean` and `sd` per day, or the
    quantiles `q10`, `q50`, `q90` per day (then mean = q50, sd = (q90 - q10) / (2 x 1.2816), a normal's).

    It must cover the location's protection period from `as_of` (lead time + review period, whole days).
    """

    start: Date = Field(description="the date of the first value (on or before as_of)")
    mean: DailyValues | None = None
    sd: DailyValues | None = Field(None, description="standard deviation per day; left out: no spread known")
    q10: DailyValues | None = None
    q50: DailyValues | None = None
    q90: DailyValues | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ClientForecast:
        quantiles = (self.q10, self.q50, self.q90)
        if self.mean is not None and any(q is not None for q in quantiles):
            raise ValueError("give mean (and sd) or q10, q50 and q90, not both")
        if self.mean is None and any(q is None for q in quantiles):
            raise ValueError("give mean (and sd) or all of q10, q50 and q90")
        if self.sd is not None and self.mean is None:
            raise ValueError("sd goes with mean, not with quantiles")
        return self

    @field_validator("sd", "q50", "q90")
    @classmethod
    def _aligned(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        before = {"sd": "mean", "q50": "q10", "q90": "q50"}[info.field_name]
        other = info.data.get(before)
        if value is None or other is None:
            return value
        if len(value) != len(other):
            raise ValueError(f"{len(value)} values for {len(other)} of {before}; allowed: one per day of {before}")
        if info.field_name != "sd":
            bad = next((d for d, (lo, hi) in enumerate(zip(other, value)) if hi < lo), None)
            if bad is not None:
                raise ValueError(f"day {bad}: {value[bad]!r} is below {before} {other[bad]!r}; allowed: "
                                 f"q10 <= q50 <= q90")
        return value

    @property
    def days(self) -> int:
        return len(self.mean if self.mean is not None else self.q50)

    def daily(self) -> tuple[list[float], list[float] | None]:
        """Mean and standard deviation per day (sd None if not given)."""
        if self.mean is not None:
            return list(self.mean), None if self.sd is None else list(self.sd)
        return list(self.q50), [(hi - lo) / (2 * Z_80) for lo, hi in zip(self.q10, self.q90)]


# ------------------------------------------------------------------ items and locations


class Item(_Model):
    """One SKU at one location."""

    sku: Id = Field(description="the SKU's name in the network")
    on_hand: Quantity = 0.0
    backorders: Quantity | None = Field(
        None, description="units owed: to customers at a store; to stores at a DC, the sum of their unshipped "
                          "orders from it. Left out: 0 at a store, that sum at a DC")
    open_orders: list[OpenOrder] = Field(default_factory=list, max_length=MAX_OPEN_ORDERS_PER_ITEM)
    pack_size: float | None = Field(None, ge=MIN_PACK_SIZE, le=MAX_QUANTITY, allow_inf_nan=False, strict=True,
                                    description="units per pack")
    min_order_quantity: Quantity | None = None
    max_order_quantity: Quantity | None = Field(
        None, description="the most one order line may be (a supplier allocation, a truck, a contract limit): an "
                          "order above it is cut to it, down to whole packs. Request-only: the twin has no such "
                          "per-item field, so a state converted from a twin snapshot leaves it out")
    storage_capacity: Quantity | None = Field(
        None, description="the units of this SKU the location can hold: an order is cut to this minus the "
                          "inventory position, down to whole packs. Request-only: the twin has no such per-item "
                          "field, so a state converted from a twin snapshot leaves it out")
    unit: str | None = Field(None, max_length=16, description="unit of measure, e.g. EA")
    costs: Costs | None = None
    service_level: float | None = Field(None, gt=0, lt=1, allow_inf_nan=False, strict=True,
                                        description="target service level, in (0, 1)")
    demand_history: DemandHistory | None = None
    forecast: ClientForecast | None = None


class Location(_Model):
    """A DC or store, by its node name in the network, with its SKUs."""

    id: Id = Field(description="the DC's or store's node name in the network")
    lead_time: LeadTime | None = Field(
        None, description="the inbound lane's lead time; left out: the network's, times any supplier delay")
    items: list[Item] = Field(default_factory=list, max_length=MAX_SKUS_PER_LOCATION)

    @field_validator("items")
    @classmethod
    def _unique_skus(cls, items: list[Item]) -> list[Item]:
        _unique([item.sku for item in items], "items", "sku")
        return items


# ------------------------------------------------------------------ disruptions


class _Disruption(_Model):
    start_date: Date = Field(description="the first day in force")
    end_date: Date = Field(description="the first day back to normal (exclusive; a DC's reopening date)")

    @field_validator("end_date")
    @classmethod
    def _after_start(cls, value: dt.date, info: ValidationInfo) -> dt.date:
        start = info.data.get("start_date")
        if start is not None and value <= start:
            raise ValueError(f"{value} is not after start_date {start}; allowed: a later date")
        return value


class DcClosure(_Disruption):
    """A DC ships nothing; its stores order from their backup DC (`reroute`) or wait."""

    type: Literal["dc_closure"] = "dc_closure"
    location: Id
    reroute: bool = Field(True, strict=True)


class SupplierDelay(_Disruption):
    """Lead times of shipments from `sources` (suppliers or DCs; empty: every lane) times `multiplier`."""

    type: Literal["supplier_delay"] = "supplier_delay"
    multiplier: float = Field(ge=0, le=50, allow_inf_nan=False, strict=True)
    sources: list[Id] = Field(default_factory=list, max_length=MAX_LOCATIONS)


class SupplierOutage(_Disruption):
    """A supplier ships nothing; orders wait in its backlog."""

    type: Literal["supplier_outage"] = "supplier_outage"
    supplier: Id


class DemandChange(_Disruption):
    """Store demand times `multiplier` for SKU groups and regions (empty: all)."""

    type: Literal["demand_change"] = "demand_change"
    multiplier: float = Field(ge=0, le=100, allow_inf_nan=False, strict=True)
    sku_groups: list[Id] = Field(default_factory=list, max_length=MAX_SKUS_PER_LOCATION)
    regions: list[Id] = Field(default_factory=list, max_length=MAX_LOCATIONS)


class CapacityCut(_Disruption):
    """A location's storage, inbound-lane and supply capacities times `factor`."""

    type: Literal["capacity_cut"] = "capacity_cut"
    location: Id
    factor: float = Field(ge=0, le=1, allow_inf_nan=False, strict=True)


Disruption = Annotated[DcClosure | SupplierDelay | SupplierOutage | DemandChange | CapacityCut,
                       Field(discriminator="type")]


# ------------------------------------------------------------------ the state


class ErpState(_Model):
    """The network at the decision point of `as_of`, in ERP terms (see the module docstring)."""

    format: Literal["erp.state/1"] = FORMAT
    as_of: Date = Field(description="the decision date: today's receipts are on hand, today's sales not known")
    locations: list[Location] = Field(default_factory=list, max_length=MAX_LOCATIONS)
    disruptions: list[Disruption] = Field(
        default_factory=list, max_length=MAX_DISRUPTIONS,
        description="in force on as_of, or planned later (none that ended on or before as_of)")
    policy: Literal["bundle", "fallback"] = Field(
        "bundle", description="bundle: decide with the bundle's policy; fallback: decide with the bundle's rule "
                              "fallback, e.g. while the learned policy is under investigation (a bundle without "
                              "one refuses it)")

    @field_validator("locations")
    @classmethod
    def _unique_locations(cls, locations: list[Location]) -> list[Location]:
        _unique([loc.id for loc in locations], "locations", "id")
        return locations


def _unique(values: Sequence[str], name: str, field: str) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise ValueError(f"{name}[{i}].{field}: {value!r} repeats {name}[{seen[value]}]; allowed: each once")
        seen[value] = i


def erp_state_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `ErpState`, as a service publishes it."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **ErpState.model_json_schema()}


def write_erp_state_schema(path: str | Path) -> Path:
    """Write `erp_state_schema()` as indented JSON to `path` and return the path."""
    path = Path(path)
    path.write_text(json.dumps(erp_state_schema(), indent=1) + "\n")
    return path
