"""What a checkpoint of experiments.train holds beside RLlib's files: the env setup, as versioned plain data.

    <run>/checkpoints/iter_NNNNNN/twin_setup.yaml
        format_version: 1        # of this file; any other is refused
        obs_spec_version: 1      # the observation layout the modules were trained on (ObsSpec.version)
        policy_ids: [dc, store]  # the RLModule directories
        roles: {dc_0: dc, ...}   # agent id -> role (the network env)
        setup: {...}             # TrainingSetup.from_plain's data: network, scenario, env, shared_policy
                                 # (the network env) or case (the case file's data), env (the single-node env)

The file names no project class, so renaming or moving one breaks no checkpoint:
`read_setup` rebuilds the setup through the same validated readers as a fresh
run, then checks that the observation version, policy ids and roles it derives
are the ones stored (the modules were trained on those). A change of this
format bumps FORMAT_VERSION, and `read_setup` keeps reading the older versions.

Checkpoints written before this file existed hold `twin_setup.pkl` (a pickle of
TrainingSetup) instead. `read_setup` refuses them with one SpecError that names
the way out; `upgrade` converts one while the pickle still loads with the current
classes: it rebuilds the setup from the run's Hydra config, checks it equals the
pickled one and writes twin_setup.yaml beside the pickle.

    python -m agents.rl.checkpoint upgrade outputs/train/RUN        # every checkpoint of the run
    python -m agents.rl.checkpoint upgrade outputs/train/RUN/checkpoints/iter_000100
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.rl.algorithms import TrainingSetup
from scenarios.reference import read_case_data
from twin.config import SpecError

SETUP_FILE = "twin_setup.yaml"
LEGACY_SETUP_FILE = "twin_setup.pkl"  # written before FORMAT_VERSION 1; read only by `upgrade`
FORMAT_VERSION = 1


def write_setup(checkpoint: Path, setup: TrainingSetup) -> Path:
    """Write the setup's plain data into `checkpoint` (a directory); returns the file."""
    if setup.plain is None:
        raise ValueError("write_setup: the setup was built from typed objects; build it with "
                         "TrainingSetup.from_plain to save it")
    document = {"format_version": FORMAT_VERSION, "obs_spec_version": setup.env.obs_spec.version,
                "policy_ids": list(setup.policy_ids), "roles": dict(setup.roles), "setup": setup.plain}
    path = Path(checkpoint) / SETUP_FILE
    tmp = path.with_name(f"{SETUP_FILE}.tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.replace(path)  # a crash never leaves half a file
    return path


def read_setup(checkpoint: Path) -> TrainingSetup:
    """The setup a checkpoint was trained on; one SpecError naming what to do when it cannot be read."""
    checkpoint = Path(checkpoint)
    where = f"checkpoint {str(checkpoint)!r}"
    path = checkpoint / SETUP_FILE
    if not path.exists():
        if (checkpoint / LEGACY_SETUP_FILE).exists():
            raise SpecError(f"{where} was written by an older version of experiments.train ({LEGACY_SETUP_FILE}, "
                            f"a pickle of the project's classes, and no {SETUP_FILE}); allowed: convert it with "
                            f"`python -m agents.rl.checkpoint upgrade {checkpoint}`, or retrain with "
                            f"`python -m experiments.train`")
        raise SpecError(f"{where} is not a checkpoint of experiments.train (no {SETUP_FILE}); "
                        f"allowed: a directory under <run>/checkpoints/")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: {SETUP_FILE} is not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise SpecError(f"{where}: {SETUP_FILE} must hold a mapping")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise SpecError(f"{where}: {SETUP_FILE} has format_version {version!r}, which this version of the project "
                        f"cannot read; allowed: {FORMAT_VERSION} (a newer version of the project reads newer files)")
    unknown = sorted(set(document) - {"format_version", "obs_spec_version", "policy_ids", "roles", "setup"})
    if unknown:
        raise SpecError(f"{where}: {SETUP_FILE}: unknown key {unknown[0]!r}; allowed: format_version, "
                        f"obs_spec_version, policy_ids, roles, setup")
    try:
        setup = TrainingSetup.from_plain(document.get("setup") or {})
    except SpecError as error:
        raise SpecError(f"{where}: its {SETUP_FILE} no longer builds an env ({error}); allowed: retrain with "
                        f"`python -m experiments.train`") from error
    derived = {"obs_spec_version": setup.env.obs_spec.version, "policy_ids": list(setup.policy_ids),
               "roles": dict(setup.roles)}
    for key, value in derived.items():
        if document.get(key) != value:
            raise SpecError(f"{where}: {SETUP_FILE} says {key} {_short(document.get(key))}, but its setup now "
                            f"gives {_short(value)} (the modules were trained on the former); allowed: retrain "
                            f"with `python -m experiments.train`")
    return setup


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


# ---------------------------------------------------------------- checkpoints written before FORMAT_VERSION 1

def is_legacy(checkpoint: Path) -> bool:
    """True for a checkpoint that holds only the pickled setup of older versions."""
    return (Path(checkpoint) / LEGACY_SETUP_FILE).exists() and not (Path(checkpoint) / SETUP_FILE).exists()


def legacy_setup(checkpoint: Path) -> TrainingSetup:
    """The pickled setup of an older checkpoint, while the current classes still load it; SpecError otherwise."""
    try:
        return pickle.loads((Path(checkpoint) / LEGACY_SETUP_FILE).read_bytes())
    except Exception as exc:  # noqa: BLE001 - any failure of an old pickle means the same thing here
        raise SpecError(f"checkpoint {str(checkpoint)!r}: its {LEGACY_SETUP_FILE} no longer loads with the current "
                        f"classes ({type(exc).__name__}: {exc}), so it cannot be converted; allowed: retrain with "
                        f"`python -m experiments.train`") from exc


def upgrade(checkpoint: Path, setup: TrainingSetup) -> Path:
    """Write `setup` as the checkpoint's twin_setup.yaml, if it equals the pickled setup; SpecError otherwise."""
    difference = first_difference(legacy_setup(checkpoint), setup)
    if difference is not None:
        raise SpecError(f"checkpoint {str(checkpoint)!r}: the setup built from the run's config differs from the "
                        f"pickled one at {difference}, so it cannot be converted; allowed: retrain with "
                        f"`python -m experiments.train`")
    return write_setup(checkpoint, setup)


def setup_from_run_config(run: Path, legacy: TrainingSetup) -> TrainingSetup:
    """The setup of a run of experiments.train, from its Hydra config (<run>/.hydra/config.yaml), built as
    experiments.train builds it; `legacy`, the pickled setup, resolves `env.granularity: auto`."""
    hydra_dir = Path(run) / ".hydra"
    try:
        config = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"run {str(run)!r}: no readable .hydra/config.yaml ({exc}), so its checkpoints cannot be "
                        f"converted; allowed: retrain with `python -m experiments.train`") from exc
    if config.get("case") is not None:
        try:  # a relative case path was relative to the directory the run was started in
            cwd = Path(yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]["runtime"]["cwd"])
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            cwd = Path.cwd()
        data = {"case": read_case_data(cwd / str(config["case"])), "env": config.get("single_node_env")}
    else:
        data = {key: config.get(key) for key in ("network", "scenario", "env", "shared_policy")}
    env = dict(data["env"] or {})
    if env.get("granularity", "auto") == "auto":  # the trainer chose it from the algorithm
        env["granularity"] = legacy.env.granularity
    return TrainingSetup.from_plain({**data, "env": env})


