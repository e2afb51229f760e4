"""A policy as a versioned bundle: one directory (and its zip) that loads and decides with numpy and onnxruntime.

    bundle/
        manifest.json      what the bundle is (Manifest below) and the sha256 of every other file
        network.json       the network's plain data (twin.spec.network_from_dict): the ids the bundle serves
        parameters.npz     a rule policy's arrays: levels / s, S / reorder_point, quantity / z (nodes, ...)
        profile.npz        a learned policy's item profile (the observation's scaling, agents/envs/observation.py;
                           with lead_time_variance, the levels of a profile-anchored action kind)
        <policy id>.onnx   a learned policy's greedy head per policy id (agents/rl/export.py writes it)
        <policy id>.samples.npz   observations and the checkpoint's scores on them: the bundle's self-check
        fallback/parameters.npz   a learned policy's rule fallback (manifest `fallback`): the parameters that
                           `experiments.export policy=base_stock` writes for the network; decisions use it when
                           a request asks (`policy: fallback`) or the learned head's row is not finite
        forecaster/        optional: a saved forecaster (agents/forecasting/saved.py) that forecasts, from the
                           demand history in a request, the items that come without a forecast

The bundle's hash is the sha256 of manifest.json, which holds the sha256 of every other file, so one hash names
everything that decides. `load_bundle` refuses a bundle whose files do not match their hashes, of another format
or ObsSpec version, or whose parameters do not fit its network, with one `BundleError` naming the file and field;
`Bundle.self_check()` replays the saved sample observations through the ONNX heads (the hot-reload check).

A bundle serves the ids of its network: the nodes and SKUs of network.json, by role (`scale_free` says whether
`experiments.export retarget=true` may re-export it for another network).
Writing: the exporter puts the payload files into a directory, then `finish_bundle(directory, manifest)` hashes
them, writes manifest.json and `bundle.zip` beside the directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import lzma
import shutil
import tempfile
import weakref
import zipfile
import zlib
from functools import cached_property
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.deploy.erp_state import format_loc
from agents.deploy.onnx_head import OnnxHead
from agents.deploy.policies import RULE_ARRAYS, RULES, Head, OnnxPolicy, RulePolicy, ServedPolicy
from agents.envs.actions import ACTION_KINDS
from agents.envs.observation import ItemProfile, ObsSpec
from agents.forecasting.saved import sha256_file
from twin.config import SpecError
from twin.snapshot import network_hash
from twin.spec import NetworkSpec, network_from_dict
from twin.state import Topology

FORMAT = "twin.bundle/1"
MANIFEST = "manifest.json"
NETWORK_FILE = "network.json"
FORECASTER_DIR = "forecaster"
PARAMETERS_FILE = "parameters.npz"
FALLBACK_FILE = "fallback/parameters.npz"
PROFILE_FILE = "profile.npz"
SAMPLE_TOLERANCE = 1e-4  # max |score difference| of the self-check, as at export
# what a saved forecaster needs beyond .[serve] (the forecast extra), checked when a bundle loads
FORECASTER_PACKAGES = {"gradient_boosting": ("sklearn", "joblib"), "glm": ("sklearn", "scipy"),
                       **{name: ("statsforecast",) for name in ("ets", "arima", "croston", "tsb", "adida", "imapa")}}
MAX_ZIP_MEMBERS = 10_000         # a bundle.zip with more files than this is refused (a bundle has tens)
MAX_UNZIPPED_BYTES = 2 * 2**30  # a bundle.zip larger than this unzipped is refused (a zip bomb)
SERVING_PACKAGES = ("numpy", "onnxruntime", "pydantic", "supplychain-twin")


class BundleError(SpecError):
    """A bundle that cannot serve: the message names the file (and field) and what is allowed."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeadEntry(_Model):
    """One policy id's ONNX head."""

    policy_id: str
    file: str
    samples_file: str
    layout: Literal["per_sku", "per_node"]
    n_features: int
    n_actions: int
    score_kind: Literal["logits", "q_values"]
    max_abs_score_diff: float = Field(description="ONNX against the RLModule on the samples, at export")
    samples: int


