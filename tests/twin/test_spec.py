"""Bad configurations stop before anything is simulated, with one SpecError naming the key and what is allowed."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from twin import DcClosure, DemandShock, Engine, LeadTimeSpec, NetworkSpec, NodeSpec, SpecError, network_from_dict
from twin.shocks import CapacityCut, LeadTimeShock, SupplierOutage, shock_from_dict
from twin.spec import SKU_LIMITS


def base() -> dict:
    """A valid two-echelon network: one supplier, two DCs, three stores, two SKUs."""
    return {
        "name": "spec_test",
        "skus": {"items": [{"name": "milk", "group": "food", "dist": "poisson", "mean": 4},
                           {"name": "lego", "group": "toys", "dist": "negative_binomial", "mean": 1}]},
        "demand": {"promotion": {"weekly_probability": 0.1}},
        "nodes": [
            {"name": "sup", "kind": "supplier"},
            {"name": "dc_a", "kind": "dc", "parent": "sup", "lead_time": {"dist": "deterministic", "mean": 3}},
            {"name": "dc_b", "kind": "dc", "parent": "sup"},
            {"name": "s1", "kind": "store", "parent": "dc_a", "backup_parent": "dc_b"},
            {"name": "s2", "kind": "store", "parent": "dc_a"},
            {"name": "s3", "kind": "store", "parent": "dc_b", "region": "north"},
        ],
    }


def bad(mutate) -> str:
    """Apply `mutate` to a copy of the base config and return the message of the one SpecError it raises."""
    data = copy.deepcopy(base())
    mutate(data)
    with pytest.raises(SpecError) as info:
        network_from_dict(data)
    message = str(info.value)
    assert "\n" not in message, "one message, one line"
    assert info.value.__cause__ is None
    return message


def test_base_config_is_valid():
    net = network_from_dict(base())
    assert net.node_names == ("sup", "dc_a", "dc_b", "s1", "s2", "s3")
    assert net.skus.n == 2


def test_negative_lead_time_mean():
    msg = bad(lambda d: d["nodes"][1]["lead_time"].update(mean=-2))
    assert msg.startswith("network.nodes[1].lead_time.mean:")
    assert "-2" in msg and "allowed: [0, inf]" in msg


def test_lead_time_cv_out_of_range_and_unknown_law():
    msg = bad(lambda d: d["nodes"][1]["lead_time"].update(dist="gamma", cv=9))
    assert "network.nodes[1].lead_time.cv" in msg and "allowed: [0, 5]" in msg
    msg = bad(lambda d: d["nodes"][1]["lead_time"].update(dist="weibull"))
    assert "network.nodes[1].lead_time.dist" in msg and "'weibull'" in msg
    assert "allowed: deterministic, gamma, lognormal, poisson, empirical" in msg


def test_gamma_lead_time_needs_positive_mean_and_cv():
    msg = bad(lambda d: d["nodes"][1]["lead_time"].update(dist="gamma", mean=2, cv=0))
    assert "network.nodes[1].lead_time" in msg and "mean > 0 and cv > 0" in msg


def test_no_stores():
    def mutate(d):
        d["nodes"] = [{"name": "sup", "kind": "supplier"}]
    msg = bad(mutate)
    assert "nodes: no stores" in msg and "allowed: at least one node of kind 'store'" in msg


def test_empty_node_list():
    msg = bad(lambda d: d.update(nodes=[]))
    assert "nodes" in msg and "allowed" in msg


def test_store_whose_parent_dc_does_not_exist():
    msg = bad(lambda d: d["nodes"][4].update(parent="dc_zzz"))
    assert "nodes[4].parent" in msg and "'dc_zzz'" in msg
    assert "allowed: sup, dc_a, dc_b, s1" in msg


def test_parent_listed_after_its_child():
    def mutate(d):
        d["nodes"][1], d["nodes"][3] = d["nodes"][3], d["nodes"][1]
    msg = bad(mutate)
    assert "nodes[1].parent" in msg and "'dc_a'" in msg and "allowed: sup" in msg


def test_store_cannot_supply_a_node():
    msg = bad(lambda d: d["nodes"][5].update(parent="s1"))
    assert "nodes[5].parent" in msg and "'s1' is a store" in msg


def test_supplier_with_a_parent():
    def mutate(d):
        d["nodes"].insert(1, {"name": "sup2", "kind": "supplier", "parent": "sup"})
    msg = bad(mutate)
    assert "nodes[1].parent" in msg and "allowed: null" in msg


def test_duplicate_node_name():
    msg = bad(lambda d: d["nodes"][5].update(name="s1"))
    assert "nodes[5].name" in msg and "'s1'" in msg and "allowed: a unique name" in msg


def test_unknown_node_kind_and_unmet_rule():
    msg = bad(lambda d: d["nodes"][3].update(kind="warehouse"))
    assert "network.nodes[3].kind" in msg and "allowed: supplier, dc, store" in msg
    msg = bad(lambda d: d["nodes"][3].update(unmet="shrug"))
    assert "network.nodes[3].unmet" in msg and "allowed: backorder, lost" in msg


def test_dc_with_no_children():
    def mutate(d):
        d["nodes"][5]["parent"] = "dc_a"
        del d["nodes"][3]["backup_parent"]
    msg = bad(mutate)
    assert "nodes[2]" in msg and "dc 'dc_b' supplies no node" in msg


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_zero_prob_outside_allowed_range(value):
    msg = bad(lambda d: d["skus"]["items"][1].update(dist="zero_inflated_poisson", zero_prob=value))
    assert msg.startswith("network.skus.items[1].zero_prob:") and "allowed: [0, 0.999]" in msg


@pytest.mark.parametrize("value", [-0.2, 1.01])
def test_promotion_probability_outside_unit_interval(value):
    msg = bad(lambda d: d["demand"]["promotion"].update(weekly_probability=value))
    assert msg.startswith("network.demand.promotion.weekly_probability:")
    assert "allowed: [0, 1]" in msg


def test_empirical_lead_time_probabilities():
    msg = bad(lambda d: d["nodes"][3].update(lead_time={"dist": "empirical", "values": [1, 2], "probs": [1.2, -0.2]}))
    assert "network.nodes[3].lead_time.probs[0]" in msg and "allowed: [0, 1]" in msg
    msg = bad(lambda d: d["nodes"][3].update(lead_time={"dist": "empirical", "values": [1, 2], "probs": [0.5, 0.4]}))
    assert "nodes[3].lead_time.probs" in msg and "must sum to 1" in msg
    msg = bad(lambda d: d["nodes"][3].update(lead_time={"dist": "empirical", "values": [1, 2], "probs": [1.0]}))
    assert "nodes[3].lead_time" in msg and "equal, non-zero length" in msg
    msg = bad(lambda d: d["nodes"][3].update(lead_time={"dist": "empirical", "values": [-1], "probs": [1.0]}))
    assert "nodes[3].lead_time.values[0]" in msg and "allowed" in msg


def test_unknown_demand_distribution():
    msg = bad(lambda d: d["skus"]["items"][0].update(dist="gaussian"))
    assert msg.startswith("network.skus.items[0].dist:")
    assert "'gaussian' is not allowed" in msg
    assert "allowed: poisson, negative_binomial, normal, zero_inflated_poisson" in msg


@pytest.mark.parametrize(("where", "typo", "path"), [
    (lambda d: d, "rationnig", "network"),
    (lambda d: d["nodes"][3], "lead_tme", "network.nodes[3]"),
    (lambda d: d["nodes"][1]["lead_time"], "maen", "network.nodes[1].lead_time"),
    (lambda d: d["skus"]["items"][0], "holding_cst", "network.skus.items[0]"),
    (lambda d: d["demand"], "weeekly", "network.demand"),
    (lambda d: d["demand"]["promotion"], "probability", "network.demand.promotion"),
])
def test_unknown_key_is_a_typo(where, typo, path):
    msg = bad(lambda d: where(d).update({typo: 1}))
    assert msg.startswith(f"{path}: unknown key {typo!r}; allowed: ")


def test_unknown_key_lists_the_allowed_keys():
    msg = bad(lambda d: d["nodes"][3].update(lead_tme=1))
    allowed = msg.split("allowed: ", 1)[1].split(", ")
    assert {"lead_time", "parent", "unmet", "storage_capacity", "backup_parent"} <= set(allowed)


def test_wrong_types():
    msg = bad(lambda d: d["nodes"][3].update(storage_capacity="lots"))
    assert "network.nodes[3].storage_capacity" in msg and "expected a number" in msg
    msg = bad(lambda d: d.update(backlog_first="yes"))
    assert "network.backlog_first" in msg and "expected true or false" in msg
    msg = bad(lambda d: d["nodes"][3].update(storage_capacity=0))
    assert "network.nodes[3].storage_capacity" in msg and "allowed: (0, inf]" in msg


def test_rationing_rule():
    msg = bad(lambda d: d.update(rationing="lottery"))
    assert "network.rationing" in msg and "allowed: proportional, priority, fcfs" in msg


def test_weekly_pattern_needs_seven_days():
    msg = bad(lambda d: d["demand"].update(weekly=[1, 2, 3]))
    assert "network.demand.weekly" in msg and "expected 7 numbers" in msg


def test_nodes_or_layout_not_both():
    msg = bad(lambda d: d.update(layout={"dcs": 2}))
    assert "either 'nodes'" in msg
    msg = bad(lambda d: d.pop("nodes"))
    assert "missing 'nodes' or 'layout'" in msg


def test_store_as_backup_parent_is_rejected():
    msg = bad(lambda d: d["nodes"][4].update(backup_parent="s1"))
    assert "nodes[4].backup_parent" in msg and "allowed" in msg


# ---------------------------------------------------------------------------
# Generated and listed SKUs: checked under the user's key, before any draw
# ---------------------------------------------------------------------------

def generated(profiles: dict, **top) -> dict:
    """The base network with SKUs drawn from `profiles` instead of listed."""
    data = copy.deepcopy(base())
    data["skus"] = {"count": 6, "seed": 0, "groups": ["food", "toys"], "profiles": profiles, **top}
    return data


def generated_error(profiles: dict) -> str:
    with pytest.raises(SpecError) as info:
        network_from_dict(generated(profiles))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_generated_skus_are_valid():
    net = network_from_dict(generated({"fast": {"share": 1, "dist": "poisson", "mean": [2, 3], "price": 4}}))
    assert net.skus.n == 6 and all(2 <= m <= 3 for m in net.skus.mean) and set(net.skus.price) == {4.0}


def test_profile_range_below_limit_names_the_users_key():
    msg = generated_error({"fast": {"mean": [-1, 2]}})
    assert msg.startswith("network.skus.profiles.fast.mean[0]: -1 is out of range; allowed: [0, inf]"), msg
    msg = generated_error({"fast": {"share": 0.5}, "slow": {"zero_prob": [0.5, 1.0]}})
    assert msg.startswith("network.skus.profiles.slow.zero_prob[1]: 1 is out of range; allowed: [0, 0.999]"), msg


def test_profile_single_number_out_of_range():
    msg = generated_error({"fast": {"price": 0}})
    assert msg.startswith("network.skus.profiles.fast.price: 0 is out of range; allowed: [1e-09, inf]"), msg
    msg = generated_error({"fast": {"weather_sensitivity": 7}})
    assert msg.startswith("network.skus.profiles.fast.weather_sensitivity: 7 is out of range; allowed: [-5, 5]"), msg


def test_profile_reversed_range():
    msg = generated_error({"fast": {"mean": [8, 2]}})
    assert msg == "network.skus.profiles.fast.mean: [8, 2] is reversed; allowed: [low, high] with low <= high"


def test_profile_range_needs_two_numbers():
    msg = generated_error({"fast": {"mean": [1, 2, 3]}})
    assert msg.startswith("network.skus.profiles.fast.mean: expected 2 numbers"), msg


@pytest.mark.parametrize("attr", sorted(SKU_LIMITS))
def test_sku_limits_are_one_table_for_items_profiles_and_catalog(attr):
    """A value just outside a limit fails alike for a listed item, a generated profile and a built catalog."""
    low, high = SKU_LIMITS[attr]
    value = low - 1 if low is not None else high + 1
    item_msg = bad(lambda d: d["skus"]["items"][1].update({attr: value}))
    assert item_msg.startswith(f"network.skus.items[1].{attr}: "), item_msg
    allowed = item_msg.split("allowed: ", 1)[1]
    profile_msg = generated_error({"fast": {attr: [value, value]}})
    assert profile_msg.startswith(f"network.skus.profiles.fast.{attr}[0]: ") and profile_msg.endswith(allowed)
    net = network_from_dict(base())
    values = np.array(getattr(net.skus, attr), dtype=float)
    values[1] = value
    with pytest.raises(SpecError) as info:
        dataclasses.replace(net.skus, **{attr: values}).validate("skus")
    assert str(info.value).startswith(f"skus[1].{attr}: ") and str(info.value).endswith(allowed)


# ---------------------------------------------------------------------------
# Keys that would be silently ignored are errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dist", ["deterministic", "poisson"])
def test_lead_time_cv_only_for_gamma_and_lognormal(dist):
    msg = bad(lambda d: d["nodes"][1]["lead_time"].update(dist=dist, cv=0.3))
    assert msg.startswith("network.nodes[1].lead_time.cv: 0.3 has no effect on a " + dist), msg
    assert "allowed: 0 or left out, or dist gamma or lognormal" in msg
    data = copy.deepcopy(base())  # cv 0 is the same as left out
    data["nodes"][1]["lead_time"].update(dist=dist, cv=0)
    network_from_dict(data)


def test_lead_time_cv_with_empirical():
    lead = {"dist": "empirical", "values": [1, 2], "probs": [0.5, 0.5], "cv": 0.2}
    msg = bad(lambda d: d["nodes"][3].update(lead_time=lead))
    assert msg.startswith("network.nodes[3].lead_time.cv:") and "allowed: 0 or left out" in msg


@pytest.mark.parametrize("dist", ["deterministic", "gamma", "poisson"])
@pytest.mark.parametrize("attr", ["values", "probs"])
def test_lead_time_values_and_probs_only_for_empirical(dist, attr):
    lead = {"dist": dist, "mean": 2, **({"cv": 0.3} if dist == "gamma" else {}), attr: [1]}
    msg = bad(lambda d: d["nodes"][3].update(lead_time=lead))
    assert msg.startswith(f"network.nodes[3].lead_time.{attr}: only an empirical lead time"), msg
    assert "allowed: left out, or dist empirical" in msg


def test_empirical_lead_time_mean_is_rejected():
    lead = {"dist": "empirical", "mean": 3, "values": [1, 2], "probs": [0.5, 0.5]}
    msg = bad(lambda d: d["nodes"][3].update(lead_time=lead))
    assert msg.startswith("network.nodes[3].lead_time.mean:") and "allowed: left out" in msg
    with pytest.raises(SpecError, match=r"^lt\.mean: .*allowed: left out"):
        LeadTimeSpec(dist="empirical", mean=3, values=(1, 2), probs=(0.5, 0.5)).validate("lt")


@pytest.mark.parametrize(("index", "kind"), [(1, "dc"), (3, "store")])
def test_supply_capacity_only_on_suppliers(index, kind):
    msg = bad(lambda d: d["nodes"][index].update(supply_capacity=50))
    assert msg.startswith(f"network.nodes[{index}].supply_capacity: only a supplier has a supply_capacity"), msg
    assert f"allowed on a {kind}: storage_capacity" in msg


def test_demand_scale_only_on_stores():
    msg = bad(lambda d: d["nodes"][1].update(demand_scale=2))
    assert msg.startswith("network.nodes[1].demand_scale: only stores face customer demand"), msg
    assert "allowed on a dc: 1 or left out" in msg
    data = copy.deepcopy(base())
    data["nodes"][1]["demand_scale"] = 1
    network_from_dict(data)


@pytest.mark.parametrize(("attr", "value"), [
    ("storage_capacity", 100), ("lane_capacity", 10), ("unmet", "lost"), ("unmet", "backorder"),
    ("lead_time", {"dist": "deterministic", "mean": 2}), ("backup_parent", "sup"), ("holding_factor", 0.5),
    ("backorder_factor", 0), ("lost_sale_factor", 2), ("in_transit_holding", 0.1), ("demand_scale", 1),
])
def test_supplier_has_only_name_kind_supply_capacity_region(attr, value):
    msg = bad(lambda d: d["nodes"][0].update({attr: value}))
    assert msg.startswith(f"network.nodes[0].{attr}: a supplier is a root outside the network"), msg
    assert msg.endswith("allowed on a supplier: name, kind, supply_capacity, region")


def test_supplier_with_its_own_keys_and_nulls():
    def mutate(d):
        d["nodes"][0].update(supply_capacity=40, region="north", lead_time=None, parent=None)
    data = copy.deepcopy(base())
    mutate(data)
    sup = network_from_dict(data).nodes[0]
    assert (sup.supply_capacity, sup.region, sup.holding_factor, sup.backorder_factor) == (40, "north", 0, 0)
    msg = bad(lambda d: d["nodes"][0].update(lead_tme=1))
    assert msg.startswith("network.nodes[0]: unknown key 'lead_tme'; allowed: kind, name, parent, region, "
                          "supply_capacity"), msg


def test_backlog_first_false_with_fcfs():
    msg = bad(lambda d: d.update(rationing="fcfs", backlog_first=False))
    assert msg.startswith("network.backlog_first: false has no effect with rationing fcfs"), msg
    assert "always serves orders by age" in msg and "allowed: true, or rationing proportional or priority" in msg
    for rule in ("proportional", "priority"):
        network_from_dict(copy.deepcopy(base()) | {"rationing": rule, "backlog_first": False})


def spec_nodes(**changes) -> tuple[NodeSpec, ...]:
    """The base network's nodes as dataclasses, with `changes` {index: {field: value}}."""
    nodes = list(network_from_dict(base()).nodes)
    for index, fields in changes.items():
        nodes[int(index)] = dataclasses.replace(nodes[int(index)], **fields)
    return tuple(nodes)