def upgrade_run_or_checkpoint(path: Path) -> list[Path]:
    """Convert a checkpoint, or every checkpoint of a run directory, that holds only the pickled setup."""
    path = Path(path)
    checkpoints = sorted((path / "checkpoints").glob("iter_*")) if (path / "checkpoints").is_dir() else [path]
    written = []
    for checkpoint in checkpoints:
        if not is_legacy(checkpoint):
            if not (checkpoint / SETUP_FILE).exists():
                raise SpecError(f"checkpoint {str(checkpoint)!r}: neither {SETUP_FILE} nor {LEGACY_SETUP_FILE}; "
                                f"allowed: a checkpoint directory of experiments.train, or its run directory")
            continue
        resolved = checkpoint.resolve()
        if resolved.parent.name != "checkpoints":
            raise SpecError(f"checkpoint {str(checkpoint)!r} is not in a run directory (<run>/checkpoints/iter_N), "
                            f"so its run's config cannot be found; allowed: retrain with `python -m experiments.train`")
        setup = setup_from_run_config(resolved.parent.parent, legacy_setup(checkpoint))
        written.append(upgrade(checkpoint, setup))
    return written


def first_difference(a: Any, b: Any, path: str = "setup") -> str | None:
    """The key path of the first difference between two values of specs (dataclasses, mappings, sequences,
    numpy arrays), or None when they are equal."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        if type(a).__name__ != type(b).__name__:
            return f"{path} ({type(a).__name__} vs {type(b).__name__})"
        for f in dataclasses.fields(b):
            if f.compare:
                found = first_difference(getattr(a, f.name, _MISSING), getattr(b, f.name, _MISSING),
                                         f"{path}.{f.name}")
                if found is not None:
                    return found
        return None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            return f"{path} (keys {sorted(map(str, set(a) ^ set(b)))})"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{path}.{k}")) is not None), None)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        same = np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
        return None if same else path
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        return next((d for i, (x, y) in enumerate(zip(a, b))
                     if (d := first_difference(x, y, f"{path}[{i}]")) is not None), None)
    return None if a == b else path


_MISSING = object()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.rl.checkpoint", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upgrade", help=f"write {SETUP_FILE} for checkpoints that have only {LEGACY_SETUP_FILE}")
    up.add_argument("paths", nargs="+", type=Path, help="checkpoint directories or run directories")
    args = parser.parse_args(argv)
    try:
        for path in args.paths:
            written = upgrade_run_or_checkpoint(path)
            for file in written:
                print(f"wrote {file}")
            if not written:
                print(f"{path}: nothing to convert (already {SETUP_FILE})")
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
