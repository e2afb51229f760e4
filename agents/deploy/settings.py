"""The decision service's settings, and how they travel to worker processes (JSON in an environment variable).

`experiments.serve` builds them from conf/serve.yaml; `agents.deploy.service.app_from_env` reads them back in
each uvicorn worker. They hold no secret: the signing key stays in its environment variable or key file.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

ENV_VAR = "SUPPLYCHAIN_TWIN_SERVICE"          # the settings as JSON, for workers
KEY_ENV_VAR = "SUPPLYCHAIN_TWIN_SIGNING_KEY"  # the default place of the token signing key


class ServiceSettings(BaseModel):
    """What one decision service needs: the bundle, who may call it, the limits, the audit database."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bundle: str = Field(description="the bundle directory served at start")
    clients_file: str = Field(description="the clients JSON file (python -m agents.deploy.auth add-client)")
    key_env: str | None = Field(KEY_ENV_VAR, description="environment variable holding the token signing key")
    key_file: str | None = Field(None, description="the signing key file when key_env is unset (made if missing)")
    token_minutes: float = Field(15.0, gt=0, le=24 * 60, description="lifetime of a bearer token (minutes)")
    rate_limit: float = Field(100.0, gt=0, description="requests per second per client, on average")
    burst: int = Field(200, ge=1, description="requests a client may send at once above the rate")
    token_requests_per_minute: float = Field(
        10.0, gt=0, description="token requests per client id per minute (slows secret guessing)")
    audit_url: str = Field("sqlite:///audit.sqlite", min_length=1, description="SQLAlchemy URL of the audit DB")
    max_body_bytes: int = Field(8 * 2**20, ge=1024, description="the largest request body accepted (bytes)")
    reload_check_seconds: float = Field(
        1.0, gt=0, le=60, description="how often a worker looks for a bundle published by an admin")
    bundles_dir: str | None = Field(
        None, description="where uploaded bundles are unpacked, one folder per zip (its sha256), which path "
                          "reloads may also point into; default: `bundles` beside a SQLite audit database, else "
                          "./bundles")
    max_bundle_bytes: int = Field(200 * 2**20, ge=1024, description="the largest bundle.zip an admin may upload "
                                                                    "(bytes); max_body_bytes does not apply to it")
    reload_roots: tuple[str, ...] | None = Field(
        None, description="the folders (besides bundles_dir) a path reload may point into, symlinks resolved; "
                          "default: the folder holding the bundle served at start")

    def bundles_path(self) -> Path:
        """`bundles_dir`, absolute (a relative one from the working directory), or its default."""
        if self.bundles_dir is not None:
            return Path(self.bundles_dir).expanduser().absolute()
        url = sa.make_url(self.audit_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return Path(url.database).expanduser().absolute().parent / "bundles"
        return Path("bundles").absolute()

    def reload_root_paths(self) -> tuple[Path, ...]:
        """The folders a path reload may point into, resolved (symlinks followed): bundles_dir, then
        `reload_roots` or else the folder holding the start bundle."""
        roots = self.reload_roots if self.reload_roots is not None else (str(Path(self.bundle).expanduser()
                                                                              .resolve().parent),)
        out = []
        for root in (self.bundles_path(), *(Path(r).expanduser() for r in roots)):
            resolved = root.resolve()
            if resolved not in out:
                out.append(resolved)
        return tuple(out)


def settings_to_env(settings: ServiceSettings, environ: dict[str, str] | None = None) -> None:
    """Put the settings where `settings_from_env` finds them (os.environ by default), for worker processes."""
    (os.environ if environ is None else environ)[ENV_VAR] = settings.model_dump_json()


def settings_from_env() -> ServiceSettings:
    """The settings a launcher put in the environment (KeyError naming the variable if there are none)."""
    try:
        data = os.environ[ENV_VAR]
    except KeyError:
        raise KeyError(f"{ENV_VAR} is not set: start workers with experiments.serve or "
                       f"agents.deploy.service.serve") from None
    return ServiceSettings.model_validate_json(data)