@pytest.mark.parametrize(("changes", "top", "start"), [
    ({"1": {"lead_time": LeadTimeSpec(mean=2, cv=0.5)}}, {}, "network.nodes[1].lead_time.cv: 0.5 has no effect"),
    ({"1": {"lead_time": LeadTimeSpec(dist="gamma", mean=2, cv=0.5, values=(1,), probs=(1.0,))}}, {},
     "network.nodes[1].lead_time.values: only an empirical"),
    ({"2": {"supply_capacity": 9.0}}, {}, "network.nodes[2].supply_capacity: only a supplier"),
    ({"4": {"supply_capacity": 9.0}}, {}, "network.nodes[4].supply_capacity: only a supplier"),
    ({"1": {"demand_scale": 0.5}}, {}, "network.nodes[1].demand_scale: only stores"),
    ({"0": {"storage_capacity": 9.0}}, {}, "network.nodes[0].storage_capacity: a supplier"),
    ({"0": {"lane_capacity": 9.0}}, {}, "network.nodes[0].lane_capacity: a supplier"),
    ({"0": {"unmet": "lost"}}, {}, "network.nodes[0].unmet: a supplier"),
    ({"0": {"lead_time": LeadTimeSpec(mean=3)}}, {}, "network.nodes[0].lead_time: a supplier"),
    ({"0": {"in_transit_holding": 0.2}}, {}, "network.nodes[0].in_transit_holding: a supplier"),
    ({"0": {"holding_factor": 0.5}}, {}, "network.nodes[0].holding_factor: a supplier"),
    ({}, {"rationing": "fcfs", "backlog_first": False}, "network.backlog_first: false has no effect"),
])
def test_dataclass_networks_are_checked_alike(changes, top, start):
    """NetworkSpec built from dataclasses runs the same checks as a mapping."""
    skus = network_from_dict(base()).skus
    with pytest.raises(SpecError) as info:
        NetworkSpec(name="direct", nodes=spec_nodes(**changes), skus=skus, **top)
    assert str(info.value).startswith(start) and "allowed" in str(info.value), str(info.value)


