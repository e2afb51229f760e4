"""The decision service's settings, and how they travel to worker processes (JSON in an environment variable).

`experiments.serve` builds them from conf/serve.yaml; `agents.deploy.service.app_from_env` reads them back in
each uvicorn worker. They hold no secret: the signing key stays in its environment variable or key file.
"""

from __future__ import annotations

import os

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