class ObsSpecEntry(_Model):
    """The observation a learned policy reads (agents/envs/observation.py)."""

    version: int
    pipeline_ages: int
    feature_names: list[str]


class ActionEntry(_Model):
    """The action map: an index into `grid`, turned into an order by `kind` (agents/envs/actions.py)."""

    kind: str
    grid: list[float]


class FallbackEntry(_Model):
    """A learned bundle's rule fallback: a static rule's parameters (as a rule bundle's parameters.npz)."""

    name: str = Field(description="the rule policy's name, as its own rule bundle would be named")
    rule: Literal["base_stock", "ss", "rop"] = Field(description="a static rule: it decides without a forecast")
    file: str = Field(FALLBACK_FILE, description="its parameters: one of the bundle's hashed files")
    config: dict[str, Any] = Field(default_factory=dict, description="the policy, policy_seed and level_horizon "
                                                                     "it was computed with")


class Manifest(_Model):
    """What a bundle is: written at export, checked at load, served at GET /v1/model."""

    format: Literal["twin.bundle/1"] = FORMAT
    name: str
    kind: Literal["rule", "rl"]
    rule: str | None = Field(None, description="the rule of a rule bundle: " + ", ".join(RULES))
    created: str
    network_name: str
    network_hash: str
    nodes: list[str]
    skus: list[str]
    scale_free: bool = Field(False, description="true: a learned policy reads days of demand by role (its heads "
                                                "take any number of rows and SKUs), so `experiments.export "
                                                "retarget=true` serves it on another network of these roles; false: "
                                                "bound to this network's ids (a rule's levels per node and SKU)")
    trained_network: str | None = Field(None, description="a learned policy's training network (name, hash): "
                                                          "another one where it was retargeted")
    roles: dict[str, str] = Field(description="node -> role (store, dc); suppliers are not served")
    policy_of_role: dict[str, str] = Field(default_factory=dict, description="role -> policy id (learned)")
    obs_spec: ObsSpecEntry | None = None
    action: ActionEntry | None = None
    scaling: str | None = None
    heads: list[HeadEntry] = Field(default_factory=list)
    fallback: FallbackEntry | None = Field(None, description="a learned bundle's rule fallback (bundles exported "
                                                             "before it existed have none)")
    review_period: int = 1
    forecaster: str | None = Field(None, description="what forecast the policy inside the twin (None: it needs "
                                                     "none); a served request brings its own forecast")
    saved_forecaster: str | None = Field(None, description="the saved forecaster in forecaster/ (its name), which "
                                                           "forecasts items that come with history only")
    config: dict[str, Any] = Field(default_factory=dict, description="the training or policy config")
    config_sha256: str
    packages: dict[str, str]
    kpis: dict[str, dict[str, float]] = Field(default_factory=dict, description="twin KPIs measured at export")
    files: dict[str, str] = Field(default_factory=dict, description="file (path within the bundle) -> sha256")


def config_sha256(config: Any) -> str:
    """The sha256 of a plain config as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def package_versions(names: tuple[str, ...] = SERVING_PACKAGES) -> dict[str, str]:
    """Installed versions of `names` (those installed)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def finish_bundle(directory: Path, manifest: dict[str, Any]) -> Path:
    """Hash every file in `directory`, write manifest.json (checked as a Manifest) and `bundle.zip` beside it.

    Returns the directory. `manifest` holds every field but `files`.
    """
    directory = Path(directory)
    files = {name: sha256_file(directory / name) for name in _payload(directory)}
    checked = Manifest(**{**manifest, "files": files})
    (directory / MANIFEST).write_text(json.dumps(checked.model_dump(mode="json"), indent=1) + "\n")
    archive = directory.parent / f"{directory.name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for name in [MANIFEST, *files]:
            z.write(directory / name, arcname=f"{directory.name}/{name}")
    return directory