def test_dataclass_supplier_cost_factors_default_or_zero_pass():
    skus = network_from_dict(base()).skus
    for factors in ({}, {"holding_factor": 0.0, "backorder_factor": 0.0, "lost_sale_factor": 0.0}):
        network = NetworkSpec(name="direct", nodes=spec_nodes(**{"0": factors}), skus=skus)
        assert network.nodes[0].kind == "supplier" and network.nodes[0].name == "sup"


def layout(**sections) -> dict:
    """The base network with a generated layout instead of explicit nodes."""
    data = copy.deepcopy(base())
    del data["nodes"]
    data["layout"] = {"suppliers": 1, "dcs": 2, "stores": 4, "regions": ["all", "north"], **sections}
    return data


def layout_error(**sections) -> str:
    with pytest.raises(SpecError) as info:
        network_from_dict(layout(**sections))
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(("sections", "start", "allowed"), [
    ({"dc": {"lead_time": {"dist": "deterministic", "mean": 3, "cv": 0.2}}}, "network.layout.dc.lead_time.cv:",
     "allowed: 0 or left out, or dist gamma or lognormal"),
    ({"store": {"lead_time": {"dist": "poisson", "mean": 1, "values": [1]}}}, "network.layout.store.lead_time.values:",
     "allowed: left out, or dist empirical"),
    ({"dc": {"supply_capacity": 100}}, "network.layout.dc.supply_capacity: only a supplier",
     "allowed on a dc: storage_capacity"),
    ({"store": {"supply_capacity": 100}}, "network.layout.store.supply_capacity: only a supplier",
     "allowed on a store: storage_capacity"),
    ({"dc": {"demand_scale": 2}}, "network.layout.dc.demand_scale: only stores", "allowed on a dc: 1 or left out"),
    ({"dcs": 1, "store": {"backup_dc": True}}, "network.layout.store.backup_dc: true needs a second DC",
     "allowed: false, or dcs >= 2"),
])
def test_layout_rejects_ignored_keys(sections, start, allowed):
    msg = layout_error(**sections)
    assert msg.startswith(start) and allowed in msg, msg


