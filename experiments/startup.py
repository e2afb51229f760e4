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
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from twin.config import SpecError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
EXIT_CONFIG_ERROR = 2


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain, resolved containers (what the ConfigReaders read)."""
    return OmegaConf.to_container(cfg, resolve=True)


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


def run_checked(hydra_main) -> None:
    """Run a Hydra entry point after checking its `group=option` overrides (one-line error, exit status 2)."""
    message = unknown_choice(sys.argv[1:])
    if message:
        stop(message)
    hydra_main()


def run_dir() -> Path:
    """The Hydra run directory of this job (created by the caller when it writes)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
