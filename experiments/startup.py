"""The start-up every Hydra entry point shares: checked group options, plain containers, one-line config errors.

    @hydra.main(config_path="../conf", config_name="config", version_base="1.3")
    def main(cfg):
        with config_errors():
            config = load_config(plain(cfg))
        out = run_dir()
        ...

    if __name__ == "__main__":
        run_checked(main)

A bad value never reaches a traceback: `config_errors` turns a `SpecError` into
one line `config error: KEY: ...` on stderr and exit status 2, before any file is
written; `run_checked` does the same for a `group=option` override naming an
option that conf/<group>/ lacks (Hydra's own error exits with status 1).

`run_checked` also lets a scenario file stand where a scenario name does:
`scenario=path/to/file.yaml` (any value ending in .yaml or .yml) is rewritten, before
Hydra reads the command line, to `scenario=file scenario.path=path/to/file.yaml`
(conf/scenario/file.yaml; scenarios/files.py reads the file), and a sweep
`-m scenario=a.yaml,b.yaml` to a sweep of `scenario.path`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from scenarios import Scenario
from scenarios.files import scenario_yaml
from twin.config import SpecError
from twin.network_files import expand_network_path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
EXIT_CONFIG_ERROR = 2


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain, resolved containers (what the ConfigReaders read); a network given by
    `network.path` (network=file) is read from its files here, so the run records the network itself."""
    with config_errors():
        return expand_network_path(OmegaConf.to_container(cfg, resolve=True))


def stop(message: str, kind: str = "config") -> NoReturn:
    """Print `KIND error: MESSAGE` as one line on stderr and exit with status 2."""
    print(f"{kind} error: {message}", file=sys.stderr)
    sys.exit(EXIT_CONFIG_ERROR)


@contextmanager
def config_errors() -> Iterator[None]:
    """Inside the block, a SpecError stops the run with one `config error: ...` line and exit status 2."""
    try:
        yield
    except SpecError as error:
        stop(str(error))


def unknown_choice(overrides: Sequence[str], conf_dir: Path = CONF_DIR) -> str | None:
    """A message for a `group=option` override naming an option that conf/<group>/ lacks (Hydra's own error
    exits with status 1 and a traceback hint; this one is one line, like every other config error)."""
    groups = {p.name for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra"}
    for item in overrides:
        group, sep, value = item.partition("=")
        if not sep or group not in groups or any(c in value for c in "()[]*$"):
            continue
        allowed = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for option in value.split(","):
            if option.strip() not in allowed:
                return f"{group}: {option.strip()!r} is not allowed; allowed: {', '.join(allowed)}"
    return None


SCENARIO_FILE_SUFFIXES = (".yaml", ".yml")


def scenario_file_overrides(overrides: Sequence[str]) -> list[str]:
    """The command line with `scenario=FILE.yaml` (or a comma-separated sweep of files) rewritten to
    `scenario=file scenario.path=FILE.yaml`, the config option that reads a scenario file; a SpecError if a
    sweep mixes files and scenario names. A value that is an existing file is one file, commas and all.
    Other overrides are kept as they are."""
    rewritten = []
    for item in overrides:
        group, sep, value = item.partition("=")
        if group != "scenario" or not sep:  # only scenario= may name files (another value may be no path at all)
            rewritten.append(item)
            continue
        # os.path.isfile, not Path.is_file: a value too long for a file name is no file, not an OSError
        files = [value] if os.path.isfile(value) else [v.strip() for v in value.split(",")]  # a sweep: a,b
        is_file = [v.lower().endswith(SCENARIO_FILE_SUFFIXES) for v in files]
        if not any(is_file):
            rewritten.append(item)
            continue
        if not all(is_file):
            raise SpecError(f"scenario: {value!r} mixes scenario files and scenario names; allowed: names of "
                            f"conf/scenario, or scenario files (FILE.yaml), in one sweep")
        rewritten += ["scenario=file", "scenario.path=" + ",".join(_quoted(f) for f in files)]
    return rewritten


def _quoted(value: str) -> str:
    """A value quoted for Hydra's override grammar (a path may hold characters the grammar reserves): a quote is
    escaped, and so are the backslashes before a quote or at the end (Hydra reads other backslashes as such)."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + "'"


def run_checked(hydra_main) -> None:
    """Run a Hydra entry point after rewriting `scenario=FILE.yaml` and checking its `group=option` overrides
    (one-line error, exit status 2)."""
    with config_errors():
        sys.argv[1:] = scenario_file_overrides(sys.argv[1:])
    message = unknown_choice(sys.argv[1:])
    if message:
        stop(message)
    hydra_main()


def write_scenario(out: Path, scenario: Scenario, command: str, network: str, horizon: int,
                   filename: str = "scenario.yaml") -> Path:
    """Write the run's scenario as run (a scenario file: day numbers and dates) to OUT/FILENAME (scenario.yaml),
    headed by the `command` that ran it."""
    path = out / filename
    path.write_text(scenario_yaml(scenario, f"scenario of: {command}\non network {network}, {horizon} days"))
    return path


def run_dir() -> Path:
    """The Hydra run directory of this job (created by the caller when it writes)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
