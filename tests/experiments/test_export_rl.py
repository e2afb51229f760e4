"""Learned bundles: a PPO checkpoint exported as ONNX heads decides, from an ERP state, as the checkpoint does in the
twin; retargeted to a bigger network of the same roles; refused when built for another ObsSpec version or when its
heads no longer reproduce their own samples. (The ONNX parity on 10,000 observations per algorithm is tested in
test_onnx_export.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agents.baselines.policies import BaseStock
from agents.deploy.audit import AuditLog
from agents.deploy.bundle import BundleError, load_bundle
from agents.deploy.conversion import ErpStateError
from agents.deploy.decide import decide
from agents.deploy.erp_state import ErpState
from agents.deploy.reload import BundleSlot, Served
from agents.deploy.testing import twin_day
from twin.engine import Engine
from twin.stats import DemandStats

ROOT = Path(__file__).resolve().parents[2]
TINY = ["agent=ppo", "env.granularity=node_sku", "network=small", "env.episode_days=30", "evaluation.seeds=1",
        "evaluation.horizon=30", "evaluation.warmup=5", "trainer.num_envs_per_env_runner=1",
        "agent.train_batch_size=200", "agent.minibatch_size=100", "agent.num_epochs=1", "agent.hidden=[8]",
        "stop.iterations=1", "checkpoint_every=1"]
KPI = ["kpi.seeds=2", "kpi.horizon=40", "kpi.warmup=5", "samples=500"]

pytestmark = pytest.mark.slow


def run(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ppo")
    done = run("experiments.train", *TINY, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir / "checkpoints" / "latest"


@pytest.fixture(scope="module")
def bundle_dir(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    done = run("experiments.export", f"checkpoint={checkpoint}", *KPI, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "bundle"


def test_a_learned_bundle_decides_as_its_checkpoint(checkpoint, bundle_dir):
    from agents.rl.policy import TrainedPolicy

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["kind"] == "rl" and {h["policy_id"] for h in manifest["heads"]} == {"dc", "store"}
    assert manifest["kpis"]["bundle"] == manifest["kpis"]["source"]  # twin runs on the same seeds at export
    assert manifest["forecaster"] == "oracle" and manifest["action"]["kind"] == "order_up_to"
    assert manifest["scale_free"] and set(manifest["roles"].values()) == {"dc", "store"}
    bundle = load_bundle(bundle_dir)
    bundle.self_check()
    day = twin_day(bundle, 25, seed=5, policy=TrainedPolicy.from_checkpoint(checkpoint))
    response = decide(bundle, day.state)
    net = bundle.network
    expected = np.rint(day.orders)  # the checkpoint's orders, in the whole units the twin takes
    for d in response.decisions:
        assert d.policy_quantity == expected[net.index(d.location), net.skus.name.index(d.sku)]
        assert 0 < d.confidence <= 1
    # the oracle exists only in the twin: a request without the forecast is refused, naming the field
    data = day.state.model_dump(mode="json")
    data["locations"][2]["items"][0]["forecast"] = None
    with pytest.raises(ErpStateError, match=r"locations\[2\]\.items\[0\]\.forecast: required.*oracle"):
        decide(bundle, ErpState.model_validate(data))


def test_a_profile_anchored_policy_is_served_with_its_static_levels(tmp_path):
    """env.action.kind=profile_safety_factor: the bundle carries the profile's lead-time variance, decides as the
    checkpoint does, and every level it serves is the long-run profile's mean + a grid value x its spread (not the
    forecast's); a profile without that array is refused, naming it."""
    from agents.rl.policy import TrainedPolicy

    done = run("experiments.train", *TINY, "env.action.kind=profile_safety_factor", f"hydra.run.dir={tmp_path / 't'}")
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = tmp_path / "t" / "checkpoints" / "latest"
    done = run("experiments.export", f"checkpoint={checkpoint}", *KPI, f"hydra.run.dir={tmp_path / 'e'}")
    assert done.returncode == 0, done.stderr[-3000:]
    bundle_dir = tmp_path / "e" / "bundle"
    bundle = load_bundle(bundle_dir)
    bundle.self_check()
    assert bundle.manifest.action.kind == "profile_safety_factor"
    assert bundle.manifest.kpis["bundle"] == bundle.manifest.kpis["source"]
    day = twin_day(bundle, 25, seed=5, policy=TrainedPolicy.from_checkpoint(checkpoint))
    response = decide(bundle, day.state)
    net = bundle.network
    anchor = bundle.policy.profile_anchor
    grid = np.asarray(bundle.manifest.action.grid)
    static = DemandStats.of(net, 30, seed=0)  # the env's episode_days (TINY): the static base-stock's levels
    decided = ~static.topology.is_supplier
    for z in (0.0, 1.0):
        np.testing.assert_allclose((anchor.mean + z * anchor.spread)[decided],
                                   BaseStock.from_stats(static, {"store": z, "dc": z}).levels[decided], rtol=1e-12)
    for d in response.decisions:
        i, k = net.index(d.location), net.skus.name.index(d.sku)
        assert d.policy_quantity == np.rint(day.orders)[i, k]
        assert d.order_up_to_level is not None
        assert np.isclose(anchor.mean[i, k] + grid * anchor.spread[i, k], d.order_up_to_level).any()
    # the request's forecast moves the observation, never the levels an action stands for
    data = day.state.model_dump(mode="json")
    for location in data["locations"]:
        for item in location["items"]:
            item["forecast"]["mean"] = [3 * v for v in item["forecast"]["mean"]]
    for d in decide(bundle, ErpState.model_validate(data)).decisions:
        i, k = net.index(d.location), net.skus.name.index(d.sku)
        assert np.isclose(anchor.mean[i, k] + grid * anchor.spread[i, k], d.order_up_to_level).any()
    copy = tmp_path / "old"
    shutil.copytree(bundle_dir, copy)
    with np.load(copy / "profile.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "lead_time_variance"}
    np.savez(copy / "profile.npz", **arrays)
    _rewrite_manifest(copy, lambda m: None)
    with pytest.raises(BundleError, match="profile.npz: no array 'lead_time_variance'"):
        load_bundle(copy)


def test_a_learned_bundle_carries_the_base_stock_rule_of_its_network_as_its_fallback(bundle_dir, tmp_path):
    """The fallback is what `experiments.export policy=base_stock` writes for the network (same parameters), and
    a request asking for it gets that rule bundle's decisions."""
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["fallback"]["rule"] == "base_stock" and "fallback/parameters.npz" in manifest["files"]
    done = run("experiments.export", "policy=base_stock", "network=small", *KPI, f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(bundle_dir / "fallback" / "parameters.npz") as a, np.load(tmp_path / "bundle" / "parameters.npz") as b:
        assert np.array_equal(a["levels"], b["levels"])
    learned, rule = load_bundle(bundle_dir), load_bundle(tmp_path / "bundle")
    state = twin_day(learned, 20, seed=3).state
    asked = decide(learned, state.model_copy(update={"policy": "fallback"}))
    for d, r in zip(asked.decisions, decide(rule, state).decisions, strict=True):
        assert (d.order_quantity, d.order_up_to_level, d.reasons[1:]) == (r.order_quantity, r.order_up_to_level,
                                                                          r.reasons)
        assert d.reasons[0].code == "FALLBACK_POLICY_USED"


def test_a_per_sku_policy_retargets_to_a_bigger_network_of_the_same_roles(checkpoint, tmp_path):
    done = run("experiments.export", f"checkpoint={checkpoint}", "retarget=true", "network=small",
               "network.layout.stores=5", *KPI, f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    bundle = load_bundle(tmp_path / "bundle")
    assert "store_4" in bundle.manifest.nodes and bundle.manifest.trained_network.startswith("small (")
    assert bundle.manifest.kpis["bundle"] == bundle.manifest.kpis["source"]
    policy = bundle.twin_policy()
    engine = Engine(bundle.network, horizon=30, seed=1)
    policy.attach(engine)
    result = engine.run(policy)
    assert result.kpis["network"]["fill_rate"] > 0


def _rewrite_manifest(directory: Path, change) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    change(manifest)
    manifest["files"] = {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
                         for name in manifest["files"]}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_bundle_for_another_obs_spec_version_is_refused(bundle_dir, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    _rewrite_manifest(copy, lambda m: m["obs_spec"].update(version=2))
    with pytest.raises(BundleError, match="obs_spec.version: 2 is not allowed; allowed: 1"):
        load_bundle(copy)


def test_the_self_check_refuses_heads_that_no_longer_reproduce_their_samples(bundle_dir, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    with np.load(copy / "store.samples.npz") as data:
        obs, scores = data["obs"], data["scores"]
    np.savez(copy / "store.samples.npz", obs=obs, scores=scores + 0.01)  # as if another model made them
    _rewrite_manifest(copy, lambda m: None)
    bundle = load_bundle(copy)  # every hash matches its file ...
    with pytest.raises(BundleError, match="store.onnx: on its .* sample observations"):
        bundle.self_check()  # ... but the heads do not decide as the checkpoint did


def test_an_upload_whose_heads_fail_their_samples_is_refused_and_leaves_nothing(bundle_dir, tmp_path):
    """The service's upload (BundleSlot.upload, PUT /v1/admin/bundle) replays the samples before it swaps: a
    refused upload keeps the old bundle serving, publishes nothing and leaves nothing in bundles_dir."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    with np.load(copy / "store.samples.npz") as data:
        obs, scores = data["obs"], data["scores"]
    np.savez(copy / "store.samples.npz", obs=obs, scores=scores + 0.01)
    _rewrite_manifest(copy, lambda m: None)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file in sorted(p for p in copy.rglob("*") if p.is_file()):
            z.write(file, f"bundle/{file.relative_to(copy).as_posix()}")
    bundles_dir = tmp_path / "bundles"
    bundles_dir.mkdir()
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    try:
        slot = BundleSlot(Served(load_bundle(bundle_dir), str(bundle_dir)), audit)
        with pytest.raises(BundleError, match="store.onnx: on its .* sample observations"):
            slot.upload(archive, hashlib.sha256(archive.read_bytes()).hexdigest(), bundles_dir, "ops")
        assert slot.current.path == str(bundle_dir) and audit.active() is None
        assert list(bundles_dir.iterdir()) == []
        good = bundle_dir.parent / "bundle.zip"
        new, _ = slot.upload(good, hashlib.sha256(good.read_bytes()).hexdigest(), bundles_dir, "ops")
        assert new.bundle.sha256 == slot.current.bundle.sha256 == audit.active().sha256
        assert Path(new.path).parent == bundles_dir
    finally:
        audit.close()


SERVE_PYTHON = ROOT / ".venv-serve" / "bin" / "python"


def test_the_serving_install_alone_decides_from_a_learned_bundle(bundle_dir, tmp_path):
    """`pip install .[serve]` (the Makefile's .venv-serve): no torch, no ray, and the same decisions."""
    assert SERVE_PYTHON.exists(), "make install builds .venv-serve (pip install -e .[serve]); run it first"
    probe = subprocess.run([str(SERVE_PYTHON), "-c", "import importlib.util as u; print([m for m in ('torch', "
                            "'ray', 'statsforecast', 'sklearn', 'matplotlib') if u.find_spec(m)])"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr
    bundle = load_bundle(bundle_dir)
    state = twin_day(bundle, 10, seed=2).state
    (tmp_path / "state.json").write_text(state.model_dump_json())
    done = subprocess.run([str(SERVE_PYTHON), "-m", "experiments.decide", f"bundle={bundle_dir}",
                           f"state={tmp_path / 'state.json'}", f"hydra.run.dir={tmp_path / 'out'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads((tmp_path / "out" / "state.decisions.json").read_text())
    assert written == decide(bundle, state).model_dump(mode="json")


def test_a_manifest_pointing_outside_its_hashed_files_is_refused(bundle_dir, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    shutil.copy(copy / "store.onnx", tmp_path / "outside.onnx")
    _rewrite_manifest(copy, lambda m: m["heads"][0].update(file="../outside.onnx"))
    with pytest.raises(BundleError, match=r"heads\[0\]\.file: '\.\./outside\.onnx' is not one of the bundle's files"):
        load_bundle(copy)


def test_the_service_serves_a_learned_bundle_as_decided_in_process(bundle_dir, clients, server_class, tmp_path):
    """A learned (ONNX) bundle over real HTTP: the service's answer is the in-process decision."""
    from agents.deploy.client import ServiceClient

    bundle = load_bundle(bundle_dir)
    state = twin_day(bundle, 12, seed=4).state
    server = server_class(tmp_path / "server", bundle_dir, clients)
    client = ServiceClient(server.url, "erp", clients[1]["erp"])
    try:
        served = client.decide(state)
        assert client.model()["manifest"]["kind"] == "rl"
    finally:
        client.close()
        server.stop()
    assert served.model_dump(mode="json") == decide(bundle, state).model_dump(mode="json")
    assert all(d.confidence is not None for d in served.decisions)


def test_a_sku_shared_policy_retargets_to_another_number_of_skus(tmp_path):
    """One agent per node (the SKU-shared module): its head reads any number of SKUs, so it serves a network
    with other SKUs, with the checkpoint's KPIs there."""
    args = [a if a != "env.granularity=node_sku" else "env.granularity=node" for a in TINY]
    done = run("experiments.train", *args, f"hydra.run.dir={tmp_path / 'train'}")
    assert done.returncode == 0, done.stderr[-3000:]
    one_sku = ("network.skus.items=[{name: rice, group: staples, dist: poisson, mean: 20, holding_cost: 0.01, "
               "backorder_cost: 0.5, fixed_order_cost: 1.0, price: 3.0}]")
    done = run("experiments.export", f"checkpoint={tmp_path / 'train' / 'checkpoints' / 'latest'}", "retarget=true",
               "network=small", one_sku, *KPI, f"hydra.run.dir={tmp_path / 'export'}")
    assert done.returncode == 0, done.stderr[-3000:]
    bundle = load_bundle(tmp_path / "export" / "bundle")
    assert bundle.manifest.skus == ["rice"] and bundle.manifest.scale_free
    assert {h.layout for h in bundle.manifest.heads} == {"per_node"}
    assert bundle.manifest.kpis["bundle"] == bundle.manifest.kpis["source"]


def test_concurrent_store_requests_are_answered_as_each_alone(bundle_dir, clients, server_class, tmp_path):
    """Store requests arriving together are decided together (one conversion and one ONNX run; the service
    batches what queued up): in process and over HTTP, each gets the answer it gets alone, byte for byte."""
    from concurrent.futures import ThreadPoolExecutor

    from agents.deploy.decide import decide_many

    bundle = load_bundle(bundle_dir)
    kinds = {node.name: node.kind for node in bundle.network.nodes}
    states = [s.model_copy(update={"locations": [location]}) for day in (12, 13, 14)
              for s in [twin_day(bundle, day, seed=4).state] for location in s.locations]
    stores = [s for s in states if kinds[s.locations[0].id] == "store"]
    alone = [decide(bundle, s).model_dump_json() for s in states]
    assert [r.model_dump_json() for r in decide_many(bundle, states)] == alone
    server = server_class(tmp_path / "server", bundle_dir, clients)
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda s: server.decide(s.model_dump_json()), states))
            answers += pool.map(lambda s: server.decide(s.model_dump_json()), stores)  # again, once answered
        metrics = server.http.get("/metrics", headers=server.auth()).text
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert [json.loads(a.content) for a in answers[:len(states)]] == [json.loads(text) for text in alone]
    assert all(a.headers["x-decisions-replayed"] == str(len(s.locations[0].items))
               for a, s in zip(answers[len(states):], stores))  # the second time: from the audit
    count = float(next(line.split()[-1] for line in metrics.splitlines()
                       if line.startswith("decision_service_batch_requests_sum")))
    assert count == len(answers)
