"""Reference cases with known optimal costs (tests/reference_cases/*.json), mapped onto the twin.

A case file states a textbook inventory problem, its optimal policy and its optimal
expected cost per period. `load_case` reads any file of that schema (not only the
shipped four) and `ReferenceCase.network()` builds the equivalent twin network.

Timing-convention mapping (the twin's day contract: receive, serve backorders,
order, demand, costs at the end of the day):

- single-stage cases (base-stock, (s,S), newsvendor) count demand over L+1
  periods: an order placed at the start of period t arrives at the start of
  t+L, before that period's demand. That is exactly the twin's contract, so the
  store's lane gets lead time L (L = 0: received at once, before demand).
- the serial case (Chen-Zheng) orders at the END of a period, after its demand:
  an order placed at the end of t arrives at the start of t+L_j and stage 1 sees
  L_1 periods of demand. The twin orders on the morning of day t+1, before that
  day's demand, so the customer-facing lane gets L_1 - 1 days (stage 1 then sees
  L_1 days of demand). Upstream lanes keep L_j: in both clocks, stock a stage
  orders is ready to ship on L_j decisions later (a DC ships what arrived at the
  start of a day at that day's allocation).
  In-transit stock into stage i is charged at the shipping stage's local rate
  h'_(i+1), as in the case's cost definition. The case counts each unit in
  transit into stage 1 for L_1 periods, the twin for L_1 - 1 days; the period
  the twin's clock does not have holds mu units on average, so the validator
  adds h'_2 * mu per period (`convention_adjustment`). It is a constant: the
  pipeline does not depend on the policy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from twin.config import SpecError
from twin.spec import NetworkSpec, network_from_dict

KINDS = ("newsvendor", "base_stock", "sS", "serial")


@dataclass(frozen=True)
class ReferenceCase:
    """One reference problem: demand law, costs, lead times, the optimal policy and its cost per period."""

    case_id: str
    kind: str
    demand_dist: str
    demand_mean: float
    demand_sd: float
    holding: tuple[float, ...]        # local holding cost per unit-period, stage 1 (customer-facing) first
    penalty: float                    # backorder cost per unit-period (lost-sale cost per unit when lost)
    lost_sales: bool
    fixed_cost: float
    lead_times: tuple[int, ...]       # lead time into each stage in the case's own convention, stage 1 first
    levels: dict[str, tuple[float, ...]]  # 'S' (base-stock / echelon levels, stage 1 first), 's' for (s,S)
    optimal_cost: float

    @property
    def convention_adjustment(self) -> float:
        """Cost per period the case counts and the twin's clock does not (see the module docstring)."""
        if self.kind != "serial" or self.stages < 2:
            return 0.0
        return self.holding[1] * self.demand_mean

    @property
    def stages(self) -> int:
        return len(self.lead_times)

    def network(self) -> NetworkSpec:
        """The twin network equivalent to this case under the timing mapping above."""
        return network_from_dict(self.network_data(), path=f"case[{self.case_id}]")

    def network_data(self) -> dict:
        """`network()` as plain data (twin.spec.network_from_dict's input), as a bundle stores it."""
        integer = self.demand_dist == "poisson"
        sku = {"name": "item", "dist": self.demand_dist, "mean": self.demand_mean,
               "holding_cost": 1.0, "backorder_cost": self.penalty, "lost_sale_cost": self.penalty,
               "fixed_order_cost": self.fixed_cost, "unit_cost": 0.0}
        if self.demand_dist == "normal":
            sku["cv"] = self.demand_sd / self.demand_mean
        nodes = [{"name": "supplier", "kind": "supplier"}]
        parent = "supplier"
        for j in range(self.stages, 0, -1):  # upstream first
            lead = self.lead_times[j - 1]
            if self.kind == "serial" and j == 1:
                lead -= 1
            name = "stage_1" if j == 1 else f"stage_{j}"
            nodes.append({
                "name": name, "kind": "store" if j == 1 else "dc", "parent": parent,
                "lead_time": {"dist": "deterministic", "mean": lead},
                "unmet": "lost" if (self.lost_sales and j == 1) else "backorder",
                "holding_factor": self.holding[j - 1],
                "backorder_factor": 1.0 if j == 1 else 0.0,
                "in_transit_holding": self.holding[j] if (self.kind == "serial" and j < self.stages) else 0.0,
            })
            parent = name
        return {"name": self.case_id, "nodes": nodes, "skus": {"items": [sku]},
                "demand": {"truncate_normal": False, "integer_units": integer}}


def load_case(path: str | Path) -> ReferenceCase:
    """Read and validate a reference case file; SpecError names the bad key."""
    return case_from_dict(read_case_data(path))


