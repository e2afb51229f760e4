"""Decisions for an ERP state: the bundle's orders as documents the ERP system takes, with reason codes.

    response = decide(load_bundle("outputs/export/RUN/bundle"), ErpState.model_validate_json(body))
    text = decisions_csv(response)

For every (location, SKU) of the request, one `Decision`: the order quantity (the policy's, rounded up to the
pack size and raised to the minimum order quantity), the inventory position the order aims at, the document it
becomes (a purchase requisition when the location buys from a supplier, a stock transport order when a DC
supplies it; none when nothing is ordered), the policy's confidence (a learned policy's probability of its
action, or its Q-value margin) and reason codes with the numbers behind them:

    BELOW_LEVEL / AT_OR_ABOVE_LEVEL  inventory position against the order-up-to level
    BACKORDERS_OUTSTANDING           units owed at the location
    LEAD_TIME_LONGER                 the expected lead time above the lane's nominal one (a supplier delay)
    DISRUPTION_ACTIVE                a disruption in force on as_of (type, target, days left)
    DEMAND_SPIKE                     the forecast's daily rate >= 1.5 x the recent (28-day) daily history
    ROUNDED_TO_PACK / RAISED_TO_MOQ  the policy's quantity changed by the pack size or minimum order quantity
    CAPPED_BY_CAPACITY               the order cut to the item's max_order_quantity or to its storage_capacity
                                     less the inventory position, down to whole packs (0 if the MOQ does not fit)
    FALLBACK_POLICY_USED             decided by a learned bundle's rule fallback: asked for (policy: fallback), or
                                     the learned head's observation or scores for the row were not finite
    FORECAST_FROM_HISTORY            the item came with demand history only: the bundle's saved forecaster
                                     forecast it (its name and the days of history it read; weekly history:
                                     the weeks, spread evenly over their days, and the days up to as_of)

Each decision has a recommendation id, a UUID derived from the bundle's hash, the request's content hash and the
(location, SKU): the same request to the same bundle gives the same ids (an ERP idempotency key), another
request or bundle other ids. Bad input is an `ErpStateError` naming the field, raised before any decision.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agents.deploy.bundle import Bundle
from agents.deploy.conversion import ErpStateError, TwinInputs, daily_from_weekly, state_to_twin
from agents.deploy.erp_state import MAX_FORECAST_DAYS, ClientForecast, ErpState, Item, Location
from agents.deploy.policies import PolicyOutput
from agents.forecasting.live import daily_sd
from twin import shocks as twin_shocks
from twin.config import SpecError

FORMAT = "erp.decisions/1"
SPIKE_RATIO = 1.5         # forecast daily rate / recent daily history at or above this: DEMAND_SPIKE
SPIKE_HISTORY_DAYS = 28
LONGER_LEAD_TIME = 1.05   # expected / nominal lead time above this: LEAD_TIME_LONGER
DOCUMENT_TYPES = {"purchase_requisition": "NB", "stock_transport_order": "UB"}  # SAP's standard document types


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reason(_Model):
    """Why the decision is what it is, with the numbers behind it."""

    code: str
    message: str
    values: dict[str, float | str] = Field(default_factory=dict)


class Document(_Model):
    """The ERP document a non-zero order becomes."""

    document_type: Literal["purchase_requisition", "stock_transport_order"]
    erp_document_type: str = Field(description="SAP document type: NB (purchase requisition), UB (stock transport)")
    material: str
    location: str
    supplying_location: str
    quantity: float
    unit: str
    need_by_date: dt.date = Field(description="as_of + the expected lead time (whole days, rounded up)")
    recommendation_id: str
    bundle_sha256: str


class Decision(_Model):
    """The decision for one (location, SKU)."""

    recommendation_id: str = Field(description="UUID: the same request to the same bundle gives the same id")
    location: str
    sku: str
    order_quantity: float
    policy_quantity: float = Field(description="the policy's quantity (whole units where the network counts them, as "
                                               "the twin orders it) before pack size and minimum order quantity")
    order_up_to_level: float | None = Field(description="the inventory position the order aims at")
    inventory_position: float
    confidence: float | None = Field(description="a learned policy's probability of its action (PPO) or its "
                                                 "Q-value margin (DQN); none for a rule")
    document: Document | None
    reasons: list[Reason]


class BundleRef(_Model):
    name: str
    sha256: str


class DecisionResponse(_Model):
    """The decisions for one ERP state."""

    format: Literal["erp.decisions/1"] = FORMAT
    as_of: dt.date
    request_sha256: str = Field(description="sha256 of the request's canonical JSON")
    bundle: BundleRef
    decisions: list[Decision]


def request_sha256(state: ErpState) -> str:
    """The sha256 of the state's canonical JSON (what a request is, whatever its whitespace or key order).

    Fields added to erp.state/1 later (LATER_ITEM_FIELDS, `policy`) count only where given (not at their
    default), so a request that does not use them keeps the hash, and the recommendation ids, it had before."""
    return hashlib.sha256(state.model_dump_json(exclude=_later_defaults(state)).encode()).hexdigest()


LATER_ITEM_FIELDS = ("max_order_quantity", "storage_capacity")


def _later_defaults(state: ErpState) -> dict:
    """`exclude` for model_dump_json: the later fields where they are at their default."""
    exclude: dict = {} if state.policy != "bundle" else {"policy": True}
    locations: dict = {}
    for li, location in enumerate(state.locations):
        if all(item.max_order_quantity is None and item.storage_capacity is None for item in location.items):
            locations[li] = {"items": {"__all__": set(LATER_ITEM_FIELDS)}}  # the usual case, and the quick one
            continue
        items = {ii: {f for f in LATER_ITEM_FIELDS if getattr(item, f) is None}
                 for ii, item in enumerate(location.items)}
        items = {ii: fields for ii, fields in items.items() if fields}
        if items:
            locations[li] = {"items": items}
    if locations:
        exclude["locations"] = locations
    return exclude


def recommendation_id(bundle_sha: str, request_sha: str, location: str, sku: str) -> str:
    """An RFC 4122 name-based (SHA) UUID of the bundle, the request and the (location, SKU)."""
    h = hashlib.sha256(f"{bundle_sha}|{request_sha}|{location}|{sku}".encode()).hexdigest()
    # as uuid.UUID(hex=h[:32], version=5) writes it: version nibble 5, variant bits 10, without its object
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def decide(bundle: Bundle, state: ErpState) -> DecisionResponse:
    """The bundle's decisions for every (location, SKU) of `state` (ErpStateError naming the field if the state
    is one the bundle cannot decide for)."""
    _check_served(bundle, state)
    request_sha = request_sha256(state)  # of the request as sent
    per_location = _decide_locations(bundle, state, [request_sha] * len(state.locations))
    return _response(bundle, state, request_sha, [d for decisions in per_location for d in decisions])


def decide_many(bundle: Bundle, states: Sequence[ErpState]) -> list[DecisionResponse | Exception]:
    """`decide` for each state, in order (what `decide` raised in place of an answer: an ErpStateError or another
    SpecError for a refused state, anything else a bug, kept to that state), the same
    answers byte for byte, but requests that can share one conversion and one policy run do: stores'
    requests for the same day, disruptions and options, when the bundle decides each store from its own
    numbers (what the service's concurrent store requests are)."""
    results: list[DecisionResponse | Exception | None] = [None] * len(states)
    groups: dict[str, list[int]] = {}
    for n, state in enumerate(states):
        key = _merge_key(bundle, state)
        if key is None:
            results[n] = _decide_or_error(bundle, state)
        else:
            groups.setdefault(key, []).append(n)
    for members in groups.values():
        taken: set[str] = set()
        batch = []  # requests of this group with no location in common: merged into one state
        for n in members:
            ids = {location.id for location in states[n].locations}
            if taken.isdisjoint(ids):
                taken |= ids
                batch.append(n)
            else:  # a location asked for twice at once: decided on its own
                results[n] = _decide_or_error(bundle, states[n])
        if len(batch) == 1:
            results[batch[0]] = _decide_or_error(bundle, states[batch[0]])
            continue
        try:
            answers = _decide_merged(bundle, [states[n] for n in batch])
        except Exception:  # some request is refused (or hits a bug): each on its own, so each gets its own answer
            answers = [_decide_or_error(bundle, states[n]) for n in batch]
        for n, answer in zip(batch, answers):
            results[n] = answer
    return results  # type: ignore[return-value]


def _decide_or_error(bundle: Bundle, state: ErpState) -> DecisionResponse | Exception:
    try:
        return decide(bundle, state)
    except Exception as error:  # a refusal (SpecError; ErpStateError is one), or a bug: this request's own answer
        return error


def _merge_key(bundle: Bundle, state: ErpState) -> str | None:
    """What requests must share to be decided as one state (everything but their locations), or None when this
    one is decided on its own: a location other than a store (a DC's numbers come from its stores), or an item
    forecast from history (a panel forecast). Every policy a bundle holds decides a node from its own rows (a rule
    from its position and forecast; OnnxPolicy from ObsInputs.rows and the network's shock flags, its heads
    scoring one (node, SKU) or one node's SKUs at a time), so stores' requests merge whatever the policy."""
    roles = bundle.manifest.roles
    for location in state.locations:
        if roles.get(location.id) != "store":
            return None
        if any(item.forecast is None and item.demand_history is not None for item in location.items):
            return None
    return state.model_dump_json(exclude={"locations"})


def _decide_merged(bundle: Bundle, states: list[ErpState]) -> list[DecisionResponse]:
    """The answers to `states` (stores' requests with no location in common and everything else equal) from one
    conversion and one policy run over all their locations; each answer as `decide` gives it on its own."""
    shas = [request_sha256(state) for state in states]
    merged = states[0].model_copy(update={"locations": [loc for state in states for loc in state.locations]})
    _check_served(bundle, merged)
    per_location = iter(_decide_locations(bundle, merged, [sha for state, sha in zip(states, shas)
                                                            for _ in state.locations]))
    answers = []
    for state, sha in zip(states, shas):
        decisions = [d for _ in state.locations for d in next(per_location)]
        answers.append(_response(bundle, state, sha, decisions))
    return answers


def _decide_locations(bundle: Bundle, state: ErpState, request_shas: list[str]) -> list[list[dict]]:
    """The decisions of each location of `state`, its recommendation ids from the request hash given for it."""
    policy = _policy_asked(bundle, state)
    if policy is bundle.policy:
        state, from_history = _history_forecasts(bundle, state)
    else:  # the rule fallback reads no forecast
        from_history = {}
    inputs = state_to_twin(state, bundle.network, review_period=bundle.manifest.review_period)
    forecast = _checked_forecast(bundle, state, inputs, policy)
    requested = np.array([bundle.network.index(location.id) for location in state.locations], dtype=np.int64)
    out = policy.decide(inputs.snapshot, forecast, nodes=requested)
    fallback = _fallback(bundle, policy, inputs, out, requested)
    return [_decisions(bundle, state, inputs, out, i, location, sha, from_history, fallback)
            for location, i, sha in zip(state.locations, requested.tolist(), request_shas)]


def _policy_asked(bundle: Bundle, state: ErpState):
    """The policy the request asks for: the bundle's, or its rule fallback (ErpStateError on `policy` if none)."""
    if state.policy == "bundle":
        return bundle.policy
    if bundle.fallback is None:
        kind = "a rule bundle (the rule is its policy)" if bundle.manifest.kind == "rule" else (
            "a learned bundle exported without one")
        raise ErpStateError(("policy",), f"bundle {bundle.name!r} has no rule fallback: {kind}; allowed: bundle, or "
                                         f"fallback with a learned bundle that carries one (experiments.export "
                                         f"writes it)")
    return bundle.fallback


@dataclass(frozen=True)
class _Fallback:
    """The rule fallback's output where decisions use it: every row (`asked`), or the learned policy's rows that
    were not finite."""

    out: PolicyOutput
    name: str
    asked: bool


def _fallback(bundle: Bundle, policy, inputs: TwinInputs, out: PolicyOutput, requested: np.ndarray) -> _Fallback | None:
    entry = bundle.manifest.fallback
    if policy is bundle.fallback:
        return _Fallback(out, entry.name, asked=True)
    asked_for = set(requested.tolist())
    if bundle.fallback is None or not any(i in asked_for for i, _ in out.not_finite):
        return None
    return _Fallback(bundle.fallback.decide(inputs.snapshot, None, nodes=requested), entry.name, asked=False)


def _response(bundle: Bundle, state: ErpState, request_sha: str, decisions: list[dict]) -> DecisionResponse:
    # the decisions come as plain dicts (reasons: dicts or Reason objects), validated here in one call: pydantic
    # builds the nested models in Rust, 2-3 times faster than a Decision(...) and a Reason(...) per SKU
    return DecisionResponse.model_validate({"as_of": state.as_of, "request_sha256": request_sha,
                                            "bundle": {"name": bundle.name, "sha256": bundle.sha256},
                                            "decisions": decisions})


def _check_served(bundle: Bundle, state: ErpState) -> None:
    roles = bundle.manifest.roles
    for li, location in enumerate(state.locations):
        if location.id in bundle.manifest.nodes and location.id not in roles:
            raise ErpStateError(("locations", li, "id"), f"{location.id!r} is a supplier of the network; allowed: "
                                                         f"a DC or store the bundle serves")


def _history_forecasts(bundle: Bundle, state: ErpState) -> tuple[ErpState, dict[tuple[str, str], Reason]]:
    """`state` with the bundle's saved forecaster's daily forecast (mean and sd from `as_of`, over the longest
    protection period asked for) on every item that has demand history and no forecast; and the reason
    recorded for each. Unchanged without a saved forecaster or when the policy reads no forecast.

    Saved forecasters forecast daily. Daily history is forecast as it is. Weekly history is spread evenly over
    each week's 7 days (conversion.daily_from_weekly) and forecast from where its last week ends, 0 to 6 days
    before as_of: the forecast of those days is dropped (their sales are already in the stock the state
    reports), so every forecast starts on as_of. Refused, naming the field, when the forecaster's max_horizon
    does not reach past that gap, or when the forecaster cannot read the series (e.g. one saved on weekly data).
    """
    forecaster = bundle.forecaster
    if forecaster is None or not bundle.policy.needs_forecast:
        return state, {}
    todo = [(li, ii) for li, location in enumerate(state.locations) for ii, item in enumerate(location.items)
            if item.forecast is None and item.demand_history is not None]
    if not todo:
        return state, {}
    first = state_to_twin(state, bundle.network, review_period=bundle.manifest.review_period)
    # the longest protection period of the request: a DC's forecast is the sum of its stores' over its own period
    days = int(max(first.periods[bundle.network.index(location.id)] for location in state.locations))
    # longer periods are refused by the conversion, naming the field; at least a day (a review period of 0 and lead
    # times rounding to 0 would leave a weekly history's forecast empty once the days before as_of are dropped)
    days = max(1, min(days, MAX_FORECAST_DAYS))
    # per frequency: series id -> row, and the daily mean and sd from as_of (at most `days`, within max_horizon)
    forecasts: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray, int]] = {}
    for frequency in ("daily", "weekly"):
        mine = [(a, b) for a, b in todo if state.locations[a].items[b].demand_history.frequency == frequency]
        if not mine:
            continue
        li, ii = mine[0]
        where = ("locations", li, "items", ii, "demand_history")
        panel = first.history[frequency]
        gap = 0  # days from the panel's end to as_of, forecast and dropped
        if frequency == "weekly":
            panel = daily_from_weekly(panel)
            gap = (state.as_of - state.locations[li].items[ii].demand_history.end).days
            if forecaster.max_horizon is not None and gap >= forecaster.max_horizon:
                end = state.as_of - dt.timedelta(days=gap + 1)
                raise ErpStateError((*where, "values"), (
                    f"the last week ends on {end}, leaving {gap} days before as_of without sales; the "
                    f"bundle's {forecaster.name} forecasts at most {forecaster.max_horizon} days ahead "
                    f"(max_horizon), so a forecast from that week's end does not reach as_of; allowed: weeks "
                    f"ending at most {forecaster.max_horizon - 1} days before as_of, daily history, or the "
                    f"item's own forecast"))
        horizon = max(1, min(gap + days, forecaster.max_horizon or gap + days))
        try:
            daily = forecaster.forecast(panel, horizon)
        except SpecError as error:
            raise ErpStateError(where, f"the bundle's forecaster {forecaster.name} cannot read it"
                                       f"{' (weekly, spread over days)' if frequency == 'weekly' else ''}: "
                                       f"{error}") from error
        mean = np.maximum(daily.mean[:, gap:], 0.0)
        sd = np.maximum(daily_sd(daily)[:, gap:], 0.0)
        forecasts[frequency] = ({series: r for r, series in enumerate(panel.ids)}, mean, sd, gap)
    locations = list(state.locations)
    reasons = {}
    for a, b in todo:
        location = locations[a]
        item = location.items[b]
        history = item.demand_history
        row, mean, sd, gap = forecasts[history.frequency]
        r = row[f"{location.id}/{item.sku}"]
        pad = max(days - mean.shape[1], 0)  # past its horizon, the last day carries on (as live forecasts do)
        forecast = ClientForecast(start=state.as_of, mean=[float(v) for v in mean[r]] + [float(mean[r, -1])] * pad,
                                  sd=[float(v) for v in sd[r]] + [float(sd[r, -1])] * pad)
        items = list(location.items)
        items[b] = item.model_copy(update={"forecast": forecast})
        locations[a] = location = location.model_copy(update={"items": items})
        periods = len(history.values)
        if history.frequency == "daily":
            reasons[location.id, item.sku] = Reason(
                code="FORECAST_FROM_HISTORY", message=f"forecast by the bundle's {forecaster.name} from "
                f"{periods} days of history", values={
                    "forecaster": forecaster.name, "history_days": float(periods),
                    "forecast_per_day": float(np.mean(mean[r]))})
        else:
            reasons[location.id, item.sku] = Reason(
                code="FORECAST_FROM_HISTORY", message=f"forecast by the bundle's {forecaster.name} from "
                f"{periods} weeks of history, each week's total spread evenly over its 7 days"
                + (f"; the {gap} days from the last week's end to as_of forecast and dropped" if gap else ""),
                values={"forecaster": forecaster.name, "history_frequency": "weekly",
                        "history_weeks": float(periods), "history_days": float(7 * periods),
                        "days_before_as_of": float(gap), "forecast_per_day": float(np.mean(mean[r]))})
    return state.model_copy(update={"locations": locations}), reasons


