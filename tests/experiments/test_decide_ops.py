"""The decisions ops asked for (issue 11): orders capped by an item's capacity (CAPPED_BY_CAPACITY) and a learned
bundle's rule fallback (FALLBACK_POLICY_USED), asked for by a request or taken for a row whose observation or scores
are not finite.

The learned bundle here is built by hand, without training: linear ONNX heads (random weights) over the real
ObsSpec and action map of the small network, written as `experiments.export checkpoint=...` writes a bundle, with
the rule fallback `write_fallback` writes (what the real export of a checkpoint adds: tests/experiments/
test_export_rl.py). The rule bundle is `experiments.export policy=base_stock`'s, written in process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from agents.deploy.bundle import FALLBACK_FILE, PARAMETERS_FILE, PROFILE_FILE, BundleError, finish_bundle, load_bundle
from agents.deploy.client import ServiceClient
from agents.deploy.conversion import ErpStateError
from agents.deploy.decide import decide, decisions_csv, request_sha256
from agents.deploy.erp_state import ErpState, erp_state_schema
from agents.deploy.testing import twin_day
from agents.envs.core import EnvConfig, SupplyChainSim
from agents.envs.observation import ItemProfile
from experiments.export import FALLBACK_POLICY, _base_manifest, _roles, export_rule, write_fallback
from twin.spec import network_from_dict

ROOT = Path(__file__).resolve().parents[2]
SMALL = yaml.safe_load((ROOT / "conf" / "network" / "small.yaml").read_text())


def linear_head(path: Path, weights: np.ndarray) -> None:
    """An ONNX head: scores = obs @ weights, a free batch axis (what agents.rl.export writes, per SKU)."""
    n_features, n_actions = weights.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "w"], ["scores"])], "linear",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_actions])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def learned_bundle(out: Path, *, fallback: bool = True) -> Path:
    """A learned bundle for the small network (per-SKU heads for dc and store), with or without its fallback."""
    out.mkdir(parents=True)
    network = network_from_dict(SMALL)
    (out / "network.json").write_text(json.dumps(SMALL, indent=1, default=float) + "\n")
    env = EnvConfig(network=network, granularity="node_sku")
    p = SupplyChainSim(env).profile
    np.savez(out / PROFILE_FILE, scale=p.scale, demand_cv=p.demand_cv, critical_ratio=p.critical_ratio,
             nominal_lead_time=p.nominal_lead_time)
    spec, action = env.obs_spec, env.action
    rng = np.random.default_rng(7)
    heads = []
    for pid in ("dc", "store"):
        weights = rng.normal(size=(spec.n_features, action.n)).astype(np.float32)
        linear_head(out / f"{pid}.onnx", weights)
        obs = rng.normal(size=(50, spec.n_features)).astype(np.float32)
        np.savez(out / f"{pid}.samples.npz", obs=obs, scores=obs @ weights)
        heads.append({"policy_id": pid, "file": f"{pid}.onnx", "samples_file": f"{pid}.samples.npz",
                      "layout": "per_sku", "n_features": spec.n_features, "n_actions": action.n,
                      "score_kind": "logits", "max_abs_score_diff": 0.0, "samples": len(obs)})
    roles = _roles(network)
    manifest = {**_base_manifest("linear", "rl", network, {}), "scale_free": True, "roles": roles,
                "policy_of_role": {role: role for role in set(roles.values())},
                "obs_spec": {"version": spec.version, "pipeline_ages": spec.pipeline_ages,
                             "feature_names": list(spec.feature_names)},
                "action": {"kind": action.kind, "grid": list(action.grid)}, "heads": heads, "forecaster": "oracle"}
    if fallback:
        manifest["fallback"] = write_fallback(out, network)
    finish_bundle(out, manifest)
    return out


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ops")
    export_rule(yaml.safe_load(FALLBACK_POLICY.read_text()), {}, SMALL, 365, 0, root / "rule", {})
    return {"rule": root / "rule", "learned": learned_bundle(root / "learned"),
            "old": learned_bundle(root / "old", fallback=False)}


@pytest.fixture(scope="module")
def rule(dirs):
    return load_bundle(dirs["rule"])


@pytest.fixture(scope="module")
def learned(dirs):
    return load_bundle(dirs["learned"])


@pytest.fixture(scope="module")
def state(rule) -> ErpState:
    """Day 30 of the small network under the base-stock rule, with the oracle's forecasts."""
    return twin_day(rule, 30, seed=4).state


