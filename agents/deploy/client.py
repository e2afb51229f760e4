"""A client of the decision service, and the service as a twin policy (the shadow run of sim-to-serve parity).

    client = ServiceClient("http://127.0.0.1:8000", client_id, client_secret)
    response = client.decide(state)                  # POST /v1/decisions with a bearer token (fetched, renewed)

    policy = ServicePolicy(client, network)          # Engine.run(policy): every decision answered by the service

`ServicePolicy` converts each snapshot of the twin run to the ERP state format (`snapshot_to_state`, with the
forecast the service's bundle decides from, made inside the twin by the forecaster its manifest names) and orders
what the service answers. Its KPIs equal those of the same bundle run in process (`Bundle.twin_policy`) on the
same seeds: what the service decides is what the twin validated.

Credentials come from the caller, or from the environment variables CLIENT_ID_ENV and CLIENT_SECRET_ENV (for
`experiments.evaluate 'policies=[service:URL]'`); they are never logged.
"""

from __future__ import annotations

import os
import time

import httpx
import numpy as np

from agents.deploy.conversion import snapshot_to_state
from agents.deploy.decide import DecisionResponse
from agents.deploy.erp_state import ErpState
from agents.envs.actions import ACTION_KINDS
from agents.forecasting.live import LiveForecaster, forecast_over_protection
from twin.config import SpecError
from twin.engine import Engine
from twin.snapshot import Snapshot
from twin.spec import NetworkSpec

CLIENT_ID_ENV = "SUPPLYCHAIN_TWIN_CLIENT_ID"
CLIENT_SECRET_ENV = "SUPPLYCHAIN_TWIN_CLIENT_SECRET"
RENEW_SECONDS = 30.0  # fetch a new token this long before the old one expires


class ServiceError(SpecError):
    """The service refused a request or could not be reached; the message has its status and detail."""


class ServiceClient:
    """OAuth2 client-credentials client of the decision service (one keep-alive connection pool)."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, *, scope: str = "decide",
                 timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._id, self._secret, self._scope = client_id, client_secret, scope
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None
        self._expires = 0.0

    @classmethod
    def from_env(cls, base_url: str, key: str = "service") -> ServiceClient:
        """A client with the credentials of CLIENT_ID_ENV and CLIENT_SECRET_ENV (SpecError naming `key` if unset)."""
        cid, secret = os.environ.get(CLIENT_ID_ENV), os.environ.get(CLIENT_SECRET_ENV)
        if not cid or not secret:
            raise SpecError(f"{key}: set the environment variables {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} to a "
                            f"client of the service with scope decide (python -m agents.deploy.auth add-client)")
        return cls(base_url, cid, secret)

    def close(self) -> None:
        self._http.close()

    def token(self) -> str:
        """A valid bearer token (fetched again shortly before it expires)."""
        if self._token is None or time.monotonic() > self._expires - RENEW_SECONDS:
            reply = self._send("POST", "/v1/token", data={"grant_type": "client_credentials", "scope": self._scope},
                               auth=(self._id, self._secret))
            body = reply.json()
            self._token, self._expires = body["access_token"], time.monotonic() + float(body["expires_in"])
        return self._token

    def model(self) -> dict:
        """GET /v1/model: the served bundle's name, hash and manifest."""
        return self._send("GET", "/v1/model", headers=self._bearer()).json()

    def decide(self, state: ErpState) -> DecisionResponse:
        """POST /v1/decisions for `state` (ServiceError with the service's detail if it refuses)."""
        reply = self._send("POST", "/v1/decisions", content=state.model_dump_json(),
                           headers={**self._bearer(), "Content-Type": "application/json"})
        return DecisionResponse.model_validate_json(reply.content)

    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            reply = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ServiceError(f"service {self.base_url}{path}: {type(error).__name__}: {error}") from error
        if reply.status_code >= 400:
            raise ServiceError(f"service {self.base_url}{path}: HTTP {reply.status_code}: {reply.text[:500]}")
        return reply


class ServicePolicy:
    """The decision service as a twin OrderPolicy: each decision point is sent as an ERP state, its answer ordered.

    `forecaster` forecasts inside the twin for bundles that decide from a forecast (default: the one the
    served manifest names); the orders are the documents' policy quantities before any pack rounding (a twin
    state has no pack sizes, so they are the quantities ordered).
    """

    needs_snapshot = True

    def __init__(self, client: ServiceClient, network: NetworkSpec, forecaster: LiveForecaster | None = None,
                 name: str | None = None) -> None:
        info = client.model()
        manifest = info["manifest"]
        if manifest["nodes"] != [n.name for n in network.nodes] or manifest["skus"] != list(network.skus.name):
            raise SpecError(f"service {client.base_url}: its bundle {info['name']!r} serves network "
                            f"{manifest['network_name']!r}, not the evaluated network {network.name!r}; allowed: "
                            f"the bundle's network")
        if forecaster is None and manifest.get("forecaster"):
            from agents.forecasting.live import forecaster_from_name
            forecaster = forecaster_from_name(manifest["forecaster"])
        self.client, self.network, self.forecaster = client, network, forecaster
        self.review_period = int(manifest.get("review_period", 1))
        action = manifest.get("action") or {}
        kind = action.get("kind")
        self.with_spread = manifest.get("rule") == "forecast_base_stock" or (
            kind in ACTION_KINDS.names and ACTION_KINDS[kind].needs_spread)
        self.name = name or f"service:{info['name']}"
        self.bundle_sha256 = info["sha256"]
        self._index = {(n.name, s): (i, k) for i, n in enumerate(network.nodes) for k, s in
                       enumerate(network.skus.name)}

    def attach(self, engine: Engine) -> None:
        """Decide for `engine` (its forecaster sees that run's demand)."""
        if self.forecaster is not None:
            self.forecaster.attach(engine)

    def act(self, state: Snapshot) -> np.ndarray:
        forecast = None
        if self.forecaster is not None:
            forecast = forecast_over_protection(state, self.forecaster, self.review_period,
                                                with_spread=self.with_spread)
        response = self.client.decide(snapshot_to_state(state, self.network, forecast,
                                                        review_period=self.review_period))
        orders = np.zeros(state.on_hand.shape)
        for decision in response.decisions:
            orders[self._index[(decision.location, decision.sku)]] = decision.policy_quantity
        return orders