def test_layout_defaults_are_valid():
    net = network_from_dict(layout(dcs=1, store={"backup_dc": False}))
    assert [n.backup_parent for n in net.nodes_of_kind("store")] == [None] * 4
    net = network_from_dict(layout(dcs=1))  # backup_dc left out: one DC, no backups
    assert net.nodes[0].kind == "supplier" and net.nodes[0].holding_factor == 0


# ---------------------------------------------------------------------------
# DC backorder cost default
# ---------------------------------------------------------------------------

def test_explicit_dcs_default_to_no_backorder_cost():
    net = network_from_dict(base())
    assert [n.backorder_factor for n in net.nodes_of_kind("dc")] == [0.0, 0.0]
    assert [n.backorder_factor for n in net.nodes_of_kind("store")] == [1.0, 1.0, 1.0]
    data = copy.deepcopy(base())
    data["nodes"][1]["backorder_factor"] = 0.4
    data["nodes"][3]["backorder_factor"] = 2.5
    net = network_from_dict(data)
    assert (net.nodes[1].backorder_factor, net.nodes[2].backorder_factor, net.nodes[3].backorder_factor) == (
        0.4, 0.0, 2.5)


def test_layout_and_explicit_dcs_agree_on_backorder_cost():
    assert {n.backorder_factor for n in network_from_dict(layout()).nodes_of_kind("dc")} == {0.0}