def _checked_forecast(bundle: Bundle, state: ErpState, inputs: TwinInputs, policy=None):
    policy = bundle.policy if policy is None else policy
    if not policy.needs_forecast:
        return None
    forecast = inputs.forecast
    for li, location in enumerate(state.locations):
        i = bundle.network.index(location.id)
        for ii, item in enumerate(location.items):
            k = bundle.network.skus.name.index(item.sku)
            loc = ("locations", li, "items", ii, "forecast")
            if not np.isfinite(forecast.mean[i, k]):
                source = bundle.manifest.forecaster
                own = (f"forecasts from daily demand history (demand_history; weekly is spread evenly over days) "
                       f"with its {bundle.forecaster.name}"
                       if bundle.forecaster is not None else "has no forecaster of its own"
                       + (" (inside the twin it used the oracle, which exists only there)" if source == "oracle"
                          else ""))
                raise ErpStateError(loc, (
                    f"required: bundle {bundle.name!r} decides from a forecast over the location's lead time + "
                    f"review period and {own}; allowed: the item's forecast (mean and sd, or q10, q50, q90 per "
                    f"day), or, at a DC, forecasts for the SKU at every store below it"))
            if policy.needs_spread and (forecast.spread is None or not np.isfinite(forecast.spread[i, k])):
                raise ErpStateError(loc, f"required: a spread (sd, or q10 and q90) for every forecast: bundle "
                                         f"{bundle.name!r} sets safety stock from it")
    return forecast