def with_items(state: ErpState, **fields) -> ErpState:
    """`state` with `fields` set on every item."""
    data = state.model_dump(mode="json")
    for location in data["locations"]:
        for item in location["items"]:
            item.update(fields)
    return ErpState.model_validate(data)


def by_row(response) -> dict[tuple[str, str], object]:
    return {(d.location, d.sku): d for d in response.decisions}


def codes(decision) -> list[str]:
    return [r.code for r in decision.reasons]


# ------------------------------------------------------------------ CAPPED_BY_CAPACITY


def test_without_the_capacity_fields_nothing_changes_not_even_the_request_hash(rule, state):
    text = state.model_dump_json()
    assert ',"max_order_quantity":null,"storage_capacity":null' in text and ',"policy":"bundle"' in text
    before = text.replace(',"max_order_quantity":null,"storage_capacity":null', "").replace(',"policy":"bundle"', "")
    assert request_sha256(state) == hashlib.sha256(before.encode()).hexdigest()  # the hash of erp.state/1 before
    big = with_items(state, max_order_quantity=1e9, storage_capacity=1e9)
    assert request_sha256(big) != request_sha256(state)  # given, they count
    plain, roomy = decide(rule, state), decide(rule, big)
    assert any(d.order_quantity > 0 for d in plain.decisions)
    for a, b in zip(plain.decisions, roomy.decisions):
        assert (a.order_quantity, a.reasons) == (b.order_quantity, b.reasons)
        assert "CAPPED_BY_CAPACITY" not in codes(a)


def test_an_order_is_capped_by_max_order_quantity(rule, state):
    plain = by_row(decide(rule, state))
    capped = by_row(decide(rule, with_items(state, max_order_quantity=7)))
    cut = 0
    for row, d in capped.items():
        wanted = plain[row].order_quantity
        assert d.order_quantity == min(wanted, 7)
        assert (d.order_up_to_level, d.inventory_position, d.policy_quantity) == (
            plain[row].order_up_to_level, plain[row].inventory_position, plain[row].policy_quantity)
        if wanted > 7:
            cut += 1
            reason = next(r for r in d.reasons if r.code == "CAPPED_BY_CAPACITY")
            assert reason.values["capacity"] == "max_order_quantity" and reason.values["cap"] == 7
            assert reason.values["wanted"] == wanted and reason.values["order_quantity"] == 7
            assert reason.values["short_of_level"] == pytest.approx(d.order_up_to_level - d.inventory_position - 7)
            assert "max_order_quantity 7" in reason.message and f"{wanted:g} wanted" in reason.message
            assert d.document.quantity == 7
        else:
            assert "CAPPED_BY_CAPACITY" not in codes(d)
    assert cut >= 3


def test_an_order_is_capped_by_the_room_left_in_storage_never_below_zero(rule, state):
    plain = by_row(decide(rule, state))
    (location, sku), d = next((row, d) for row, d in plain.items() if d.order_quantity > 10)
    data = state.model_dump(mode="json")
    li = next(n for n, loc in enumerate(data["locations"]) if loc["id"] == location)
    ii = next(n for n, item in enumerate(data["locations"][li]["items"]) if item["sku"] == sku)
    for capacity, ordered in ((d.inventory_position + 10, 10.0), (d.inventory_position + 10.6, 10.0),
                              (max(d.inventory_position - 5, 0), 0.0)):
        data["locations"][li]["items"][ii]["storage_capacity"] = capacity
        got = by_row(decide(rule, ErpState.model_validate(data)))[location, sku]
        assert got.order_quantity == ordered  # whole units in this network: 10.6 units of room order 10
        reason = next(r for r in got.reasons if r.code == "CAPPED_BY_CAPACITY")
        assert reason.values["capacity"] == "storage_capacity" and reason.values["storage_capacity"] == capacity
        assert reason.values["storage_room"] == pytest.approx(max(capacity - d.inventory_position, 0))
        assert (got.document is None) == (ordered == 0)
    assert "no room" in reason.message