# ---------------------------------------------------------------------------
# Shocks
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def net():
    return network_from_dict(base())


def shock_error(net, data) -> str:
    with pytest.raises(SpecError) as info:
        shock_from_dict(data, net, "shocks[2]")
    return str(info.value)


def test_valid_shocks_build(net):
    shock = shock_from_dict({"type": "demand", "start": 3, "end": 9, "multiplier": 2.5, "groups": ["food"]},
                            net, "shocks[0]")
    assert shock == DemandShock(start=3, end=9, multiplier=2.5, groups=("food",))
    closure = shock_from_dict({"type": "dc_closure", "start": 0, "end": 5, "dc": "dc_b", "reroute": False}, net,
                              "shocks[1]")
    assert closure == DcClosure(start=0, end=5, dc="dc_b", reroute=False)


@pytest.mark.parametrize(("start", "end"), [(5, 5), (7, 3)])
def test_shock_window_empty_or_reversed(net, start, end):
    msg = shock_error(net, {"type": "demand", "start": start, "end": end})
    assert msg.startswith("shocks[2]:") and f"[{start}, {end})" in msg and "allowed: 0 <= start < end" in msg


def test_shock_window_negative_start(net):
    msg = shock_error(net, {"type": "lead_time", "start": -1, "end": 4})
    assert "shocks[2].start" in msg and "allowed: [0, inf]" in msg