def _decisions(bundle: Bundle, state: ErpState, inputs: TwinInputs, out, i: int, location: Location,
               request_sha: str, from_history: dict[tuple[str, str], Reason],
               fallback: _Fallback | None = None) -> list[dict]:
    """The decisions for one location's items: its numbers read as arrays once, the reasons that hold for the
    whole location (lead time, disruptions) and its document's source built once."""
    network, snapshot = bundle.network, inputs.snapshot
    items = location.items
    k = np.array([network.skus.name.index(item.sku) for item in items], dtype=np.int64)
    raw = out.orders[i, k]
    level = out.levels[i, k]
    confidence = np.full(len(k), np.nan) if out.confidence is None else out.confidence[i, k]
    fallen = _fallen(fallback, out, i, k, raw, level, confidence)  # rows the fallback decides, raw etc. updated
    if network.demand.integer_units:  # whole units, as the twin's engine rounds every order it takes
        raw = np.rint(raw)
    has_level = np.isfinite(level)
    position = (snapshot.on_hand[i, k] + snapshot.in_transit[i, k] + snapshot.on_order[i, k]
                - snapshot.backorders[i, k])  # Snapshot.inventory_position, for this location's SKUs
    backorders = snapshot.backorders[i, k]
    confidence = confidence.tolist()
    shared = _location_reasons(bundle, inputs, i)
    spikes = _spikes(inputs, i, k, items)
    document = _document_fields(bundle, state, inputs, i, location.id)
    decisions = []
    for m, (item, q, lv, pos, owed, sure, ok) in enumerate(zip(
            items, raw.tolist(), level.tolist(), position.tolist(), backorders.tolist(), confidence,
            has_level.tolist())):
        quantity, reasons = _rounded(q, item)
        quantity, capped = _capped(quantity, item, pos, lv if ok else None, network.demand.integer_units)
        if capped is not None:
            reasons.append(capped)
        if ok:
            values = {"inventory_position": pos, "order_up_to_level": lv}
            if q > 0:
                reasons.insert(0, dict(
                    code="BELOW_LEVEL", message=f"inventory position {pos:g} is below the level {lv:g}: order {q:g}",
                    values={**values, "gap": lv - pos}))
            else:
                reasons.insert(0, dict(
                    code="AT_OR_ABOVE_LEVEL", message=f"inventory position {pos:g} reaches the level {lv:g}: no "
                    f"order", values=values))
        if m in fallen:
            reasons.insert(0, _fallback_reason(fallback, fallen[m], pos, lv if ok else None))
        if owed > 0:
            reasons.append(dict(code="BACKORDERS_OUTSTANDING", message=f"{owed:g} units owed",
                                values={"backorders": owed}))
        reasons += shared
        if spikes[m] is not None:
            reasons.append(spikes[m])
        forecast_reason = from_history.get((location.id, item.sku))
        if forecast_reason is not None:
            reasons.append(forecast_reason)
        rec = recommendation_id(bundle.sha256, request_sha, location.id, item.sku)
        doc = None
        if quantity > 0:
            doc = dict(material=item.sku, quantity=quantity, unit=item.unit or "EA", recommendation_id=rec,
                       **document)
        decisions.append(dict(
            recommendation_id=rec, location=location.id, sku=item.sku, order_quantity=quantity, policy_quantity=q,
            order_up_to_level=lv if ok else None, inventory_position=pos,
            confidence=sure if math.isfinite(sure) else None, document=doc, reasons=reasons))
    return decisions