def test_a_capped_order_is_rounded_down_to_whole_packs_and_zero_when_the_moq_does_not_fit(rule, state):
    plain = by_row(decide(rule, state))
    packs = by_row(decide(rule, with_items(state, pack_size=4, max_order_quantity=10)))
    for row, d in packs.items():
        up = -(-plain[row].order_quantity // 4) * 4  # rounded up to packs of 4 when not capped
        assert d.order_quantity == (8 if up > 10 else up)  # 10 holds 2 whole packs
        if up > 10:
            reason = next(r for r in d.reasons if r.code == "CAPPED_BY_CAPACITY")
            assert reason.values["packs"] == 2 and reason.values["pack_size"] == 4
            assert "2 packs of 4" in reason.message
    moq = by_row(decide(rule, with_items(state, min_order_quantity=12, max_order_quantity=10)))
    for row, d in moq.items():
        assert d.order_quantity == 0 and d.document is None
        if plain[row].order_quantity > 0:  # every order would be at least 12, above the cap: none fits
            reason = next(r for r in d.reasons if r.code == "CAPPED_BY_CAPACITY")
            assert reason.values["min_order_quantity"] == 12 and reason.values["order_quantity"] == 0
            assert "below the minimum order quantity 12" in reason.message
    both = by_row(decide(rule, with_items(state, max_order_quantity=9, storage_capacity=1e6)))
    assert {r.values["capacity"] for d in both.values() for r in d.reasons if r.code == "CAPPED_BY_CAPACITY"} == {
        "max_order_quantity"}


def test_the_capacity_fields_are_in_the_schema_and_request_only(state):
    item = erp_state_schema()["$defs"]["Item"]["properties"]
    for name in ("max_order_quantity", "storage_capacity"):
        text = json.dumps(item[name])
        assert "Request-only" in item[name]["description"] and '"minimum": 0' in text and "1000000000000" in text
    assert "fallback" in erp_state_schema()["properties"]["policy"]["description"]
    with pytest.raises(ValueError, match="max_order_quantity"):
        with_items(state, max_order_quantity=-1)
    with pytest.raises(ValueError, match="storage_capacity"):
        with_items(state, storage_capacity=True)


def test_capped_decisions_go_to_csv(rule, state):
    text = decisions_csv(decide(rule, with_items(state, max_order_quantity=1)))
    assert "CAPPED_BY_CAPACITY" in text


# ------------------------------------------------------------------ the rule fallback of a learned bundle


def test_a_learned_bundle_carries_its_fallback_hashed_as_a_rule_bundle_writes_it(dirs, learned, rule):
    manifest = json.loads((dirs["learned"] / "manifest.json").read_text())
    assert manifest["fallback"]["rule"] == "base_stock" and manifest["fallback"]["file"] == FALLBACK_FILE
    digest = hashlib.sha256((dirs["learned"] / FALLBACK_FILE).read_bytes()).hexdigest()
    assert manifest["files"][FALLBACK_FILE] == digest
    with np.load(dirs["learned"] / FALLBACK_FILE) as a, np.load(dirs["rule"] / PARAMETERS_FILE) as b:
        assert set(a) == set(b) == {"levels"} and np.array_equal(a["levels"], b["levels"])
    assert learned.fallback is not None and learned.fallback.rule == "base_stock"
    old = load_bundle(dirs["old"])  # exported before fallbacks: loads, without one
    assert old.fallback is None and old.manifest.fallback is None


def test_a_changed_fallback_file_is_refused(dirs, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(dirs["learned"], copy)
    np.savez(copy / FALLBACK_FILE, levels=np.zeros((4, 3)))
    with pytest.raises(BundleError, match=f"{FALLBACK_FILE}: its sha256 is not the one"):
        load_bundle(copy)


def test_the_fallback_asked_for_decides_as_the_rule_bundle(learned, rule, state):
    own = decide(learned, state)
    assert all(d.confidence is not None and "FALLBACK_POLICY_USED" not in codes(d) for d in own.decisions)
    asked = state.model_copy(update={"policy": "fallback"})
    served, expected = decide(learned, asked), decide(rule, state)
    assert len(served.decisions) == len(expected.decisions) == 9
    for d, r in zip(served.decisions, expected.decisions):
        assert (d.location, d.sku, d.order_quantity, d.policy_quantity, d.order_up_to_level, d.inventory_position) \
            == (r.location, r.sku, r.order_quantity, r.policy_quantity, r.order_up_to_level, r.inventory_position)
        assert d.confidence is None and d.reasons[1:] == r.reasons
        first = d.reasons[0]
        assert first.code == "FALLBACK_POLICY_USED" and first.values["cause"] == "asked"
        assert first.values["fallback"] == "base_stock" and first.values["order_up_to_level"] == r.order_up_to_level
        assert "asked for" in first.message
    assert any(d.order_quantity != o.order_quantity for d, o in zip(served.decisions, own.decisions))
    # another request: other ids; the same request again: the same ids
    assert not {d.recommendation_id for d in served.decisions} & {d.recommendation_id for d in own.decisions}
    assert decide(learned, ErpState.model_validate_json(asked.model_dump_json())) == served
    assert "FALLBACK_POLICY_USED" in decisions_csv(served)


def test_a_bundle_without_a_fallback_refuses_a_request_for_it_naming_policy(dirs, rule, state):
    asked = state.model_copy(update={"policy": "fallback"})
    for bundle in (load_bundle(dirs["old"]), rule):
        with pytest.raises(ErpStateError, match=r"^policy: bundle .* has no rule fallback") as caught:
            decide(bundle, asked)
        assert caught.value.loc == ("policy",)


def test_non_finite_scores_fall_back_for_that_row_only(learned, rule, state, monkeypatch):
    own = by_row(decide(learned, state))
    head = next(h for h in learned.policy.heads if h.policy_id == "store")
    real = head.onnx.scores

    def one_nan(obs):
        scores = real(obs)
        scores[1, 2] = np.nan  # the second row: the first store's second SKU
        return scores

    monkeypatch.setattr(head.onnx, "scores", one_nan)
    served = by_row(decide(learned, state))
    base = by_row(decide(rule, state))
    fell = [row for row, d in served.items() if "FALLBACK_POLICY_USED" in codes(d)]
    assert fell == [("store_0", "milk")]
    d = served["store_0", "milk"]
    assert (d.order_quantity, d.order_up_to_level, d.confidence) == (base["store_0", "milk"].order_quantity,
                                                                     base["store_0", "milk"].order_up_to_level, None)
    reason = d.reasons[0]
    assert reason.code == "FALLBACK_POLICY_USED" and reason.values["cause"] == "not_finite"
    assert reason.values["not_finite"] == "score of action 2" and reason.values["value"] == "nan"
    assert "score of action 2=nan is not finite" in reason.message
    for row, other in served.items():
        if row != ("store_0", "milk"):
            assert other == own[row]


def test_a_non_finite_observation_feature_falls_back_naming_it(learned, rule, state, monkeypatch):
    p = learned.policy.profile
    cv = p.demand_cv.copy()
    i, k = learned.network.index("store_1"), learned.network.skus.name.index("rice")
    cv[i, k] = np.nan
    monkeypatch.setattr(learned.policy, "profile", ItemProfile(scale=p.scale, demand_cv=cv,
                                                               critical_ratio=p.critical_ratio,
                                                               nominal_lead_time=p.nominal_lead_time))
    served = by_row(decide(learned, state))
    fell = {row: d for row, d in served.items() if "FALLBACK_POLICY_USED" in codes(d)}
    assert list(fell) == [("store_1", "rice")]
    reason = fell["store_1", "rice"].reasons[0]
    assert reason.values["not_finite"] == "observation feature demand_cv" and reason.values["value"] == "nan"
    assert "observation feature demand_cv=nan" in reason.message
    assert fell["store_1", "rice"].order_quantity == by_row(decide(rule, state))["store_1", "rice"].order_quantity


def test_the_service_refuses_a_fallback_request_to_a_bundle_without_one_naming_policy(dirs, state, clients,
                                                                                       server_class, tmp_path):
    """Over real HTTP: 422 naming `policy` where the bundle has no fallback (an older learned bundle, which still
    serves); the fallback asked of one that has it, over a reload, is the in-process decision."""
    server = server_class(tmp_path / "server", dirs["old"], clients)
    try:
        body = state.model_copy(update={"policy": "fallback"}).model_dump_json()
        answer = server.decide(body)
        assert answer.status_code == 422, answer.text
        assert [p["loc"] for p in answer.json()["detail"]] == ["policy"]
        assert server.decide(state.model_dump_json()).status_code == 200
    finally:
        server.stop()
    client = None
    server = server_class(tmp_path / "server2", dirs["learned"], clients)
    try:
        client = ServiceClient(server.url, "erp", clients[1]["erp"])
        asked = state.model_copy(update={"policy": "fallback"})
        assert client.decide(asked).model_dump(mode="json") == decide(load_bundle(dirs["learned"]),
                                                                       asked).model_dump(mode="json")
    finally:
        if client is not None:
            client.close()
        server.stop()