def _payload(directory: Path) -> list[str]:
    """Every file of the bundle but its manifest, as sorted paths relative to it ('forecaster/lstm.onnx')."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and p.relative_to(directory).as_posix() != MANIFEST)


def write_network(directory: Path, network_data: dict[str, Any]) -> NetworkSpec:
    """Write the network's plain data to network.json; returns the network it builds."""
    network = network_from_dict(network_data)
    (Path(directory) / NETWORK_FILE).write_text(json.dumps(network_data, indent=1, default=float) + "\n")
    return network


class Bundle:
    """A loaded, verified bundle: its manifest, network and policy."""

    def __init__(self, path: Path, manifest: Manifest, sha256: str, network: NetworkSpec,
                 policy: RulePolicy | OnnxPolicy, forecaster=None, fallback: RulePolicy | None = None) -> None:
        self.path, self.manifest, self.sha256, self.network, self.policy = path, manifest, sha256, network, policy
        self.forecaster = forecaster  # a SavedForecaster (agents/forecasting/saved.py), or None
        self.fallback = fallback      # a learned bundle's rule fallback (manifest.fallback), or None

    @property
    def name(self) -> str:
        return self.manifest.name

    @cached_property
    def topology(self) -> Topology:
        return Topology.of(self.network)

    def manifest_dict(self) -> dict[str, Any]:
        """The manifest as JSON data, with the bundle's hash."""
        return {**self.manifest.model_dump(mode="json"), "sha256": self.sha256}

    def self_check(self) -> None:
        """Replay each head's saved sample observations: greedy actions identical and scores within
        SAMPLE_TOLERANCE of the checkpoint's (BundleError naming the file otherwise). Rule bundles: their
        parameters were checked at load."""
        if not isinstance(self.policy, OnnxPolicy):
            return
        for entry, head in zip(self.manifest.heads, self.policy.heads):
            with np.load(self.path / entry.samples_file) as data:
                if "obs" not in data or "scores" not in data:
                    raise BundleError(f"{entry.samples_file}: needs the arrays obs and scores")
                obs, expected = data["obs"], data["scores"]
            try:
                scores = head.onnx.scores(obs)
            except (SpecError, ValueError) as error:
                raise BundleError(f"{entry.file}: does not run on its own samples ({error})") from error
            diff = float(np.max(np.abs(scores - expected))) if len(obs) else 0.0
            same = bool(np.array_equal(np.argmax(scores, axis=-1), np.argmax(expected, axis=-1)))
            if not same or not diff <= SAMPLE_TOLERANCE:
                raise BundleError(f"{entry.file}: on its {len(obs)} sample observations ({entry.samples_file}) "
                                  f"the greedy actions {'agree' if same else 'differ'} and scores differ by up to "
                                  f"{diff:.3g} from the checkpoint's; allowed: identical actions, within "
                                  f"{SAMPLE_TOLERANCE}")

    def twin_policy(self, forecaster=None) -> ServedPolicy:
        """The bundle's policy for twin runs; `forecaster` defaults to the manifest's (refused: none for a
        policy that needs one)."""
        if forecaster is None and self.manifest.forecaster is not None:
            from agents.forecasting.live import forecaster_from_name
            forecaster = forecaster_from_name(self.manifest.forecaster)
        return ServedPolicy(self.policy, forecaster, self.manifest.review_period, f"bundle:{self.name}",
                            getattr(self.policy, "initial_on_hand", None))