def _fallen(fallback: _Fallback | None, out: PolicyOutput, i: int, k: np.ndarray, raw: np.ndarray, level: np.ndarray,
            confidence: np.ndarray) -> dict[int, tuple[str, float] | None]:
    """The items (positions in k) the rule fallback decides, each with why (None: asked for; else the learned
    policy's (what, value) that was not finite); their raw orders and levels replaced by the fallback's, their
    confidence by NaN (in place)."""
    if fallback is None:
        return {}
    if fallback.asked:
        return dict.fromkeys(range(len(k)))
    fallen = {m: out.not_finite[i, kk] for m, kk in enumerate(k.tolist()) if (i, kk) in out.not_finite}
    for m in fallen:
        raw[m], level[m], confidence[m] = fallback.out.orders[i, k[m]], fallback.out.levels[i, k[m]], np.nan
    return fallen


def _fallback_reason(fallback: _Fallback, why: tuple[str, float] | None, position: float,
                     level: float | None) -> Reason:
    values: dict[str, float | str] = {"fallback": fallback.name, "inventory_position": position}
    if level is not None:
        values["order_up_to_level"] = level
    aim = f": order up to {level:g}" if level is not None else ""
    if why is None:
        return Reason(code="FALLBACK_POLICY_USED", message=f"decided by the bundle's rule fallback {fallback.name} "
                      f"(asked for: policy=fallback){aim}", values={"cause": "asked", **values})
    what, value = why
    return Reason(code="FALLBACK_POLICY_USED", message=f"decided by the bundle's rule fallback {fallback.name}: the "
                  f"learned policy's {what}={value} is not finite{aim}",
                  values={"cause": "not_finite", "not_finite": what, "value": str(value), **values})


