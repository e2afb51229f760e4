"""An ERP state in the twin's terms and back: `state_to_twin` and `snapshot_to_state`.

`state_to_twin(state, network)` gives a checked `Snapshot` of the state's `as_of` date plus what decisions read
beside it (`TwinInputs`): the client's forecasts over each node's protection period, the demand history as
panels for a forecaster, the disruptions that begin later. Its rules:

- Dates become twin days: day = (date - twin.calendar.DAY_ZERO).days; `as_of` is the snapshot's day.
- A line with a ship date is an open shipment (dispatched = ship date, due = expected arrival); one without is
  an unshipped order (ordered = order date). Lines of one location with the same source and dates form one
  shipment or order (all its SKUs). A shipment expected on or before `as_of` has arrived (its units belong in
  on hand): refused, or with `overdue="tomorrow"` taken as arriving the day after `as_of` (and listed).
- A DC's or store's expected lead time is its `lead_time` (mean_days, or the mean of observed_days); left out,
  the network's nominal lead time times the supplier delays in force, as the engine computes it. It is what
  decisions read: a twin run draws its lead times from the network spec and the disruptions in force.
  `lead_time_sd` beside the snapshot holds its spread: sd_days (or the sd of observed_days, ddof 1) where the
  location gives a lead time, NaN where it gives mean_days without sd_days; for a lead time left out (and for
  suppliers and DCs or stores not listed), the sd of the network's lead-time law times the same supplier
  delays. A derived lead time above MAX_LEAD_TIME_DAYS (the models' cap) is refused naming the supplier delay
  that makes it, and `snapshot_to_state` refuses a snapshot expecting one (naming the location): both sides
  keep to the cap.
- Disruptions in force on `as_of` become the snapshot's (their window as given, a start before day 0 taken as
  day 0); later ones are returned as shocks (`later_shocks`) for a planner to add; ended ones are refused.
- Received and served today are zero (today's receipts count as stock at the start of the day); totals follow
  from the lines. A DC or store left out of the state is empty (listed in `unlisted`), and so is a SKU left out
  of a location.
  A DC's `backorders` beyond what the unshipped lines of its listed stores owe are owed to stores the state
  leaves out (a request for the DC alone): they become one unshipped line of the first such store, ordered on
  `as_of` (listed in `owed_to_unlisted`), so the DC's position counts them; with every store listed the totals
  must add up.
- Forecasts: a given forecast's mean and variance per day are summed over the node's protection period,
  rint(lead time) + review period days from `as_of` (twin.coverage.protection_periods), as
  agents/forecasting/live.py does. A DC without one (and a supplier, which is no ERP location) gets the sum
  over the stores below it when each of them has one for that SKU covering the DC's period. Where neither
  holds the mean is NaN and the DC or store is listed in `missing_forecast` with those SKUs: a forecaster fed
  from `history` can fill them. `spread` is None unless every forecast given has a spread (sd or quantiles).

Pack sizes, minimum order quantities, units, costs and service levels are checked by the models and kept
there: the snapshot has no place for them.

`snapshot_to_state(snapshot, network, forecast, lead_time_sd=...)` is the inverse: every DC and store with every
SKU, the snapshot's lines as open orders (one per SKU), lead times as mean_days with sd_days from `lead_time_sd`
where given (NaN: none), else from the network's lead-time law scaled as the mean is, the network's cost
rates, the disruptions in force (and any `later` shocks), and a forecast, if given, spread evenly over the
node's protection period (it converts back to the same forecast, within float rounding). Passing a state's
`TwinInputs.lead_time_sd` back keeps its sd_days.

What does not survive a round trip: a snapshot's received_today, served_today, seed and horizon (the ERP state
has no place for them; a float residue within 1e-9 below zero comes back as 0); a state's pack sizes, minimum
order quantities, units, service levels, demand history, document references, order dates of shipped lines,
planned dates of unshipped ones and observed lead times (their mean and sd are kept, with `lead_time_sd`: they
come back as mean_days and sd_days), none of which the snapshot holds; costs come back as the network's.

Every error is an `ErpStateError` naming the field of the ERP state (`loc`, as pydantic's); the twin's own
check of the snapshot is translated to the ERP field it comes from.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError

from agents.deploy.erp_state import (
    MAX_LEAD_TIME_DAYS,
    CapacityCut,
    DcClosure,
    DemandChange,
    DemandHistory,
    ErpState,
    SupplierDelay,
    SupplierOutage,
    format_loc,
)
from agents.forecasting.base import Frequency, SeriesPanel
from agents.forecasting.data import store_sku_categories
from agents.forecasting.live import DemandForecast
from twin import shocks as twin_shocks
from twin.calendar import DAY_ZERO, calendar_date
from twin.config import SpecError
from twin.costs import cost_rates
from twin.coverage import protection_periods
from twin.snapshot import RESIDUE, OpenShipment, Snapshot, UnshippedOrder, line_totals, network_hash
from twin.spec import NetworkSpec
from twin.state import Topology, expected_lead_times

Loc = tuple[str | int, ...]
WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
DAILY = Frequency(alias="D", name="daily", season_length=7)


class ErpStateError(SpecError):
    """An ERP state the twin cannot take; `loc` names the field (as pydantic's loc), `message` says why."""

    def __init__(self, loc: Loc, message: str) -> None:
        self.loc, self.message = tuple(loc), message
        super().__init__(f"{format_loc(loc) or 'state'}: {message}")


def error_fields(error: ValidationError | ErpStateError) -> list[tuple[str, str]]:
    """(field path, message) of each problem of a pydantic ValidationError or an ErpStateError."""
    if isinstance(error, ErpStateError):
        return [(format_loc(error.loc), error.message)]
    return [(format_loc(e["loc"]), e["msg"]) for e in error.errors()]


@dataclass(frozen=True)
class TwinInputs:
    """An ERP state in the twin's terms (see the module docstring)."""

    snapshot: Snapshot
    forecast: DemandForecast              # over each node's protection period; NaN where none is known
    periods: np.ndarray                   # (nodes,) the protection period of each node (days)
    lead_time_sd: np.ndarray              # (nodes,) sd of each node's inbound lead time (days; module docstring)
    review_period: int
    missing_forecast: dict[str, tuple[str, ...]]  # DC or store -> the SKUs without a forecast
    history: dict[str, SeriesPanel]       # "daily" / "weekly" -> demand history as a panel (ids "location/sku")
    later_shocks: tuple[twin_shocks.Shock, ...]   # disruptions that begin after as_of
    owed_to_unlisted: tuple[str, ...]     # backorders fields of a DC partly owed to stores the state does not list
    unlisted: tuple[str, ...]             # DCs and stores of the network the state does not list (empty)
    overdue: tuple[str, ...]              # fields of shipments taken as arriving tomorrow (overdue="tomorrow")


# ------------------------------------------------------------------ disruptions

# ERP disruption class -> (twin shock class, {ERP field: twin field})
_SHOCKS: dict[type, tuple[type[twin_shocks.Shock], dict[str, str]]] = {
    DcClosure: (twin_shocks.DcClosure, {"location": "dc", "reroute": "reroute"}),
    SupplierDelay: (twin_shocks.LeadTimeShock, {"multiplier": "multiplier", "sources": "sources"}),
    SupplierOutage: (twin_shocks.SupplierOutage, {"supplier": "supplier"}),
    DemandChange: (twin_shocks.DemandShock, {"multiplier": "multiplier", "sku_groups": "groups",
                                             "regions": "regions"}),
    CapacityCut: (twin_shocks.CapacityCut, {"location": "node", "factor": "factor"}),
}


def _day(date: dt.date) -> int:
    return (date - DAY_ZERO).days


def _shock(disruption, network: NetworkSpec, loc: Loc) -> twin_shocks.Shock:
    cls, fields = _SHOCKS[type(disruption)]
    values = {twin: getattr(disruption, erp) for erp, twin in fields.items()}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    shock = cls(start=max(_day(disruption.start_date), 0), end=_day(disruption.end_date), **values)
    try:
        shock.validate(network, format_loc(loc))
    except SpecError as e:
        path, _, message = str(e).partition(": ")
        field = path[len(format_loc(loc)):].lstrip(".").split(".")[0]
        erp = {twin: erp for erp, twin in fields.items()}.get(field)
        raise ErpStateError((*loc, erp) if erp else loc, message) from None
    return shock


def _disruption(shock: twin_shocks.Shock) -> dict:
    """The ERP disruption of a twin shock, as data for the models."""
    erp_cls, fields = next((k, v[1]) for k, v in _SHOCKS.items() if v[0] is type(shock))
    values = {erp: getattr(shock, twin) for erp, twin in fields.items()}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return dict(type=erp_cls.model_fields["type"].default, start_date=calendar_date(shock.start),
                end_date=calendar_date(shock.end), **values)


# ------------------------------------------------------------------ ERP -> twin


def state_to_twin(state: ErpState, network: NetworkSpec, *, review_period: int = 1,
                  overdue: Literal["refuse", "tomorrow"] = "refuse") -> TwinInputs:
    """`state` as a checked Snapshot of `network` plus forecasts and history (module docstring); ErpStateError
    naming the field if the twin cannot take it. `review_period`: whole days between decisions (>= 0)."""
    if overdue not in ("refuse", "tomorrow"):
        raise ValueError(f"overdue: {overdue!r} is not allowed; allowed: 'refuse', 'tomorrow'")
    day = _day(state.as_of)
    if day < 0:
        raise ErpStateError(("as_of",), f"{state.as_of} is before the twin's day 0 ({DAY_ZERO}); allowed: on or "
                                        f"after it")
    names = network.node_names
    index = {name: i for i, name in enumerate(names)}
    skus = tuple(network.skus.name)
    sku_index = {s: k for k, s in enumerate(skus)}
    topo = Topology.of(network)
    n, n_sku = len(names), len(skus)

    # disruptions: in force now -> the snapshot's, later -> shocks returned
    in_force, later = [], []
    for j, disruption in enumerate(state.disruptions):
        loc = ("disruptions", j)
        if disruption.end_date <= state.as_of:
            raise ErpStateError((*loc, "end_date"), f"{disruption.end_date} is not after as_of {state.as_of}: the "
                                                    f"disruption is over; allowed: a later date, or leave it out")
        shock = _shock(disruption, network, loc)
        (in_force if disruption.start_date <= state.as_of else later).append((j, shock))
    delay = np.ones(n)
    delays: list[tuple[int, np.ndarray]] = []          # (disruption index, its lead-time factor per node)
    for j, shock in in_force:
        effects = twin_shocks.ShockEffects.neutral(n, n_sku)
        shock.apply(effects, network)
        delay *= effects.lead_time
        if np.any(effects.lead_time != 1.0):
            delays.append((j, effects.lead_time.copy()))

    on_hand, backorders = np.zeros((n, n_sku)), np.zeros((n, n_sku))
    given_backorders = np.zeros((n, n_sku), dtype=bool)
    lead = expected_lead_times(topo.lead_time_mean, topo.parent, delay)  # as the engine computes it
    lead_sd = expected_lead_times(np.array([math.sqrt(nd.lead_time.variance) for nd in network.nodes]),
                                  topo.parent, delay)  # the network's law, scaled as the mean is
    where_node: dict[int, int] = {}                    # node -> position in state.locations
    where_item: dict[tuple[int, int], int] = {}        # (node, SKU) -> position in its location's items
    shipments: dict[tuple[int, int, int, int], np.ndarray] = {}
    unshipped: dict[tuple[int, int, int], np.ndarray] = {}
    line_loc: dict[tuple, dict[int, Loc]] = {}         # line key -> SKU -> the field of its first ERP line
    late: list[str] = []
    allowed_locations = [nd.name for nd in network.nodes if nd.kind != "supplier"]
    for j, location in enumerate(state.locations):
        loc = ("locations", j)
        i = index.get(location.id, -1)
        if i < 0 or topo.is_supplier[i]:
            raise ErpStateError((*loc, "id"), f"{location.id!r} is not a DC or store of network {network.name!r}; "
                                              f"allowed: {_listing(allowed_locations)}")
        where_node[i] = j
        if location.lead_time is not None:
            lead[i] = location.lead_time.mean
            sd = location.lead_time.sd
            lead_sd[i] = math.nan if sd is None else sd
        node = network.nodes[i]
        sources = {node.parent, node.backup_parent} - {None}
        for m, item in enumerate(location.items):
            iloc = (*loc, "items", m)
            k = sku_index.get(item.sku, -1)
            if k < 0:
                raise ErpStateError((*iloc, "sku"), f"{item.sku!r} is not a SKU of network {network.name!r}; "
                                                    f"allowed: {_listing(skus)}")
            where_item[i, k] = m
            on_hand[i, k] = item.on_hand  # whole units, backorders at a lost-sales store: Snapshot.check
            if item.backorders is not None:
                backorders[i, k] = item.backorders
                given_backorders[i, k] = True
            for o, line in enumerate(item.open_orders):
                oloc = (*iloc, "open_orders", o)
                if line.source not in sources:
                    raise ErpStateError((*oloc, "source"), f"{line.source!r} does not supply {location.id!r}; "
                                                           f"allowed: {', '.join(sorted(sources)) or 'none'}")
                _check_whole(network, line.quantity, (*oloc, "quantity"))
                if line.order_date is not None and line.order_date > state.as_of:
                    raise ErpStateError((*oloc, "order_date"), f"{line.order_date} is after as_of {state.as_of}; "
                                                               f"allowed: on or before it")
                source = index[line.source]
                if line.shipped:
                    if line.ship_date > state.as_of:
                        raise ErpStateError((*oloc, "ship_date"), f"{line.ship_date} is after as_of {state.as_of}; "
                                                                  f"allowed: on or before it (a line not shipped "
                                                                  f"yet has no ship date)")
                    due = _day(line.expected_arrival)
                    if due <= day:
                        if overdue == "refuse":
                            raise ErpStateError((*oloc, "expected_arrival"), (
                                f"{line.expected_arrival} is not after as_of {state.as_of}: a shipment due by "
                                f"as_of has arrived and belongs in on_hand; allowed: a later date"))
                        late.append(format_loc((*oloc, "expected_arrival")))
                        due = day + 1
                    key, lines = (i, source, _day(line.ship_date), due), shipments
                else:
                    key, lines = (i, source, _day(line.order_date)), unshipped
                vector = lines.get(key)
                if vector is None:
                    vector = lines[key] = np.zeros(n_sku)
                vector[k] += line.quantity
                line_loc.setdefault(key, {}).setdefault(k, oloc)

    _check_lead(state, network, topo, lead, delays, where_node)
    owed_to_unlisted = _owed_to_unlisted(network, topo, day, backorders, given_backorders, unshipped, where_node,
                                         where_item, state)

    # lines in the engine's order: shipments by dispatch day (DCs allocate before suppliers, customers in node
    # order), unshipped orders by supplier, order day and customer
    ship_keys = sorted(shipments, key=lambda s: (s[2], -topo.depth[s[1]], s[1], s[0], s[3]))
    order_keys = sorted(unshipped, key=lambda u: (u[1], u[2], u[0]))
    lines_s = tuple(OpenShipment(node=i, source=s, dispatched=d, due=due, quantity=shipments[i, s, d, due])
                    for i, s, d, due in ship_keys)
    lines_u = tuple(UnshippedOrder(node=i, source=s, ordered=d, quantity=unshipped[i, s, d])
                    for i, s, d in order_keys)
    in_transit, on_order, owed = line_totals(lines_s, lines_u, n, n_sku)
    internal = ~topo.is_store
    backorders = np.where(internal[:, None] & ~given_backorders, owed, backorders)
    disruptions = tuple(shock for _, shock in in_force)
    snapshot = Snapshot(network_name=network.name, network_hash=network_hash(network), nodes=names, skus=skus,
                        day=day, on_hand=on_hand, backorders=backorders, in_transit=in_transit, on_order=on_order,
                        expected_lead_time=lead, shipments=lines_s, unshipped=lines_u, disruptions=disruptions)
    try:
        snapshot.check(network, "snapshot")
    except SpecError as e:
        raise _translate(e, names, skus, where_node, where_item, [line_loc[k] for k in ship_keys],
                         [line_loc[k] for k in order_keys], [j for j, _ in in_force]) from None

    periods = protection_periods(lead, review_period)
    forecast, missing = _forecast(state, network, topo, lead, periods, where_node, where_item)
    listed = set(where_node)
    unlisted = tuple(names[i] for i in range(n) if i not in listed and not topo.is_supplier[i])
    return TwinInputs(snapshot=snapshot, forecast=forecast, periods=periods, lead_time_sd=lead_sd,
                      review_period=review_period,
                      missing_forecast=missing, history=_history(state, network), owed_to_unlisted=owed_to_unlisted,
                      later_shocks=tuple(shock for _, shock in later), unlisted=unlisted, overdue=tuple(late))


def _owed_to_unlisted(network: NetworkSpec, topo: Topology, day: int, backorders: np.ndarray,
                      given: np.ndarray, unshipped: dict, where_node: Mapping[int, int],
                      where_item: Mapping[tuple[int, int], int], state: ErpState) -> tuple[str, ...]:
    """A DC's given backorders beyond what its listed stores' unshipped lines owe are owed to stores the state
    does not list (a request for the DC alone): they become one unshipped line of the first such store, ordered
    on as_of, so the DC's position counts them. Adds to `unshipped`; returns the backorders fields concerned."""
    owed = np.zeros_like(backorders)
    for (_, source, _), vector in unshipped.items():
        owed[source] += vector
    fields = []
    for i in np.flatnonzero(~topo.is_store & ~topo.is_supplier):
        extra = np.where(given[i], backorders[i] - owed[i], 0.0)
        if not np.any(extra > 0):
            continue
        name = network.node_names[i]
        customers = [c for c, nd in enumerate(network.nodes) if nd.parent == name and c not in where_node]
        if not customers:
            continue  # every customer is listed: the totals must add up (Snapshot.check names the field)
        key = (customers[0], int(i), day)
        unshipped[key] = unshipped.get(key, np.zeros(backorders.shape[1])) + np.maximum(extra, 0.0)
        fields += [format_loc(("locations", where_node[i], "items", where_item[i, k], "backorders"))
                   for k in np.flatnonzero(extra > 0)]
    return tuple(fields)


def _check_lead(state: ErpState, network: NetworkSpec, topo: Topology, lead: np.ndarray,
                delays: Sequence[tuple[int, np.ndarray]], where_node: Mapping[int, int]) -> None:
    """Refuse an expected lead time above MAX_LEAD_TIME_DAYS (the models' cap, so that every snapshot converts
    back) at a location of the request: a given one is capped by the models; a derived one names the supplier delay
    that makes it (the largest on the node's lane), or the location (a network lane longer than the cap). A node
    the request does not list decides nothing: its lead time is capped in place (`lead`), so whether a request is
    refused never depends on the nodes it leaves out (nor on the requests the service decides together with it)."""
    for i in np.flatnonzero(~topo.is_supplier & (lead > MAX_LEAD_TIME_DAYS)):
        j = where_node.get(int(i))
        if j is None:
            lead[i] = MAX_LEAD_TIME_DAYS
            continue
        if state.locations[j].lead_time is not None:
            continue  # given: within the cap already
        name, parent = topo.names[i], topo.parent[i]
        hits = [(float(factor[parent]), d) for d, factor in delays if parent >= 0 and factor[parent] != 1.0]
        why = (f"{name!r} would expect a lead time of {lead[i]:g} days (the network's {topo.lead_time_mean[i]:g} "
               f"days")
        allowed = f"allowed: at most {MAX_LEAD_TIME_DAYS:g} days (MAX_LEAD_TIME_DAYS)"
        if hits:
            _, d = max(hits)
            raise ErpStateError(("disruptions", d, "multiplier"), (
                f"{why} times the delays in force); {allowed}: a smaller multiplier, or the location's own "
                f"lead_time"))
        raise ErpStateError(("locations", j, "lead_time"), f"{why}); {allowed}: give the location's lead_time")


def _listing(values: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _check_whole(network: NetworkSpec, value: float, loc: Loc) -> None:
    if network.demand.integer_units and abs(value - round(value)) > RESIDUE:
        raise ErpStateError(loc, f"{value!r} is not a whole number of units; allowed: whole units (the network "
                                 f"counts whole units)")


_LINE_FIELD = re.compile(r"snapshot\.(shipments|unshipped|disruptions)\[(\d+)\](?:\.(\w+)(?:\.(.+))?)?$")


def _one_of(values: Sequence[str]) -> str:
    """A regex alternation matching exactly one of `values` (escaped, longest first: names may hold dots)."""
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


def _node_field(names: Sequence[str], skus: Sequence[str]) -> re.Pattern:
    """snapshot.nodes.<node>[.<field>[.<sku>]], the node and SKU matched by their names (not by dots)."""
    return re.compile(rf"snapshot\.nodes\.({_one_of(names)})(?:\.(\w+)(?:\.({_one_of(skus)}))?)?$")
_ITEM_FIELD = {"on_hand": "on_hand", "backorders": "backorders", "in_transit": "open_orders",
               "on_order": "open_orders"}


def _translate(error: SpecError, names: Sequence[str], skus: Sequence[str],
               where_node: Mapping[int, int], where_item: Mapping[tuple[int, int], int],
               ship_locs: Sequence[Mapping[int, Loc]], order_locs: Sequence[Mapping[int, Loc]],
               disruption_index: Sequence[int]) -> ErpStateError:
    """The twin's error about the converted snapshot as an error naming the ERP state's field."""
    path, _, message = str(error).partition(": ")
    node = _node_field(names, skus).match(path)
    if node:
        name, field, sku = node.groups()
        i = names.index(name) if name in names else -1
        if i not in where_node:
            return ErpStateError(("locations",), f"{name!r} (not listed): {message}")
        loc: Loc = ("locations", where_node[i])
        if field == "expected_lead_time":
            return ErpStateError((*loc, "lead_time"), message)
        if field is None or sku is None:
            return ErpStateError(loc, message)
        k = skus.index(sku) if sku in skus else -1
        if (i, k) in where_item:
            loc = (*loc, "items", where_item[i, k])
            return ErpStateError((*loc, _ITEM_FIELD[field]) if field in _ITEM_FIELD else loc, message)
        return ErpStateError((*loc, "items"), message)
    line = _LINE_FIELD.match(path)
    if line:
        kind, j, field, sku = line.groups()
        if kind == "disruptions":
            return ErpStateError(("disruptions", disruption_index[int(j)]), message)
        locs = (ship_locs if kind == "shipments" else order_locs)[int(j)]
        k = skus.index(sku) if sku in skus else -1
        loc = locs.get(k, next(iter(locs.values())))
        return ErpStateError((*loc, "quantity") if field == "quantity" else loc, message)
    return ErpStateError((), str(error))


def _forecast(state: ErpState, network: NetworkSpec, topo: Topology, lead: np.ndarray, periods: np.ndarray,
              where_node: Mapping[int, int], where_item: Mapping[tuple[int, int], int]
              ) -> tuple[DemandForecast, dict[str, tuple[str, ...]]]:
    """Forecast mean and spread per (node, SKU) over each node's protection period; the SKUs lacking one."""
    n, n_sku = len(topo.names), network.skus.n
    mean, var = np.full((n, n_sku), np.nan), np.full((n, n_sku), np.nan)
    with_spread = True
    daily: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # store (node, SKU) -> from as_of on
    for (i, k), m in where_item.items():
        forecast = state.locations[where_node[i]].items[m].forecast
        if forecast is None:
            continue
        loc = ("locations", where_node[i], "items", m, "forecast")
        offset = (state.as_of - forecast.start).days
        if offset < 0:
            raise ErpStateError((*loc, "start"), f"{forecast.start} is after as_of {state.as_of}; allowed: on or "
                                                 f"before it")
        mu, sd = forecast.daily()
        with_spread &= sd is not None
        days = int(periods[i])
        if forecast.days - offset < days:
            last = forecast.start + dt.timedelta(days=forecast.days - 1)
            need = state.as_of + dt.timedelta(days=days - 1)
            raise ErpStateError((*loc, "mean" if forecast.mean is not None else "q50"), (
                f"runs to {last}, but {topo.names[i]!r} needs {days} days from as_of {state.as_of} (its lead time "
                f"{lead[i]:g} days in whole days + the review period); allowed: values through {need} or later"))
        mu = np.asarray(mu[offset:], dtype=float)
        v = np.asarray(sd[offset:], dtype=float) ** 2 if sd is not None else np.full(mu.shape, np.nan)
        mean[i, k], var[i, k] = math.fsum(mu[:days]), math.fsum(v[:days])
        if topo.is_store[i]:
            daily[i, k] = (mu, v)
    stores = np.flatnonzero(topo.is_store)
    reach = np.zeros((n, n_sku), dtype=np.int64)  # days of daily forecast each store has per SKU (0: none)
    for (s, k), (mu, _) in daily.items():
        reach[s, k] = len(mu)
    for i in np.flatnonzero(~topo.is_store):  # DCs and suppliers: their own forecast, or the sum of their stores'
        below, days = stores[topo.descendants[i, stores]], int(periods[i])
        covered = np.isnan(mean[i]) & (reach[below] >= max(days, 1)).all(axis=0) if len(below) else ()
        for k in np.flatnonzero(covered):
            parts = [daily[s, k] for s in below]
            mean[i, k] = math.fsum(math.fsum(p[0][:days]) for p in parts)
            var[i, k] = math.fsum(math.fsum(p[1][:days]) for p in parts)
    unknown, names = np.isnan(mean), np.asarray(network.skus.name)
    missing = {topo.names[i]: tuple(names[unknown[i]].tolist())
               for i in np.flatnonzero(unknown.any(axis=1) & ~topo.is_supplier)}
    return DemandForecast(mean=mean, spread=np.sqrt(var) if with_spread else None), missing


def _history(state: ErpState, network: NetworkSpec) -> dict[str, SeriesPanel]:
    """Demand history per frequency as a SeriesPanel: ids 'store/sku', values NaN before a series starts, no
    covariates, categories sku, store, category (SKU group) and region coded as the twin's own panels code them
    (agents.forecasting.data.store_sku_categories over the network's stores and SKUs), so a forecaster fitted on
    twin panels reads them. Demand history is store sales: one at a DC is refused."""
    found: dict[str, list[tuple[Loc, str, str, DemandHistory]]] = {"daily": [], "weekly": []}
    index = {name: i for i, name in enumerate(network.node_names)}
    for j, location in enumerate(state.locations):
        for m, item in enumerate(location.items):
            if item.demand_history is not None:
                if network.nodes[index[location.id]].kind != "store":
                    raise ErpStateError(("locations", j, "items", m, "demand_history"), (
                        f"{location.id!r} is a DC: demand history is customer demand at a store (a DC's forecast "
                        f"is the sum of its stores'); allowed: at stores"))
                found[item.demand_history.frequency].append(
                    (("locations", j, "items", m, "demand_history"), location.id, item.sku, item.demand_history))
    panels = {}
    if not any(found.values()):
        return panels
    stores = [nd for nd in network.nodes if nd.kind == "store"]
    store_index = {nd.name: r for r, nd in enumerate(stores)}
    n_sku = network.skus.n
    codes = store_sku_categories(len(stores), n_sku, [nd.region for nd in stores], list(network.skus.group))
    sku_index = {s: k for k, s in enumerate(network.skus.name)}
    for frequency, series in found.items():
        if not series:
            continue
        end = state.as_of if frequency == "daily" else series[0][3].end
        for loc, _, _, history in series:
            if frequency == "daily" and history.end != end:
                raise ErpStateError((*loc, "values"), (
                    f"ends on {history.end - dt.timedelta(days=1)}; allowed: daily values through the day before "
                    f"as_of ({end - dt.timedelta(days=1)}), with no gap"))
            if frequency == "weekly" and not (state.as_of - dt.timedelta(days=7) < history.end <= state.as_of):
                raise ErpStateError((*loc, "values"), (
                    f"its last week ends on {history.end - dt.timedelta(days=1)}; allowed: the last whole week "
                    f"before as_of {state.as_of} (ending within the 7 days before it), with no gap"))
            if history.end != end:
                raise ErpStateError((*loc, "start"), (
                    f"weeks starting on {history.start:%A}s do not line up with the other weekly histories "
                    f"(weeks starting on {end:%A}s); allowed: the same weeks"))
        step = 1 if frequency == "daily" else 7
        length = max((end - h.start).days // step for *_, h in series)
        values = np.full((len(series), length), np.nan)
        for r, (*_, h) in enumerate(series):
            values[r, length - len(h.values):] = h.values
        first = end - dt.timedelta(days=step * length)
        freq = DAILY if frequency == "daily" else Frequency(alias=f"W-{WEEKDAYS[first.weekday()]}",
                                                              name="weekly", season_length=52)
        dates = pd.date_range(pd.Timestamp(first), periods=length, freq=freq.alias)
        rows = np.array([store_index[loc_id] * n_sku + sku_index[s] for _, loc_id, s, _ in series], dtype=np.int64)
        categories = {key: code[rows] for key, code in codes.items()}
        panels[frequency] = SeriesPanel(ids=tuple(f"{loc_id}/{s}" for _, loc_id, s, _ in series), dates=dates,
                                        values=values, freq=freq,
                                        covariates=np.zeros((len(series), length, 0), np.float32),
                                        categories=categories, shared_unit=True)  # units sold
    return panels


def daily_from_weekly(panel: SeriesPanel) -> SeriesPanel:
    """A weekly history panel (`_history`'s "weekly") as a daily one for a daily forecaster: each week's total
    spread evenly over its 7 days (week r, dated by its first day, covers that day and the 6 after it). The
    daily series ends where the last week ends (the day before `history.end`, within the 7 days before as_of),
    not on the day before as_of; weeks before a series starts stay NaN. Ids, categories and the (empty)
    covariates carry over; the frequency becomes DAILY."""
    if panel.freq.name != "weekly" or panel.future or panel.covariates.shape[2]:
        raise ValueError(f"daily_from_weekly: a weekly panel without covariates or future periods, not "
                         f"{panel.freq.name} with {panel.covariates.shape[2]} covariates and {panel.future} future")
    n, weeks = panel.values.shape
    values = np.repeat(panel.values / 7.0, 7, axis=1)
    dates = pd.date_range(panel.dates[0], periods=7 * weeks, freq=DAILY.alias)
    return SeriesPanel(ids=panel.ids, dates=dates, values=values, freq=DAILY,
                       covariates=np.zeros((n, 7 * weeks, 0), np.float32), categories=dict(panel.categories),
                       shared_unit=panel.shared_unit)


# ------------------------------------------------------------------ twin -> ERP


def snapshot_to_state(snapshot: Snapshot, network: NetworkSpec, forecast: DemandForecast | None = None, *,
                      review_period: int = 1, later: Sequence[twin_shocks.Shock] = (),
                      lead_time_sd: np.ndarray | None = None) -> ErpState:
    """The ERP state of `snapshot` (module docstring); `forecast` over each node's protection period at
    `review_period` becomes a flat forecast per day over it; `later`: shocks that begin after the snapshot's
    day, added as planned disruptions; `lead_time_sd` (nodes,): each node's lead-time sd (NaN: unknown, no
    sd_days), as `TwinInputs.lead_time_sd`; left out, the network's law scaled as the mean is."""
    snapshot.check(network)
    for j, shock in enumerate(later):
        if shock.start <= snapshot.day:
            raise ValueError(f"later[{j}]: starts on day {shock.start}, not after the snapshot's day "
                             f"{snapshot.day}; allowed: later shocks only (those in force are the snapshot's)")
        shock.validate(network, f"later[{j}]")
    names, skus = snapshot.nodes, snapshot.skus
    rates = cost_rates(network)
    periods = protection_periods(snapshot.expected_lead_time, review_period)
    lines: dict[int, dict[int, list[dict]]] = {}
    for s in snapshot.shipments:
        for k in np.flatnonzero(s.quantity > 0):
            lines.setdefault(s.node, {}).setdefault(k, []).append(dict(
                quantity=float(s.quantity[k]), source=names[s.source], ship_date=calendar_date(s.dispatched),
                expected_arrival=calendar_date(s.due)))
    for u in snapshot.unshipped:
        for k in np.flatnonzero(u.quantity > 0):
            lines.setdefault(u.node, {}).setdefault(k, []).append(dict(
                quantity=float(u.quantity[k]), source=names[u.source], order_date=calendar_date(u.ordered)))
    locations: list[dict] = []
    for i, node in enumerate(network.nodes):
        if node.kind == "supplier":
            continue
        nominal, sd = node.lead_time.expected_days, math.sqrt(node.lead_time.variance)
        expected = float(snapshot.expected_lead_time[i])
        if expected > MAX_LEAD_TIME_DAYS:
            raise ErpStateError(("locations", len(locations), "lead_time", "mean_days"), (
                f"{node.name!r} expects a lead time of {expected:g} days at the snapshot; allowed: at most "
                f"{MAX_LEAD_TIME_DAYS:g} days (MAX_LEAD_TIME_DAYS): the ERP state cannot hold it"))
        scale = expected / nominal if nominal > 0 else 1.0
        spread = sd * scale if lead_time_sd is None else float(lead_time_sd[i])
        items = []
        for k, sku in enumerate(skus):
            costs = dict(holding=float(rates.holding[i, k]), backorder=float(rates.backorder[i, k]),
                         lost_sale=float(rates.lost_sale[i, k]), in_transit=float(rates.transit[i, k]),
                         fixed_order=float(rates.fixed_order[i, k]), unit_cost=float(rates.unit[i, k]))
            items.append(dict(sku=sku, on_hand=_clean(snapshot.on_hand[i, k]),
                              backorders=_clean(snapshot.backorders[i, k]),
                              open_orders=lines.get(i, {}).get(k, []), costs=costs,
                              forecast=_flat(forecast, i, k, int(periods[i]), snapshot.date)))
        lead_time = dict(mean_days=expected, sd_days=spread if math.isfinite(spread) else None)
        locations.append(dict(id=node.name, lead_time=lead_time, items=items))
    disruptions = [_disruption(shock) for shock in (*snapshot.disruptions, *later)]
    try:
        return ErpState.model_validate(dict(as_of=snapshot.date, locations=locations, disruptions=disruptions))
    except ValidationError as e:  # a value of the twin beyond the models' limits
        first = e.errors()[0]
        loc = tuple(first["loc"])
        where = f"{locations[loc[1]]['id']!r}: " if loc[:1] == ("locations",) and len(loc) > 1 else ""
        raise ErpStateError(loc, f"{where}{first['msg']} (the snapshot's value; the ERP state cannot hold it)"
                            ) from None


def _clean(value: float) -> float:
    """A quantity as the state holds it: the engine's float residue (within 1e-9 below zero) as 0."""
    return max(float(value), 0.0)


def _flat(forecast: DemandForecast | None, i: int, k: int, days: int, start: dt.date) -> dict | None:
    if forecast is None or not np.isfinite(forecast.mean[i, k]):
        return None
    days = max(days, 1)  # a period of 0 days: one day (nothing of it is summed back)
    mean = [float(forecast.mean[i, k]) / days] * days
    spread = None if forecast.spread is None else float(forecast.spread[i, k])
    sd = [spread / math.sqrt(days)] * days if spread is not None and math.isfinite(spread) else None
    return dict(start=start, mean=mean, sd=sd)


__all__ = ["ErpStateError", "TwinInputs", "error_fields", "snapshot_to_state", "state_to_twin"]