def test_shock_unknown_type_and_unknown_key(net):
    msg = shock_error(net, {"type": "earthquake", "start": 0, "end": 4})
    assert "shocks[2].type" in msg and "allowed: demand, lead_time, supplier_outage, dc_closure, capacity_cut" in msg
    msg = shock_error(net, {"type": "demand", "start": 0, "end": 4, "multipler": 2})
    assert msg.startswith("shocks[2]: unknown key 'multipler'; allowed: ")


@pytest.mark.parametrize(("data", "key", "allowed"), [
    ({"type": "supplier_outage", "start": 0, "end": 4, "supplier": "dc_a"}, "shocks[2].supplier", "allowed: sup"),
    ({"type": "dc_closure", "start": 0, "end": 4, "dc": "s1", "reroute": False}, "shocks[2].dc",
     "allowed: dc_a, dc_b"),
    ({"type": "capacity_cut", "start": 0, "end": 4, "node": "nowhere"}, "shocks[2].node", "allowed: sup, dc_a"),
    ({"type": "lead_time", "start": 0, "end": 4, "sources": ["s2"]}, "shocks[2].sources", "allowed: sup, dc_a, dc_b"),
    ({"type": "demand", "start": 0, "end": 4, "groups": ["tools"]}, "shocks[2].groups", "allowed: food, toys"),
    ({"type": "demand", "start": 0, "end": 4, "regions": ["mars"]}, "shocks[2].regions", "allowed: all, north"),
    ({"type": "demand", "start": 0, "end": 4, "multiplier": -1}, "shocks[2].multiplier", "allowed: [0, 100]"),
    ({"type": "lead_time", "start": 0, "end": 4, "multiplier": 60}, "shocks[2].multiplier", "allowed: [0, 50]"),
    ({"type": "capacity_cut", "start": 0, "end": 4, "node": "s1", "factor": 1.5}, "shocks[2].factor",
     "allowed: [0, 1]"),
    ({"type": "capacity_cut", "start": 0, "end": 4, "node": "s1", "factor": 0.5}, "shocks[2].node",
     "has no capacity to cut; allowed: a supplier with a supply_capacity, or a dc or store with a storage_capacity "
     "or lane_capacity (none in this network)"),
])
def test_shock_targets_and_values(net, data, key, allowed):
    msg = shock_error(net, data)
    assert msg.startswith(key), msg
    assert allowed in msg, msg