def _capped(quantity: float, item: Item, position: float, level: float | None,
            whole_units: bool) -> tuple[float, Reason | None]:
    """The quantity within the item's capacity: at most max_order_quantity and storage_capacity - position
    (never below 0); where that cap binds, down to whole packs (whole units in a network that counts them), and 0
    if the minimum order quantity does not fit. Unchanged (and no reason) without the fields or below the cap."""
    caps: dict[str, float] = {}
    if item.max_order_quantity is not None:
        caps["max_order_quantity"] = float(item.max_order_quantity)
    if item.storage_capacity is not None:
        caps["storage_capacity"] = max(float(item.storage_capacity) - position, 0.0)
    if not caps or quantity <= 0:
        return quantity, None
    which = min(caps, key=caps.__getitem__)  # the tighter one (a tie: max_order_quantity)
    cap = caps[which]
    if quantity <= cap:
        return quantity, None
    values: dict[str, float | str] = {"wanted": quantity, "cap": cap, "capacity": which, "inventory_position": position}
    if item.max_order_quantity is not None:
        values["max_order_quantity"] = float(item.max_order_quantity)
    if item.storage_capacity is not None:
        values["storage_capacity"] = float(item.storage_capacity)
        values["storage_room"] = caps["storage_capacity"]
    limit = (f"max_order_quantity {cap:g}" if which == "max_order_quantity" else
             f"storage_capacity {float(item.storage_capacity):g} less inventory position {position:g} = {cap:g}")
    if item.pack_size:
        packs = math.floor(cap / item.pack_size + 1e-9)
        capped = min(packs * item.pack_size, cap)  # 3 x 0.1 is 0.30000000000000004: within a cap of 0.3
        values.update(pack_size=item.pack_size, packs=float(packs))
        how = f"{capped:g} ({packs} packs of {item.pack_size:g})"
    else:
        capped = float(math.floor(cap + 1e-9)) if whole_units else cap
        how = f"{capped:g}"
    moq = item.min_order_quantity
    if moq and 0 < capped < moq:
        values["min_order_quantity"] = float(moq)
        message = (f"{quantity:g} wanted; capped by {limit}: {how} is below the minimum order quantity {moq:g}, so "
                   f"no order")
        capped = 0.0
    elif capped <= 0:
        message = f"{quantity:g} wanted; capped by {limit}: no room for a{' whole pack' if item.pack_size else 'ny'} " \
                  f"order"
        capped = 0.0
    else:
        message = f"{quantity:g} wanted; capped by {limit}: order {how}"
    values.update(order_quantity=capped, position_after_order=position + capped)
    if level is not None:
        values["short_of_level"] = max(level - position - capped, 0.0)
    return capped, Reason(code="CAPPED_BY_CAPACITY", message=message, values=values)