def read_case_data(path: str | Path) -> dict:
    """A case file's JSON object as plain data, `case_id` defaulting to the file's stem (`case_from_dict` reads it;
    a checkpoint stores it, so it does not depend on the file staying where it was)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"case: file {str(path)!r} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"case: {path.name} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SpecError(f"case: {path.name} must hold a JSON object")
    return {"case_id": path.stem, **data}


def case_from_dict(data: dict, default_id: str = "case") -> ReferenceCase:
    params = _mapping(data, "parameters", "case")
    policy = _mapping(data, "optimal_policy", "case")
    demand = _mapping(params, "demand", "case.parameters")
    dist = demand.get("dist")
    if dist not in ("normal", "poisson"):
        raise SpecError(f"case.parameters.demand.dist: {dist!r} is not allowed; allowed: normal, poisson")
    mean = _number(demand, "mean", "case.parameters.demand", positive=True)
    sd = _number(demand, "sd", "case.parameters.demand") if dist == "normal" else math.sqrt(mean)
    optimal_cost = _number(data, "optimal_expected_cost", "case")
    unmet = str(params.get("unmet_demand", "backordered")).lower()
    lost = unmet.startswith("lost")
    penalty = _number(params, _prefixed(params, ("backorder_cost_p", "stockout_cost_p"), "case.parameters"),
                      "case.parameters")
    fixed_key = next((k for k in params if k.startswith("fixed_order_cost")), None)
    fixed = _number(params, fixed_key, "case.parameters") if fixed_key else 0.0
    case_id = str(data.get("case_id", default_id))

    if "echelon_S_star" in policy:
        kind = "serial"
        echelon = _stage_map(policy, "echelon_S_star", "case.optimal_policy")
        n = len(echelon)
        lead_key = _prefixed(params, ("lead_time_L_j", "lead_time"), "case.parameters")
        leads = _stage_map(params, lead_key, "case.parameters", n)
        local_key = next((k for k in params if k.startswith("local_holding_cost")), None)
        if local_key:
            holding = _stage_map(params, local_key, "case.parameters", n)
        else:
            ech = _stage_map(params, _prefixed(params, ("echelon_holding_cost",), "case.parameters"),
                             "case.parameters", n)
            holding = tuple(sum(ech[j:]) for j in range(n))
        levels = {"S": echelon}
    else:
        lead_key = _prefixed(params, ("lead_time_L", "lead_time"), "case.parameters")
        leads = (_number(params, lead_key, "case.parameters"),)
        holding = (_number(params, _prefixed(params, ("holding_cost_h", "holding_cost"), "case.parameters"),
                           "case.parameters"),)
        if "s_star" in policy:
            kind = "sS"
            levels = {"s": (_number(policy, "s_star", "case.optimal_policy"),),
                      "S": (_number(policy, "S_star", "case.optimal_policy"),)}
        elif "order_quantity_Q_star" in policy:
            kind = "newsvendor"
            levels = {"S": (_number(policy, "order_quantity_Q_star", "case.optimal_policy"),)}
        elif "S_star" in policy:
            kind = "base_stock"
            levels = {"S": (_number(policy, "S_star", "case.optimal_policy"),)}
        else:
            raise SpecError("case.optimal_policy: no known policy; allowed keys: S_star, s_star + S_star, "
                            "order_quantity_Q_star, echelon_S_star")
    for j, lead in enumerate(leads):
        if lead != int(lead) or lead < 0 or (kind == "serial" and j == 0 and lead < 1):
            raise SpecError(f"case.parameters: lead time of stage {j + 1} is {lead!r}; allowed: whole periods >= 0 "
                            f"(>= 1 for the customer-facing stage of a serial case)")
    for j, h in enumerate(holding):
        if h < 0:
            raise SpecError(f"case.parameters: holding cost of stage {j + 1} is {h!r}; allowed: >= 0")
    return ReferenceCase(case_id=case_id, kind=kind, demand_dist=dist, demand_mean=mean, demand_sd=sd,
                         holding=tuple(holding), penalty=penalty, lost_sales=lost, fixed_cost=fixed,
                         lead_times=tuple(int(v) for v in leads), levels=levels, optimal_cost=optimal_cost)


def _mapping(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise SpecError(f"{where}.{key}: missing or not an object")
    return value


def _number(data: dict, key: str, where: str, positive: bool = False) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{where}.{key}: {value!r} is not allowed; allowed: a finite number")
    if value < 0 or (positive and value == 0):
        raise SpecError(f"{where}.{key}: {value!r} is not allowed; allowed: a number {'>' if positive else '>='} 0")
    return float(value)


def _prefixed(data: dict, prefixes: tuple[str, ...], where: str) -> str:
    for prefix in prefixes:
        for key in data:
            if key.startswith(prefix):
                return key
    raise SpecError(f"{where}: missing {prefixes[0]!r}; allowed keys starting with: {', '.join(prefixes)}")


def _stage_map(data: dict, key: str, where: str, n: int | None = None) -> tuple[float, ...]:
    """A {"1": v1, "2": v2, ...} mapping as a tuple, stage 1 first."""
    value = data.get(key)
    if not isinstance(value, dict) or not value:
        raise SpecError(f"{where}.{key}: expected an object keyed by stage number (\"1\" = customer-facing)")
    try:
        stages = sorted(int(s) for s in value)
    except ValueError as exc:
        raise SpecError(f"{where}.{key}: keys must be stage numbers 1..N") from exc
    count = n or len(stages)
    if stages != list(range(1, count + 1)):
        raise SpecError(f"{where}.{key}: stages {stages} do not match 1..{count}")
    return tuple(_number(value, str(s), f"{where}.{key}") for s in stages)
