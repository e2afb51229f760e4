"""Export a policy as a bundle that serves decisions without torch or ray (agents/deploy/bundle.py).

    python -m experiments.export checkpoint=outputs/train/RUN/checkpoints/latest
    python -m experiments.export policy=base_stock network=small        # a conf/policy rule: base_stock, ss, rop
    python -m experiments.export rule=forecast:oracle                   # or rule=file:PATH.yaml (a tuned policy)

Writes `bundle/` and `bundle.zip` into the run directory. A checkpoint becomes the greedy ONNX head of each
policy id, checked against the RLModule on `samples` sampled observations (greedy actions identical, scores
within 1e-4), with the item profile its observation is scaled by, and its rule fallback: the parameters
`policy=base_stock` writes for the same network (fallback/parameters.npz), which decisions use when a request asks
for it or the learned head's row is not finite; a rule becomes its parameters (static levels computed from
`level_horizon` days of demand statistics of `policy_seed`, or the forecast base-stock's safety factors). The
bundle is then loaded as a server loads it, and the source policy and the bundle run in the twin on the same `kpi`
seeds: both KPI sets go into the manifest, and the export fails if they differ.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import replace
from pathlib import Path

import hydra
import numpy as np
import yaml
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

import scenarios
from agents.baselines.catalog import PolicySpec
from agents.baselines.policies import SS, BaseStock, ReorderPointEOQ, ShockAwareBaseStock
from agents.baselines.safety import read_safety_factors, safety_factors
from agents.deploy.bundle import (
    FALLBACK_FILE,
    FORECASTER_DIR,
    PARAMETERS_FILE,
    PROFILE_FILE,
    config_sha256,
    finish_bundle,
    load_bundle,
    now_utc,
    package_versions,
    write_network,
)
from experiments.comparison import EvalSetting, run_policy
from experiments.policy_entries import forecast_policy
from experiments.seeds import HELD_OUT_FIRST_SEED, SeedRange
from experiments.startup import config_errors, plain, run_checked, run_dir
from twin import SpecError
from twin.config import ConfigReader, check_warmup
from twin.snapshot import network_hash
from twin.spec import network_from_dict
from twin.state import Topology

log = logging.getLogger("experiments.export")

EXPORT_PACKAGES = ("numpy", "onnxruntime", "pydantic", "supplychain-twin", "torch", "ray", "onnx")
# a learned bundle's rule fallback: what `policy=base_stock` exports (conf/policy/base_stock.yaml)
FALLBACK_POLICY = Path(__file__).resolve().parents[1] / "conf" / "policy" / "base_stock.yaml"
KPI_TOLERANCE = 1e-9  # relative: the bundle's twin KPIs equal the source policy's


def _roles(network) -> dict[str, str]:
    topo = Topology.of(network)
    return {name: kind for name, kind, supplier in zip(topo.names, topo.kinds, topo.is_supplier) if not supplier}


def _base_manifest(name: str, kind: str, network, config: dict) -> dict:
    topo = Topology.of(network)
    return {"name": name, "kind": kind, "created": now_utc(), "network_name": network.name,
            "network_hash": network_hash(network), "nodes": list(topo.names), "skus": list(network.skus.name),
            "roles": _roles(network), "config": config, "config_sha256": config_sha256(config),
            "packages": package_versions(EXPORT_PACKAGES)}


def rule_parameters(policy) -> tuple[str, dict[str, np.ndarray]]:
    """The rule name and parameter arrays of a baseline policy object."""
    if isinstance(policy, BaseStock):
        return "base_stock", {"levels": policy.levels}
    if isinstance(policy, ShockAwareBaseStock):
        return "shock_aware_base_stock", {"calm": policy.calm, "disrupted": policy.disrupted}
    if isinstance(policy, SS):
        return "ss", {"s": policy.s, "S": policy.S}
    if isinstance(policy, ReorderPointEOQ):
        return "rop", {"reorder_point": policy.reorder_point, "quantity": policy.quantity}
    raise SpecError(f"policy: {type(policy).__name__} cannot be exported; allowed: base_stock, ss, rop, "
                    f"shock_aware_base_stock, forecast:NAME, file:PATH.yaml")


def export_rule(entry: str | dict, z: dict[str, float], network_data: dict, horizon: int, seed: int, out: Path,
                config: dict):
    """Write a rule bundle for `entry` (a conf/policy mapping, or rule=forecast:NAME / file:PATH); returns (the
    source policy, the manifest data)."""
    network = network_from_dict(network_data, "network")
    source, rule, arrays, name, forecaster = rule_of(entry, z, network, horizon, seed)
    out.mkdir(parents=True, exist_ok=True)
    write_network(out, network_data)
    np.savez(out / PARAMETERS_FILE, **arrays)
    manifest = {**_base_manifest(name, "rule", network, config), "rule": rule, "forecaster": forecaster}
    finish_bundle(out, manifest)
    return source, manifest


def rule_of(entry: str | dict, z: dict[str, float], network, horizon: int, seed: int):
    """The rule policy of `entry` on `network`: (the source policy, the rule, its parameter arrays, its name,
    the forecaster it reads or None)."""
    kind, sep, rest = entry.partition(":") if isinstance(entry, str) else ("", "", "")
    forecaster = None
    if sep and kind == "forecast":
        source = forecast_policy(rest, "rule", z)
        rule, arrays = "forecast_base_stock", {"z": safety_factors(Topology.of(network).kinds, z)}
        forecaster, name = rest, f"forecast_base_stock:{rest}"
    else:
        if sep and kind == "file":
            path = Path(to_absolute_path(rest))
            if not path.is_file():
                raise SpecError(f"rule: policy file {rest!r} does not exist")
            spec = PolicySpec.from_dict(yaml.safe_load(path.read_text()), "rule")
        elif isinstance(entry, dict):
            spec = PolicySpec.from_dict(entry, "policy")
        else:
            raise SpecError(f"rule: {entry!r} is not allowed; allowed: forecast:NAME, file:PATH.yaml (or "
                            f"policy=base_stock|ss|rop|shock_aware_base_stock)")
        source = spec.build(network, horizon, seed)
        rule, arrays = rule_parameters(source)
        name = spec.name if not sep else f"{spec.name}:{Path(rest).stem}"
    return source, rule, arrays, name, forecaster


def write_fallback(out: Path, network, horizon: int = 365, seed: int = 0) -> dict:
    """Write a learned bundle's rule fallback into `out` (FALLBACK_FILE): the parameters `experiments.export
    policy=base_stock policy_seed=SEED level_horizon=HORIZON` writes for `network`; returns its manifest entry."""
    entry = yaml.safe_load(FALLBACK_POLICY.read_text())
    _, rule, arrays, name, _ = rule_of(entry, {}, network, horizon, seed)
    (out / FALLBACK_FILE).parent.mkdir(parents=True, exist_ok=True)
    np.savez(out / FALLBACK_FILE, **arrays)
    return {"name": name, "rule": rule, "file": FALLBACK_FILE,
            "config": {"policy": entry, "policy_seed": seed, "level_horizon": horizon}}


def export_checkpoint(checkpoint: Path, samples: int, out: Path, serve_network: dict | None = None,
                      fallback_horizon: int = 365, fallback_seed: int = 0):
    """Write a learned bundle for `checkpoint`, with its rule fallback (`write_fallback` for the network it
    serves, from `fallback_horizon` days of `fallback_seed`); returns (the TrainedPolicy, the manifest data, the
    scenario, the starting stock). With `serve_network` (plain network data) the bundle serves that network
    instead of the training one: the policy observes days of demand and is shared by role, so it decides for any
    network whose DCs and stores have the roles it was trained for; the parity source is then the checkpoint's
    modules on it."""
    from agents.envs.core import SupplyChainSim
    from agents.rl.algorithms import TrainingSetup
    from agents.rl.checkpoint import read_setup
    from agents.rl.export import export_rl_heads
    from agents.rl.policy import TrainedPolicy

    setup = read_setup(checkpoint)
    if setup.single_node:
        raise SpecError(f"checkpoint: {str(checkpoint)!r} was trained on a single-node case; allowed: a checkpoint "
                        f"of the network env (a bundle serves a network's DCs and stores)")
    trained = network_from_dict(dict(setup.plain["network"]), "network")
    policy = TrainedPolicy.from_checkpoint(checkpoint)
    network_data = dict(setup.plain["network"])
    if serve_network is not None:
        target = network_from_dict(serve_network, "network")
        setup = TrainingSetup.network(replace(setup.env, network=target), shared_policy=setup.shared_policy)
        missing = sorted(set(setup.policy_ids) - set(policy.modules))
        if missing:
            raise SpecError(f"retarget: network {target.name!r} has the role(s) {', '.join(missing)}, for which the "
                            f"checkpoint has no policy; allowed: a network of the roles {', '.join(policy.modules)}")
        policy = TrainedPolicy(setup, policy.modules, policy.name)
        network_data = serve_network
    out.mkdir(parents=True, exist_ok=True)
    heads = export_rl_heads(checkpoint, out, samples=samples, seed=0)
    network = write_network(out, network_data)
    sim = SupplyChainSim(setup.env)
    p = sim.profile
    np.savez(out / PROFILE_FILE, scale=p.scale, demand_cv=p.demand_cv, critical_ratio=p.critical_ratio,
             nominal_lead_time=p.nominal_lead_time, lead_time_variance=p.lead_time_variance,
             initial_on_hand=policy.initial_on_hand)
    roles = {agent.split("/")[0]: role for agent, role in setup.roles.items()}
    env = setup.env
    manifest = {
        **_base_manifest(policy.name, "rl", network, dict(read_setup(checkpoint).plain)),
        "trained_network": f"{trained.name} ({network_hash(trained)[:12]})",
        "scale_free": True,  # days of demand by role; a per-node head reads any number of SKUs
        "roles": roles,
        "policy_of_role": {role: ("shared" if setup.shared_policy else role) for role in set(roles.values())},
        "obs_spec": {"version": env.obs_spec.version, "pipeline_ages": env.obs_spec.pipeline_ages,
                     "feature_names": list(env.obs_spec.feature_names)},
        "action": {"kind": env.action.kind, "grid": list(env.action.grid)},
        "scaling": "every quantity divided by the (node, SKU)'s mean daily demand (profile.npz: scale), clipped "
                   "to +-100 days",
        "heads": [{"policy_id": h.policy_id, "file": h.onnx_file, "samples_file": h.samples_file,
                   "layout": h.obs_layout, "n_features": h.n_features, "n_actions": h.n_actions,
                   "score_kind": h.score_kind, "max_abs_score_diff": h.max_abs_score_diff, "samples": h.samples}
                  for h in heads],
        "review_period": env.review_period,
        "forecaster": env.forecaster,
        "fallback": write_fallback(out, network, fallback_horizon, fallback_seed),
    }
    finish_bundle(out, manifest)
    scenario = {"name": env.scenario, **dict(env.scenario_params)}
    return policy, manifest, scenario, policy.initial_on_hand


def attach_forecaster(out: Path, manifest: dict, saved: Path) -> None:
    """Copy a saved forecaster (experiments.forecast output.save_forecaster=true) into the bundle: it forecasts,
    from a request's daily (or weekly, spread over days) demand history, the items that come without a
    forecast."""
    from agents.forecasting.saved import load_forecaster

    if not saved.is_dir():
        raise SpecError(f"saved_forecaster: {str(saved)!r} is not a directory; allowed: the forecaster/ directory "
                        f"of `python -m experiments.forecast output.save_forecaster=true`")
    forecaster = load_forecaster(saved)  # checked before it is copied
    if forecaster.covariates:
        raise SpecError(f"saved_forecaster: {forecaster.name} reads the covariates {list(forecaster.covariates)}, "
                        f"which an ERP demand history does not carry; allowed: a forecaster fitted without them "
                        f"(experiments.forecast data.covariates=[] output.save_forecaster=true)")
    if forecaster.frequency.name != "daily":
        raise SpecError(f"saved_forecaster: {forecaster.name} forecasts {forecaster.frequency.name} data; allowed: "
                        f"a forecaster of daily demand (decisions read daily forecasts)")
    shutil.copytree(saved, out / FORECASTER_DIR)
    manifest["saved_forecaster"] = forecaster.name
    finish_bundle(out, manifest)


def measure(source, bundle_policy, network, shocks, initial_on_hand, kpi: dict) -> dict[str, dict[str, float]]:
    """Mean twin KPIs of the source policy and of the bundle on the same seeds; SpecError if they differ."""
    setting = EvalSetting(network, tuple(shocks), kpi["horizon"], kpi["warmup"], kpi["seeds"].seeds,
                          initial_on_hand)
    out = {}
    for label, policy in (("source", source), ("bundle", bundle_policy)):
        runs = [run_policy(policy, setting, seed) for seed in setting.seeds]
        out[label] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        log.info("%s: %s", label, ", ".join(f"{k} {v:.6g}" for k, v in out[label].items()))
    for key, value in out["source"].items():
        other = out["bundle"][key]
        if not math.isclose(value, other, rel_tol=KPI_TOLERANCE, abs_tol=1e-12):
            raise SpecError(f"kpi: the bundle's {key} {other!r} differs from the source policy's {value!r} on the "
                            f"same seeds {list(setting.seeds)}; the bundle does not decide as its source")
    return out


@hydra.main(config_path="../conf", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Validate, write the bundle, load it back and measure its twin KPIs against the source policy's."""
    data = plain(cfg)
    with config_errors():
        r = ConfigReader(data, "")
        checkpoint, policy, rule = r.raw("checkpoint"), r.raw("policy"), r.raw("rule")
        z = read_safety_factors(r.child("forecast_z"))
        seed = r.integer("policy_seed", 0, low=0)
        horizon = r.integer("level_horizon", 365, low=2, high=10**5)
        samples = r.integer("samples", 10_000, low=1, high=10**6)
        retarget = r.flag("retarget", False)
        saved_forecaster = r.raw("saved_forecaster")
        k = r.child("kpi")
        kpi = {"seeds": SeedRange.read(k, count=3, first=HELD_OUT_FIRST_SEED, high=100),
               "horizon": k.integer("horizon", 120, low=2, high=10**5)}
        kpi["warmup"] = check_warmup(k.integer("warmup", 28, low=0), kpi["horizon"])
        k.done()
        network_data, scenario_data = r.raw("network"), dict(r.raw("scenario") or {})
        r.done()
        given = [key for key, value in (("checkpoint", checkpoint), ("policy", policy), ("rule", rule))
                 if value is not None]
        if len(given) != 1:
            raise SpecError(f"{' / '.join(given) or 'checkpoint / policy / rule'}: give one of them; allowed: "
                            f"checkpoint=DIR (experiments.train), policy=base_stock|ss|rop, "
                            f"rule=forecast:NAME|file:PATH.yaml")
        out = run_dir() / "bundle"
        if checkpoint is not None:
            path = Path(to_absolute_path(str(checkpoint)))
            if not path.is_dir():
                raise SpecError(f"checkpoint: {str(checkpoint)!r} is not a directory")
            source, manifest, scenario_data, initial = export_checkpoint(path, samples, out,
                                                                         network_data if retarget else None,
                                                                         horizon, seed)
        else:
            entry = policy if policy is not None else rule
            if retarget:
                raise SpecError("retarget: only with checkpoint=DIR (a rule bundle serves the network it is "
                                "exported on)")
            config = {"policy": entry, "forecast_z": z, "policy_seed": seed, "level_horizon": horizon,
                      "network": network_data}
            source, manifest = export_rule(entry, z, network_data, horizon, seed, out, config)
            initial = None
        if saved_forecaster is not None:
            attach_forecaster(out, manifest, Path(to_absolute_path(str(saved_forecaster))))
        bundle = load_bundle(out)
        bundle.self_check()
        name = scenario_data.pop("name", "baseline")
        shocks = scenarios.build(name, bundle.network, kpi["horizon"], **scenario_data).shocks
        if initial is None:
            from agents.envs.core import EnvConfig, initial_on_hand
            initial = initial_on_hand(EnvConfig(network=bundle.network))
    log.info("measuring %s and its bundle on seeds %s", manifest["name"], kpi["seeds"])
    with config_errors():
        # the forecast base-stock's forecaster as configured for it (conf/forecaster/NAME.yaml), the same object
        twin_policy = bundle.twin_policy(getattr(source, "forecaster", None) if bundle.manifest.kind == "rule"
                                         else None)
        kpis = measure(source, twin_policy, bundle.network, shocks, initial, kpi)
    manifest["kpis"] = {**kpis, "run": {"seeds": float(kpi["seeds"].count), "first_seed": float(kpi["seeds"].first),
                                        "horizon": float(kpi["horizon"]), "warmup": float(kpi["warmup"])}}
    finish_bundle(out, manifest)
    bundle = load_bundle(out)
    print(f"bundle {bundle.name} ({bundle.manifest.kind}) sha256 {bundle.sha256}\n"
          f"  twin cost per day {kpis['bundle']['cost_per_day']:.4f} (source {kpis['source']['cost_per_day']:.4f}), "
          f"fill rate {kpis['bundle']['fill_rate']:.4f} on seeds {kpi['seeds']}\n"
          f"written to {out} and {out.parent / 'bundle.zip'}")


if __name__ == "__main__":
    run_checked(main)