def capped_network() -> object:
    """The base network with a capped supplier, a DC with storage and a store with a lane capacity."""
    data = copy.deepcopy(base())
    data["nodes"].insert(1, {"name": "sup_free", "kind": "supplier"})
    data["nodes"][0]["supply_capacity"] = 100
    data["nodes"][2]["storage_capacity"] = 500
    data["nodes"][5]["lane_capacity"] = 20
    return network_from_dict(data)


@pytest.mark.parametrize("node", ["sup", "dc_a", "s2"])
def test_capacity_cut_on_a_capacity_of_that_kind(node):
    cut = shock_from_dict({"type": "capacity_cut", "start": 0, "end": 4, "node": node}, capped_network(), "shocks[0]")
    assert cut == CapacityCut(start=0, end=4, node=node, factor=0.5)


@pytest.mark.parametrize("node", ["sup_free", "dc_b", "s1", "s3"])
def test_capacity_cut_needs_a_capacity_of_that_kind(node):
    msg = shock_error(capped_network(), {"type": "capacity_cut", "start": 0, "end": 4, "node": node})
    assert msg == (f"shocks[2].node: {node!r} has no capacity to cut; allowed: a supplier with a supply_capacity, or "
                   f"a dc or store with a storage_capacity or lane_capacity (sup, dc_a, s2)")


def test_dc_closure_reroute_needs_backups(net):
    msg = shock_error(net, {"type": "dc_closure", "start": 0, "end": 4, "dc": "dc_a"})
    assert "shocks[2].reroute" in msg and "'s2' has no backup_parent" in msg and "allowed:" in msg
    assert shock_from_dict({"type": "dc_closure", "start": 0, "end": 4, "dc": "dc_a", "reroute": False}, net,
                           "shocks[2]") == DcClosure(start=0, end=4, dc="dc_a", reroute=False)