def load_bundle(path: str | Path) -> Bundle:
    """Load and verify the bundle in `path` (its directory, or bundle.zip); BundleError naming what is wrong.

    A bundle.zip is unpacked into a temporary directory that lives as long as the Bundle: removed when the
    Bundle is garbage-collected (or at exit), and at once if the bundle is refused."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        scratch = Path(tempfile.mkdtemp(prefix="bundle-"))
        try:
            bundle = _load(unpack_zip(path, scratch))
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        weakref.finalize(bundle, shutil.rmtree, str(scratch), ignore_errors=True)
        return bundle
    return _load(path)


def _load(path: Path) -> Bundle:
    if not path.is_dir():
        raise BundleError(f"bundle {str(path)!r}: no such directory; allowed: a bundle directory written by "
                          f"`python -m experiments.export`, or its bundle.zip")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"bundle {str(path)!r}: no {MANIFEST}; allowed: a directory written by experiments.export")
    raw = manifest_path.read_bytes()
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise BundleError(f"{MANIFEST}: not valid JSON ({error})") from error
    if isinstance(data, dict) and data.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST}: format {data.get('format')!r} is not allowed; allowed: {FORMAT!r}")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise BundleError(f"{MANIFEST}: {format_loc(first['loc'])}: {first['msg']}") from error
    _check_files(path, manifest)
    for i, entry in enumerate(manifest.heads):  # what is read must be what was hashed
        for field, name in (("file", entry.file), ("samples_file", entry.samples_file)):
            if name not in manifest.files:
                raise BundleError(f"{MANIFEST}.heads[{i}].{field}: {name!r} is not one of the bundle's files "
                                  f"({MANIFEST}.files); allowed: a hashed file of the bundle")
    network = _network(path, manifest)
    if manifest.kind == "rule":
        if manifest.fallback is not None:
            raise BundleError(f"{MANIFEST}.fallback: a rule bundle has none; allowed: a fallback in a learned bundle")
        policy = _rule_policy(path, manifest, manifest.rule, PARAMETERS_FILE, network, f"{MANIFEST}.rule")
    else:
        policy = _onnx_policy(path, manifest, network)
    fallback = None
    if manifest.fallback is not None:
        fallback = _rule_policy(path, manifest, manifest.fallback.rule, manifest.fallback.file, network,
                                f"{MANIFEST}.fallback.rule")
    return Bundle(path, manifest, hashlib.sha256(raw).hexdigest(), network, policy, _forecaster(path, manifest),
                  fallback)


def _forecaster(path: Path, manifest: Manifest):
    if manifest.saved_forecaster is None:
        return None
    from agents.forecasting.saved import load_forecaster

    absent = [m for m in FORECASTER_PACKAGES.get(manifest.saved_forecaster, ()) if find_spec(m) is None]
    if absent:
        raise BundleError(f"{FORECASTER_DIR}/: the saved {manifest.saved_forecaster} needs the package "
                          f"{absent[0]!r}, which is not installed; allowed: pip install .[serve,forecast] (the LSTM, "
                          f"the Transformer, seasonal naive and moving average need .[serve] only)")
    try:
        return load_forecaster(path / FORECASTER_DIR)
    except SpecError as error:
        raise BundleError(f"{FORECASTER_DIR}/: {error}") from error


def unsafe_member(name: str) -> bool:
    """Whether a zip member's name could write outside the folder it is extracted into: absolute (`/x`,
    `C:/x`, `\\x`) or with a `..` part (`../x`, `a/../../x`, `..\\x`)."""
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    return (posix.is_absolute() or bool(windows.drive or windows.root) or ".." in posix.parts
            or ".." in windows.parts)


def unpack_zip(archive: str | Path, target: str | Path, name: str | None = None) -> Path:
    """Extract the bundle.zip `archive` into the directory `target` (made if missing) and return the bundle's
    directory in it: the folder of its one manifest.json, else `target` (then loading it names what is
    missing). BundleError (its message names the archive as `name`, default its path) for a file that is no
    readable zip, a member that would land outside `target` (an absolute path or `..`: refused before anything
    is written) or more than MAX_UNZIPPED_BYTES unzipped (a zip bomb); the caller removes `target`."""
    archive, target = Path(archive), Path(target)
    where = name or f"bundle {str(archive)!r}"
    try:
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            for info in infos:  # nothing out of the target
                if unsafe_member(info.filename):
                    raise BundleError(f"{where}: member {info.filename!r} is not allowed (it would be written "
                                      f"outside the bundle's folder); allowed: relative paths inside the archive")
            size = sum(info.file_size for info in infos)
            if len(infos) > MAX_ZIP_MEMBERS:
                raise BundleError(f"{where}: {len(infos):,} members; allowed: at most {MAX_ZIP_MEMBERS:,}")
            if size > MAX_UNZIPPED_BYTES:
                raise BundleError(f"{where}: {size:,} bytes unzipped; allowed: at most {MAX_UNZIPPED_BYTES:,}")
            target.mkdir(parents=True, exist_ok=True)
            z.extractall(target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error,
            lzma.LZMAError, ValueError) as error:
        # not a zip, a damaged one (CRC, a corrupt deflate stream), an encrypted one or a compression zipfile lacks
        raise BundleError(f"{where}: not a readable zip archive ({error}); allowed: the bundle.zip written by "
                          f"experiments.export") from error
    found = [p.parent for p in target.rglob(MANIFEST)]
    return found[0] if len(found) == 1 else target


def _check_files(path: Path, manifest: Manifest) -> None:
    present = set(_payload(path))
    for name, digest in manifest.files.items():
        if name not in present:
            raise BundleError(f"{name}: listed in {MANIFEST}.files but missing from the bundle")
        if sha256_file(path / name) != digest:
            raise BundleError(f"{name}: its sha256 is not the one in {MANIFEST}.files (the file was changed); "
                              f"allowed: the files as exported")
    extra = sorted(present - set(manifest.files))
    if extra:
        raise BundleError(f"{extra[0]}: not listed in {MANIFEST}.files; allowed: only the exported files")
    for name in (NETWORK_FILE,):
        if name not in manifest.files:
            raise BundleError(f"{MANIFEST}.files: no {name}; allowed: a bundle written by experiments.export")


def _network(path: Path, manifest: Manifest) -> NetworkSpec:
    try:
        network = network_from_dict(json.loads((path / NETWORK_FILE).read_text()))
    except (ValueError, SpecError) as error:
        raise BundleError(f"{NETWORK_FILE}: {error}") from error
    if network_hash(network) != manifest.network_hash:
        raise BundleError(f"{NETWORK_FILE}: its network hash is not {MANIFEST}.network_hash")
    topo = Topology.of(network)
    if list(topo.names) != manifest.nodes or list(network.skus.name) != manifest.skus:
        raise BundleError(f"{MANIFEST}.nodes / skus: not the nodes and SKUs of {NETWORK_FILE}")
    return network


def _rule_policy(path: Path, manifest: Manifest, rule: str | None, file: str, network: NetworkSpec,
                 field: str) -> RulePolicy:
    """The rule policy `rule` (the manifest's `field`) with its parameters from `file`, one of its files."""
    if rule not in RULES:
        raise BundleError(f"{field}: {rule!r} is not allowed; allowed: {', '.join(RULES)}")
    if file not in manifest.files:
        raise BundleError(f"{MANIFEST}.files: no {file}; a rule policy needs its parameters")
    topo = Topology.of(network)
    shape = (len(topo.names), network.skus.n)
    arrays = {}
    with np.load(path / file) as data:
        for name in RULE_ARRAYS[rule]:
            if name not in data:
                raise BundleError(f"{file}: no array {name!r}; rule {rule} needs {', '.join(RULE_ARRAYS[rule])}")
            value = np.asarray(data[name], dtype=float)
            want = (shape[0], 1) if name == "z" else shape
            if value.shape != want or not np.all(np.isfinite(value)):
                raise BundleError(f"{file}: {name} has shape {value.shape}; allowed: finite values "
                                  f"of shape {want} (nodes, SKUs of {NETWORK_FILE})")
            arrays[name] = value
    try:
        return RulePolicy(rule, arrays, topo.is_supplier)
    except ValueError as error:
        raise BundleError(f"{file}: {error}") from error


def _onnx_policy(path: Path, manifest: Manifest, network: NetworkSpec) -> OnnxPolicy:
    if manifest.obs_spec is None or manifest.action is None or not manifest.heads:
        raise BundleError(f"{MANIFEST}: a learned bundle needs obs_spec, action and heads")
    spec = ObsSpec(pipeline_ages=manifest.obs_spec.pipeline_ages)
    if manifest.obs_spec.version != spec.version:
        raise BundleError(f"{MANIFEST}.obs_spec.version: {manifest.obs_spec.version} is not allowed; allowed: "
                          f"{spec.version} (this version of the project builds ObsSpec version {spec.version}; "
                          f"re-export the policy with it)")
    if list(spec.feature_names) != manifest.obs_spec.feature_names:
        raise BundleError(f"{MANIFEST}.obs_spec.feature_names: not the features of ObsSpec version {spec.version}")
    if manifest.action.kind not in ACTION_KINDS.names:
        raise BundleError(f"{MANIFEST}.action.kind: {manifest.action.kind!r} is not allowed; allowed: "
                          f"{', '.join(ACTION_KINDS.names)}")
    try:
        action = ACTION_KINDS[manifest.action.kind](grid=tuple(manifest.action.grid))
    except SpecError as error:
        raise BundleError(f"{MANIFEST}.action: {error}") from error
    topo = Topology.of(network)
    controlled = np.flatnonzero(~topo.is_supplier)
    if PROFILE_FILE not in manifest.files:
        raise BundleError(f"{MANIFEST}.files: no {PROFILE_FILE}; a learned bundle needs its item profile")
    with np.load(path / PROFILE_FILE) as data:
        missing = [k for k in ("scale", "demand_cv", "critical_ratio", "nominal_lead_time") if k not in data]
        if missing:
            raise BundleError(f"{PROFILE_FILE}: no array {missing[0]!r}; allowed: a profile written by "
                              f"experiments.export")
        if action.anchor == "profile" and "lead_time_variance" not in data:
            raise BundleError(f"{PROFILE_FILE}: no array 'lead_time_variance'; allowed: a profile written by "
                              f"experiments.export (action kind {action.kind!r} sets its levels from it)")
        profile = ItemProfile(scale=data["scale"], demand_cv=data["demand_cv"],
                              critical_ratio=data["critical_ratio"], nominal_lead_time=data["nominal_lead_time"],
                              lead_time_variance=data["lead_time_variance"] if "lead_time_variance" in data else None)
        initial = data["initial_on_hand"] if "initial_on_hand" in data else None
    if profile.scale.shape != (len(topo.names), network.skus.n):
        raise BundleError(f"{PROFILE_FILE}: scale has shape {profile.scale.shape}; allowed: (nodes, SKUs) of "
                          f"{NETWORK_FILE}")
    ltv = profile.lead_time_variance
    if ltv is not None and (ltv.shape != (len(topo.names),) or not (np.isfinite(ltv) & (ltv >= 0)).all()):
        raise BundleError(f"{PROFILE_FILE}: lead_time_variance has shape {ltv.shape} or a value that is not finite "
                          f"and >= 0; allowed: one variance >= 0 per node of {NETWORK_FILE}")
    heads = []
    for i, entry in enumerate(manifest.heads):
        if entry.n_features != spec.n_features or entry.n_actions != action.n:
            raise BundleError(f"{MANIFEST}.heads[{i}]: {entry.n_features} features and {entry.n_actions} actions; "
                              f"allowed: {spec.n_features} and {action.n} (the obs_spec and action)")
        roles = {role for role, pid in manifest.policy_of_role.items() if pid == entry.policy_id}
        nodes = np.array([c for c, node in enumerate(controlled)
                          if manifest.roles.get(topo.names[node]) in roles], dtype=np.int64)
        try:
            onnx = OnnxHead(path / entry.file, entry.score_kind)
        except (SpecError, ValueError) as error:
            raise BundleError(f"{entry.file}: {error}") from error
        heads.append(Head(entry.policy_id, onnx, nodes, entry.layout))
    try:
        policy = OnnxPolicy(heads, spec, profile, action, controlled, network.demand.integer_units,
                            manifest.review_period)
    except ValueError as error:  # the profile's levels cannot be computed from its arrays
        raise BundleError(f"{PROFILE_FILE}: {error}") from error
    policy.initial_on_hand = initial  # the stock its training episodes started with (twin runs start from it)
    return policy