def _rounded(raw: float, item: Item) -> tuple[float, list[Reason]]:
    """The quantity ordered: the policy's, raised to the minimum order quantity, then up to whole packs."""
    reasons: list[Reason] = []
    quantity = raw
    if quantity > 0 and item.min_order_quantity and quantity < item.min_order_quantity:
        quantity = float(item.min_order_quantity)
        reasons.append(Reason(code="RAISED_TO_MOQ", message=f"{raw:g} raised to the minimum order quantity "
                              f"{quantity:g}", values={"policy_quantity": raw, "min_order_quantity": quantity}))
    if quantity > 0 and item.pack_size:
        packs = math.ceil(quantity / item.pack_size - 1e-9)
        rounded = packs * item.pack_size
        if not math.isclose(rounded, quantity):
            reasons.append(Reason(code="ROUNDED_TO_PACK", message=f"{quantity:g} rounded up to {packs} packs of "
                                  f"{item.pack_size:g}", values={"quantity": quantity, "pack_size": item.pack_size,
                                                                  "packs": packs, "rounded": rounded}))
        quantity = rounded
    return quantity, reasons


def _location_reasons(bundle: Bundle, inputs: TwinInputs, i: int) -> list[Reason]:
    """The reasons that hold for every SKU of location i: a longer lead time, the disruptions in force."""
    snapshot, topo = inputs.snapshot, bundle.topology
    reasons = []
    expected, nominal = float(snapshot.expected_lead_time[i]), float(topo.lead_time_mean[i])
    if expected > LONGER_LEAD_TIME * nominal:
        reasons.append(Reason(code="LEAD_TIME_LONGER", message=f"expected lead time {expected:g} days against "
                              f"{nominal:g} nominal", values={"expected_days": expected, "nominal_days": nominal}))
    for shock in snapshot.disruptions:
        target = _target(shock)
        reasons.append(Reason(code="DISRUPTION_ACTIVE", message=f"{type(shock).__name__} {target} in force for "
                              f"{snapshot.remaining_days(shock)} more days",
                              values={"type": type(shock).__name__, "target": target,
                                      "days_left": float(snapshot.remaining_days(shock))}))
    return reasons