@pytest.mark.parametrize("shock", [
    DemandShock(start=4, end=2),
    LeadTimeShock(start=0, end=3, sources=("s1",)),
    SupplierOutage(start=0, end=3, supplier="nobody"),
    DcClosure(start=0, end=3, dc="dc_a", reroute=True),
    CapacityCut(start=0, end=3, node="s1", factor=-0.5),
])
def test_shock_validate_is_called_by_the_engine(net, shock):
    with pytest.raises(SpecError) as info:
        shock.validate(net, "shocks[0]")
    assert str(info.value).startswith("shocks[0]")
    with pytest.raises(SpecError, match=r"^shocks\[1\]"):
        Engine(net, horizon=10, seed=0, shocks=[DemandShock(start=0, end=2, multiplier=2), shock])


# ---------------------------------------------------------------------------
# Engine arguments and orders
# ---------------------------------------------------------------------------

def test_engine_arguments(net):
    with pytest.raises(ValueError, match="horizon.*allowed"):
        Engine(net, horizon=0, seed=0)
    with pytest.raises(ValueError, match="warmup.*allowed"):
        Engine(net, horizon=10, seed=0, warmup=10)
    with pytest.raises(ValueError, match="seed.*allowed"):
        Engine(net, horizon=10, seed=-1)
    with pytest.raises(ValueError, match="invariants.*allowed: off, warn, error"):
        Engine(net, horizon=10, seed=0, invariants="strict")


@pytest.mark.parametrize("orders", [np.zeros((6, 3)), np.zeros((5, 2)), np.zeros(6), np.zeros((2, 6))])
def test_orders_of_wrong_shape(net, orders):
    engine = Engine(net, horizon=5, seed=0, invariants="error")
    with pytest.raises(ValueError) as info:
        engine.step(orders)
    msg = str(info.value)
    assert msg.startswith("orders") and "allowed: (nodes, SKUs) = (6, 2)" in msg
    assert engine.day == 0, "a rejected order must not advance the clock"


@pytest.mark.parametrize("value", [-1.0, np.nan, np.inf])
def test_orders_negative_or_not_finite(net, value):
    engine = Engine(net, horizon=5, seed=0, invariants="error")
    orders = np.zeros((6, 2))
    orders[4, 1] = value
    with pytest.raises(ValueError) as info:
        engine.step(orders)
    msg = str(info.value)
    assert msg.startswith("orders['s2', SKU 1]") and "allowed: a finite quantity >= 0" in msg
    assert engine.day == 0 and not engine.on_order.any()


def test_orders_from_a_supplier(net):
    engine = Engine(net, horizon=5, seed=0, invariants="error")
    orders = np.zeros((6, 2))
    orders[0, 0] = 3
    with pytest.raises(ValueError, match="^orders: suppliers hold and order nothing"):
        engine.step(orders)


def test_stepping_past_the_end(net):
    engine = Engine(net, horizon=2, seed=0, invariants="error")
    engine.step(np.zeros((6, 2)))
    engine.step(np.zeros((6, 2)))
    assert engine.done
    with pytest.raises(RuntimeError, match="the run is over"):
        engine.step(np.zeros((6, 2)))


def test_lost_sale_factor_belongs_to_stores():
    data = base()
    dc = next(n for n in data["nodes"] if n["kind"] == "dc")
    dc["lost_sale_factor"] = 3.0
    with pytest.raises(SpecError, match=r"lost_sale_factor: only a store loses sales.*allowed on a dc: left out"):
        network_from_dict(data)


@pytest.mark.parametrize(("attr", "law"), [("cv", "normal"), ("dispersion", "negative_binomial"),
                                           ("zero_prob", "zero_inflated_poisson")])
def test_a_demand_parameter_of_another_law_is_an_error(attr, law):
    msg = bad(lambda d: d["skus"]["items"][0].update({"dist": "poisson", attr: 0.5}))
    assert msg.startswith(f"network.skus.items[0].{attr}: only the {law} demand law uses {attr}"), msg
    assert "allowed: left out" in msg
    msg = generated_error({"slow": {"dist": "poisson", attr: 0.5}})
    assert msg.startswith(f"network.skus.profiles.slow.{attr}: only the {law}"), msg
