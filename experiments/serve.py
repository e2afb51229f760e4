"""Serve a bundle's decisions over authenticated HTTP (agents/deploy/service.py).

    python -m agents.deploy.auth add-client --clients ~/.config/supplychain-twin/clients.json --id erp
    python -m experiments.serve bundle=outputs/export/RUN/bundle
    python -m experiments.serve bundle=outputs/export/RUN/bundle port=8080 workers=2 audit_url=postgresql://...

Everything is checked before the port opens (conf/serve.yaml: the keys, the clients file, the signing key, the
bundle with its self-check, the audit database): a problem is one `config error:` line and exit status 2.
The start-up log names the bundle and its hash and the URL; never a secret (nor the audit URL's password).
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import hydra
import sqlalchemy as sa
import yaml
from hydra.utils import to_absolute_path
from omegaconf import DictConfig
from pydantic import ValidationError

from agents.deploy.service import check, serve
from agents.deploy.settings import ServiceSettings
from experiments.startup import CONF_DIR, config_errors, plain, run_checked, stop
from twin.config import ConfigReader, SpecError

log = logging.getLogger("experiments.serve")

SERVER_KEYS = ("host", "port", "workers", "access_log", "log_level")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
OVERRIDE = re.compile(r"([A-Za-z_][\w.]*)=")


def unknown_key(overrides: list[str], conf_file: Path = CONF_DIR / "serve.yaml") -> str | None:
    """A message for a `key=value` override naming a key conf/serve.yaml lacks (Hydra's own error exits with
    status 1), else None."""
    known = set(yaml.safe_load(conf_file.read_text())) - {"defaults"}
    for item in overrides:
        match = OVERRIDE.match(item)
        if match and match.group(1).split(".")[0] not in known:
            return f"{match.group(1)}: unknown key; allowed: {', '.join(sorted(known - {'hydra'}))}"
    return None


def _path(value: str) -> str:
    return to_absolute_path(str(Path(value).expanduser()))


def _audit_url(url: str) -> str:
    """The URL with a relative SQLite file made absolute (every worker opens the same file) and its folder made."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise SpecError(f"audit_url: {url!r} is not a SQLAlchemy URL; allowed: e.g. sqlite:///audit.sqlite, "
                        f"postgresql://user@host/db") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(_path(parsed.database))
        path.parent.mkdir(parents=True, exist_ok=True)
        return parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def load_serve_config(data: dict[str, Any]) -> tuple[ServiceSettings, dict[str, Any]]:
    """The service settings and the server's (host, port, workers, access_log, log_level), checked: SpecError
    naming the key."""
    r = ConfigReader(data, "")
    server = {"host": r.text("host"), "port": r.integer("port", low=1, high=65535),
              "workers": r.integer("workers", low=1, high=64), "access_log": r.flag("access_log", False),
              "log_level": r.choice("log_level", LOG_LEVELS, "info")}
    fields = {name: r.raw(name) for name in ServiceSettings.model_fields}
    r.done()
    if fields["bundle"] is None:
        raise SpecError("bundle: required; allowed: a bundle directory or bundle.zip of experiments.export "
                        "(bundle=PATH)")
    for name in ("bundle", "clients_file", "key_file", "bundles_dir"):
        if isinstance(fields[name], str):
            fields[name] = _path(fields[name])
    if isinstance(fields["reload_roots"], str):  # one folder: reload_roots=DIR
        fields["reload_roots"] = [fields["reload_roots"]]
    if isinstance(fields["reload_roots"], list):
        fields["reload_roots"] = [_path(r) if isinstance(r, str) else r for r in fields["reload_roots"]]
    if isinstance(fields["audit_url"], str):
        fields["audit_url"] = _audit_url(fields["audit_url"])
    try:
        settings = ServiceSettings(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        raise SpecError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return settings, server


@hydra.main(config_path="../conf", config_name="serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Check the settings, the clients, the key, the bundle and the database; then serve until interrupted."""
    with config_errors():
        settings, server = load_serve_config(plain(cfg))
        served = check(settings)
    url = f"http://{server['host']}:{server['port']}"
    log.info("bundle %s (sha256 %s) from %s", served.bundle.name, served.bundle.sha256, served.path)
    log.info("bundle uploads unpack into %s; path reloads within %s", settings.bundles_path(),
             ", ".join(str(r) for r in settings.reload_root_paths()))
    log.info("serving on %s with %d worker(s); OpenAPI at %s/docs (with a token); audit %s", url, server["workers"],
             url,
             sa.make_url(settings.audit_url).render_as_string(hide_password=True))
    if server["host"] not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening beyond loopback on %s: put a TLS-terminating proxy in front", server["host"])
    serve(settings, **server)


if __name__ == "__main__":
    message = unknown_key(sys.argv[1:])
    if message:
        stop(message)
    run_checked(main)