def _target(shock: twin_shocks.Shock) -> str:
    for name in ("dc", "supplier", "node"):
        if getattr(shock, name, None):
            return str(getattr(shock, name))
    sources = getattr(shock, "sources", None)
    return ",".join(sources) if sources else "network"


def _spikes(inputs: TwinInputs, i: int, k: np.ndarray, items: tuple[Item, ...]) -> list[Reason | None]:
    """Per item: DEMAND_SPIKE where the forecast's daily rate is at least SPIKE_RATIO x its recent daily history."""
    rates = (inputs.forecast.mean[i, k] / max(int(inputs.periods[i]), 1)).tolist()
    spikes: list[Reason | None] = []
    for item, rate in zip(items, rates):
        history = item.demand_history
        spike = None
        if history is not None and history.frequency == "daily" and math.isfinite(rate):
            recent = history.values[-SPIKE_HISTORY_DAYS:]
            usual = math.fsum(recent) / len(recent)
            if usual > 0 and rate >= SPIKE_RATIO * usual:
                spike = Reason(code="DEMAND_SPIKE", message=f"forecast {rate:.3g}/day against {usual:.3g}/day over "
                               f"the last {len(recent)} days", values={"forecast_per_day": rate,
                                                                       "recent_per_day": usual,
                                                                       "ratio": rate / usual})
        spikes.append(spike)
    return spikes


def _document_fields(bundle: Bundle, state: ErpState, inputs: TwinInputs, i: int, location: str) -> dict:
    """What every document of location i shares: its type, supplying location, need-by date and the bundle."""
    network, topo = bundle.network, bundle.topology
    node = network.nodes[i]
    source = node.parent
    for shock in inputs.snapshot.disruptions:  # a closed DC's stores buy from their backup while it is closed
        if isinstance(shock, twin_shocks.DcClosure) and shock.dc == source and shock.reroute and node.backup_parent:
            source = node.backup_parent
    kind = "purchase_requisition" if topo.is_supplier[network.index(source)] else "stock_transport_order"
    lead = math.ceil(float(inputs.snapshot.expected_lead_time[i]) - 1e-9)
    return {"document_type": kind, "erp_document_type": DOCUMENT_TYPES[kind], "location": location,
            "supplying_location": source, "need_by_date": state.as_of + dt.timedelta(days=lead),
            "bundle_sha256": bundle.sha256}


CSV_COLUMNS = ("recommendation_id", "location", "sku", "order_quantity", "policy_quantity", "order_up_to_level",
               "inventory_position", "confidence", "document_type", "erp_document_type", "supplying_location",
               "unit", "need_by_date", "reason_codes", "bundle_sha256", "as_of")


def _number(value: float | None) -> str:
    """A number as an ERP reads it back exactly: 15 significant digits, never an exponent for quantities."""
    if value is None:
        return ""
    text = format(value, ".15g")
    return format(value, ".15f").rstrip("0").rstrip(".") if "e" in text else text


def _text(value: str) -> str:
    """A client-given string made safe for spreadsheets: a leading =, +, - or @ would run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def decisions_csv(response: DecisionResponse) -> str:
    """The decisions as CSV, one row per (location, SKU); reason codes joined by ';'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in response.decisions:
        doc = d.document
        writer.writerow([d.recommendation_id, _text(d.location), _text(d.sku), _number(d.order_quantity),
                         _number(d.policy_quantity), _number(d.order_up_to_level), _number(d.inventory_position),
                         "" if d.confidence is None else f"{d.confidence:.4f}",
                         doc.document_type if doc else "", doc.erp_document_type if doc else "",
                         _text(doc.supplying_location) if doc else "", _text(doc.unit) if doc else "",
                         doc.need_by_date.isoformat() if doc else "", ";".join(r.code for r in d.reasons),
                         response.bundle.sha256, response.as_of.isoformat()])
    return buffer.getvalue()
