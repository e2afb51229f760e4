"""The decision service: a bundle's replenishment decisions for ERP state, over authenticated HTTP (FastAPI).

    POST /v1/token              OAuth2 client credentials (form fields or HTTP Basic) -> a bearer token
    POST /v1/decisions          ErpState JSON -> decisions (JSON; CSV with ?format=csv or Accept: text/csv)  decide
    GET  /v1/model              the served bundle's manifest                                     decide or admin
    GET  /v1/schema/erp-state   the JSON Schema of the request body                              decide or admin
    GET  /metrics               Prometheus metrics                                               decide or admin
    POST /v1/admin/bundle       {"path": DIR}: check a bundle and serve it, in every worker      admin
    PUT  /v1/admin/bundle       a bundle.zip body: unpack into bundles_dir, check, serve it      admin
    GET  /openapi.json          the OpenAPI schema                                               decide or admin
    GET  /docs                  Swagger UI with the OpenAPI schema inline (one authorised GET)   decide or admin
    GET  /v1/health             liveness and the audit database's readiness                     no token

Every decision is appended to the audit database; the same request sent again gets the stored answer and
writes nothing (agents/deploy/audit.py). Errors a client causes are 4xx with a message naming the field or
the limit: 401 (no valid token), 403 (scope), 422 (validation, `{"detail": [{"loc": ..., "msg": ...}]}`; a body
over the size limit too: loc `body`, msg naming max_body_bytes or max_bundle_bytes), 429 (rate, with
Retry-After). A 500 is a bug: it is logged with its traceback. There is no /redoc or /docs/oauth2-redirect.

`create_app(settings)` builds one app (one worker). `serve(settings, host, port, workers)` checks everything
first, then runs uvicorn with `workers` processes behind one port; each builds its app with `app_from_env`
from the settings in an environment variable. The app keeps no state but the audit database (tokens are
signed, not stored; rate limits are per worker), which is also how a bundle reload reaches every worker.
"""

# no `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at runtime, and the
# endpoints (defined inside create_app) name objects that only exist there

import base64
import binascii
import gc
import hashlib
import html
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus

from anyio import CapacityLimiter, to_thread
from fastapi import Depends, FastAPI, Form, Query, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import OAuth2
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from agents.deploy.audit import AuditLog, AuditRecord
from agents.deploy.auth import CLIENT_ID, AuthError, ClientStore, Principal, TokenIssuer, grant, require, signing_key
from agents.deploy.batching import Batcher
from agents.deploy.bodylimit import BodyLimitMiddleware
from agents.deploy.bundle import BundleError
from agents.deploy.conversion import ErpStateError, error_fields
from agents.deploy.decide import DecisionResponse, decide_many, decisions_csv
from agents.deploy.erp_state import ErpState, erp_state_schema, format_loc
from agents.deploy.metrics import MetricsMiddleware, ServiceMetrics
from agents.deploy.ratelimit import RateLimiter, retry_after
from agents.deploy.reload import UPLOAD_PREFIX, BundleSlot, OutsideRoots, Served, checked_bundle, confined
from agents.deploy.settings import ServiceSettings, settings_from_env, settings_to_env
from twin.config import SpecError

log = logging.getLogger("agents.deploy.service")

API_VERSION = "1"
MAX_SECRET_CHARS = 256  # longer client secrets are refused before hashing (ours are 43)
TOKEN_HASHES_PER_SECOND = 5  # token requests per second per worker, all clients together (argon2 each) ...
TOKEN_HASH_BURST = 20        # ... and at once
REQUEST_THREADS = 1     # threads running sync endpoints per worker: more only contend for the GIL
AUDIT_CHECKPOINT_SECONDS = 1.0  # the audit's WAL copied into the database this often, off the answers' path
MAX_BATCH = 64          # decisions requests answered together at most (those queued while the last were answered)
MAX_BATCH_ITEMS = 2_500  # ... and (location, SKU) items: 50 store requests of 50 SKUs, or 5 DC requests of 500
LAUNCHER = "service start"
BUNDLE_ROUTE = "/v1/admin/bundle"  # POST a path to reload, PUT a bundle.zip to upload


# ------------------------------------------------------------------ models at the HTTP boundary


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldProblem(_Model):
    """One problem of a request: the field (`locations[0].items[3].on_hand`) and what is wrong with it."""

    loc: str
    msg: str


class Unprocessable(_Model):
    """422: the request is well-formed HTTP but its content is refused."""

    detail: list[FieldProblem]


class Problem(_Model):
    """An error answer with one message (401, 403, 429, 500)."""

    detail: str


class TokenResponse(_Model):
    """A bearer token (RFC 6749, section 5.1)."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="seconds the token stays valid")
    scope: str = Field(description="the scopes granted, space-separated")


class OAuthProblem(_Model):
    """A token request refused (RFC 6749, section 5.2)."""

    error: Literal["invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope"]
    error_description: str


class BundleReload(_Model):
    """An admin's request to serve another bundle."""

    path: str = Field(min_length=1, max_length=4096, description="the bundle directory (or bundle.zip) on the server, "
                                                                 "inside bundles_dir or a reload root")


class BundleSwap(_Model):
    """The bundle served now, and the one it replaced."""

    name: str
    sha256: str
    previous_name: str
    previous_sha256: str
    path: str = Field(description="the bundle served, on the server (an upload's: bundles_dir/<sha256 of the zip>)")


class ModelInfo(_Model):
    """The bundle served."""

    name: str
    sha256: str
    manifest: dict[str, Any]


class Health(_Model):
    """Liveness: this worker is up and (status "ok") its audit database answers."""

    status: Literal["ok", "unavailable"]
    worker: int = Field(description="the process id of the worker that answered")


@dataclass(frozen=True)
class DecisionJob:
    """A decisions request waiting for the batcher: the parsed state, who asked, and CSV or JSON."""

    state: ErpState
    client_id: str
    csv: bool


class RateLimited(Exception):
    """Over the rate limit; `seconds` until the next request is allowed."""

    def __init__(self, seconds: float, what: str) -> None:
        super().__init__(what)
        self.seconds, self.what = seconds, what


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {401: (Problem, "no valid bearer token"), 403: (Problem, "the token lacks the scope"),
                 422: (Unprocessable, "a field refused, named in loc (loc `body`: over max_body_bytes, or "
                                      "max_bundle_bytes for a bundle upload)"),
                 429: (Problem, "over the client's rate limit; see Retry-After")}
    return {code: {"model": described[code][0], "description": described[code][1]} for code in codes}


# ------------------------------------------------------------------ the app


def _initial_bundle(settings: ServiceSettings, audit: AuditLog) -> Served:
    """The bundle a new worker starts with: the published one (a launcher or an admin set it), else the
    settings' (then published)."""
    active = audit.active()
    if active is not None:
        try:
            bundle = checked_bundle(active.path)
            if bundle.sha256 == active.sha256:
                return Served(bundle, active.path)
            log.error("published bundle %s hashes to %s, not %s; starting with %s", active.path, bundle.sha256,
                      active.sha256, settings.bundle)
        except BundleError as error:
            log.error("published bundle refused (%s); starting with %s", error, settings.bundle)
    bundle = checked_bundle(settings.bundle)
    if active is None:
        audit.publish_bundle(settings.bundle, bundle.sha256, LAUNCHER)
    return Served(bundle, settings.bundle)


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _unprocessable(problems: Iterable[tuple[str, str]]) -> JSONResponse:
    """422 with one `{"loc": FIELD, "msg": WHY}` per problem (an empty field: the body as a whole)."""
    return JSONResponse({"detail": [{"loc": loc or "body", "msg": msg} for loc, msg in problems]}, status_code=422)


def _validation_problems(error: RequestValidationError) -> list[tuple[str, str]]:
    """(field, message) of FastAPI's validation errors; a body field's path without the leading `body`."""
    out = []
    for e in error.errors():
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            out.append(("body", f"malformed JSON: {e.get('ctx', {}).get('error', e['msg'])}{where}"))
        else:
            out.append((format_loc(loc[1:] if loc[:1] == ("body",) else loc), e["msg"]))
    return out


def _body_problems(error: ValidationError) -> list[tuple[str, str]]:
    """(field, message) of the request body's validation errors: malformed JSON and a body that is no object
    are the `body`'s; anything else names its field."""
    out = []
    for e in error.errors():
        if e.get("type") == "json_invalid":
            out.append(("body", f"malformed JSON: {e.get('ctx', {}).get('error', e['msg'])}"))
        else:
            out.append((format_loc(e.get("loc", ())) or "body", e["msg"]))
    return out


def with_erp_state_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI `schema` with the ERP state's models among its components (the decisions endpoint reads its
    body itself, so FastAPI does not add them)."""
    state = ErpState.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in {**state.pop("$defs", {}), "ErpState": state}.items():
        if components.setdefault(name, model) != model:
            raise ValueError(f"OpenAPI: two models named {name!r}; allowed: one schema per name")
    return schema


SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"  # FastAPI's default assets


def _script_json(value: Any) -> str:
    """`value` as JSON safe inside an HTML <script> (no `<`, `>` or `&`; json.dumps escapes U+2028/9)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def swagger_page(title: str, schema: dict[str, Any]) -> str:
    """Swagger UI for the OpenAPI `schema`, embedded in the page (`spec`, not a `url` the browser would fetch
    without the token): one authorised GET of /docs gives a working page. "Authorize" there gets a token by
    client credentials (POST /v1/token) for trying the operations."""
    return f"""<!DOCTYPE html>
<html>
<head>
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link type="text/css" rel="stylesheet" href="{SWAGGER_UI}swagger-ui.css">
<title>{html.escape(title)}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER_UI}swagger-ui-bundle.js"></script>
<script>
const ui = SwaggerUIBundle({{
    spec: {_script_json(schema)},
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
}})
</script>
</body>
</html>
"""


def _wants_csv(output: str | None, accept: str) -> bool:
    """CSV if asked by ?format=csv, or by an Accept header that ranks text/csv above JSON."""
    if output is not None:
        return output == "csv"
    weights = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    csv_q = weights.get("text/csv", 0.0)
    json_q = max(weights.get("application/json", 0.0), weights.get("application/*", 0.0), weights.get("*/*", 0.0))
    return csv_q > json_q


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(client id, secret) of an HTTP Basic header (each form-urlencoded, RFC 6749 section 2.3.1), else None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("the Basic credentials are not base64 of client_id:client_secret") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise ValueError("the Basic credentials are not client_id:client_secret")
    return unquote_plus(client_id), unquote_plus(secret)


def _oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def create_app(settings: ServiceSettings) -> FastAPI:
    """The decision service for `settings` (one worker). Raises SpecError or BundleError on a bad setting or
    bundle."""
    clients = ClientStore(settings.clients_file)
    issuer = TokenIssuer(signing_key(settings.key_env, settings.key_file), round(settings.token_minutes * 60))
    audit = AuditLog(settings.audit_url, checkpoint_seconds=AUDIT_CHECKPOINT_SECONDS)
    slot = BundleSlot(_initial_bundle(settings, audit), audit, settings.reload_check_seconds)
    limiter = RateLimiter(settings.rate_limit, settings.burst)
    token_limiter = RateLimiter(settings.token_requests_per_minute / 60.0, max(1.0, settings.token_requests_per_minute))
    # every token request costs an argon2 hash (~0.1 s), even for an unknown id: all of them together are capped
    # per worker, and they hash on a thread of their own, so guessing secrets never stalls decisions
    all_token_requests = RateLimiter(TOKEN_HASHES_PER_SECOND, TOKEN_HASH_BURST)
    hashing = CapacityLimiter(1)
    metrics = ServiceMetrics()
    metrics.serving(slot.current.bundle.name, slot.current.bundle.sha256)
    log.info("worker %d serves bundle %s (sha256 %s)", os.getpid(), slot.current.bundle.name,
             slot.current.bundle.sha256)
    slot.on_swap = lambda new, old: metrics.serving(new.bundle.name, new.bundle.sha256,
                                                    (old.bundle.name, old.bundle.sha256))
    bundles_dir = settings.bundles_path()  # uploads are unpacked here
    bundles_dir.mkdir(parents=True, exist_ok=True)
    reload_roots = settings.reload_root_paths()  # a path reload must lie in one of these
    admin_thread = CapacityLimiter(1)  # unpacking and checking a bundle: never on the decisions' thread

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # sync endpoints run in anyio's thread pool (40 threads by default): under load they only contend for
        # the GIL; REQUEST_THREADS cut CPU per request and memory (bench --serve --profile); scale with workers
        to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        slot.start()
        batcher.start()
        # the bundle, the app and the libraries loaded so far are long-lived: out of the collector's sight, a
        # full collection no longer walks them (it paused every ~100th request ~50 ms: open-loop p99 66 -> 16 ms)
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            batcher.stop()
            slot.stop()
            audit.close()

    # FastAPI's own /docs, /redoc and /openapi.json need no token: off; /docs and /openapi.json are endpoints
    # below, behind a token like every other (the schema is still built by app.openapi)
    app = FastAPI(title="Replenishment decision service", version=API_VERSION, lifespan=lifespan,
                  description=__doc__.split("\n\n")[0], docs_url=None, redoc_url=None, openapi_url=None)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_erp_state_schema(default_openapi())
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       streamed={("PUT", BUNDLE_ROUTE): (settings.max_bundle_bytes, "max_bundle_bytes")})
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost, so it sees size 422s too

    oauth2 = OAuth2(flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(
        tokenUrl="/v1/token", scopes={"decide": "ask for decisions", "admin": "reload the bundle"})),
        auto_error=False, description="OAuth2 client credentials: POST /v1/token, then `Authorization: Bearer`")

    def caller(*scopes: str):
        """A dependency: the caller's token checked (401), then its rate (429), then its scope (403)."""
        # async: a few microseconds of work (the token's claims are kept once checked), not worth a thread hop
        async def dependency(authorization: Annotated[str | None, Security(oauth2, scopes=list(scopes))]
                             ) -> Principal:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError(401, "a bearer token is required: POST /v1/token, then send "
                                     "`Authorization: Bearer TOKEN`")
            principal = issuer.verify(token.strip(), clients)
            wait = limiter.acquire(principal.client_id)
            if wait is not None:
                raise RateLimited(wait, f"client {principal.client_id!r} is over {settings.rate_limit:g} "
                                        f"requests per second (burst {settings.burst})")
            require(principal, *scopes)
            return principal
        return dependency

    # -------------------------------------------------------------- errors

    @app.exception_handler(AuthError)
    async def _auth_error(_request: Request, error: AuthError) -> JSONResponse:
        challenge = 'Bearer realm="decisions"'  # RFC 6750, section 3
        if error.code:
            challenge += f', error="{error.code}"' + (f', scope="{error.scope}"' if error.scope else "")
        return _problem(error.status, error.message, {"WWW-Authenticate": challenge})

    @app.exception_handler(RateLimited)
    async def _rate_limited(_request: Request, error: RateLimited) -> JSONResponse:
        after = retry_after(error.seconds)
        return _problem(429, f"{error.what}; retry after {after} s", {"Retry-After": after})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return _unprocessable(_validation_problems(error))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        # FastAPI answers 400 for a JSON body it cannot decode (not UTF-8): malformed JSON, so 422 like the rest
        if error.status_code == 400 and isinstance(error.__cause__, ValueError):
            return _unprocessable([("body", f"malformed JSON: the body is not UTF-8 text ({error.__cause__})")])
        if error.status_code == 405:  # starlette's Allow names the first route of the path only (POST, PUT bundle)
            methods = {m for r in app.routes if getattr(r, "path_regex", None) is not None
                       and r.path_regex.match(request.url.path) for m in getattr(r, "methods", None) or ()}
            return _problem(405, "Method Not Allowed", {"Allow": ", ".join(sorted(methods))})
        return await http_exception_handler(request, error)

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return _problem(500, "internal error (logged); the request may be retried")

    # -------------------------------------------------------------- endpoints

    @app.post("/v1/token", response_model=TokenResponse, tags=["auth"],
              responses={400: {"model": OAuthProblem}, 401: {"model": OAuthProblem}, **_responses(422, 429)})
    async def token(request: Request,
              grant_type: Annotated[str | None, Form(description="client_credentials")] = None,
              client_id: Annotated[str | None, Form()] = None,
              client_secret: Annotated[str | None, Form()] = None,
              scope: Annotated[str | None, Form(description="space-separated; default: all the client's")] = None,
              ) -> JSONResponse:
        """OAuth2 client credentials grant: a signed bearer token valid for `token_minutes`.
        Authenticate with form fields client_id and client_secret, or with HTTP Basic (not both)."""
        basic_challenge = {"WWW-Authenticate": 'Basic realm="token"'}
        try:
            basic = _basic_credentials(request.headers.get("authorization", ""))
        except ValueError as error:
            return _oauth_error(401, "invalid_client", str(error), basic_challenge)
        if basic is not None and (client_id is not None or client_secret is not None):
            if client_id != basic[0] or client_secret is not None:
                return _oauth_error(400, "invalid_request", "authenticate with HTTP Basic or with the form fields "
                                                            "client_id and client_secret, not both")
        if grant_type != "client_credentials":
            return (_oauth_error(400, "invalid_request", "grant_type is required; allowed: client_credentials")
                    if grant_type is None else
                    _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type[:40]!r} is not supported; "
                                                                f"allowed: client_credentials"))
        cid, secret = basic if basic is not None else (client_id, client_secret)
        if not cid or not secret:
            return _oauth_error(401, "invalid_client", "client authentication is required: client_id and "
                                                       "client_secret (form fields or HTTP Basic)", basic_challenge)
        if not CLIENT_ID.fullmatch(cid) or len(secret) > MAX_SECRET_CHARS:
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret", basic_challenge)
        wait = token_limiter.acquire(cid)
        if wait is None:
            wait = all_token_requests.acquire("all")
        if wait is not None:
            after = retry_after(wait)
            return _problem(429, f"too many token requests; allowed: {settings.token_requests_per_minute:g} per "
                                 f"minute for client {cid!r}, {TOKEN_HASHES_PER_SECOND} per second for all clients; "
                                 f"retry after {after} s",
                            {"Retry-After": after})
        client = await to_thread.run_sync(clients.authenticate, cid, secret, limiter=hashing)
        if client is None:
            log.warning("token refused for client id %r (unknown or wrong secret)", cid)
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret", basic_challenge)
        try:
            scopes = grant(client, scope)
        except ValueError as error:
            return _oauth_error(400, "invalid_scope", str(error))
        body = TokenResponse(access_token=issuer.issue(client.id, scopes), expires_in=issuer.lifetime,
                             scope=" ".join(scopes))
        return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @app.post("/v1/decisions", tags=["decisions"], response_model=None, openapi_extra={"requestBody": {
                  "required": True, "description": "the ERP state (erp.state/1)",
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErpState"}}}}},
              responses={200: {"model": DecisionResponse, "description": "the decisions (JSON, or CSV)",
                               "content": {"text/csv": {"schema": {"type": "string"}}}},
                         **_responses(401, 403, 422, 429)})
    async def decisions(request: Request, principal: Annotated[Principal, Depends(caller("decide"))],
                        output: Annotated[Literal["json", "csv"] | None, Query(
                            alias="format", description="csv or json; default: by the Accept header, else json")]
                        = None) -> Response:
        """Decisions for every (location, SKU) of the ERP state (up to 500 SKUs per location). Each is recorded
        in the audit database; the same request again returns the stored decisions and records nothing."""
        # the body is parsed by pydantic from its JSON bytes: FastAPI's own route (json.loads, then validating
        # Python objects) took 73 ms of a 500-SKU DC request, this 20 ms (bench --serve)
        try:
            state = ErpState.model_validate_json(await request.body())
        except ValidationError as error:
            return _unprocessable(_body_problems(error))
        csv = _wants_csv(output, request.headers.get("accept", ""))
        return await batcher.submit(DecisionJob(state, principal.client_id, csv))

    def answer_all(jobs: list[DecisionJob]) -> list[Response]:
        """Decide, audit and answer the requests that queued up together (on the batcher's thread: CPU and the
        database): one decision call and one audit transaction for all of them, each answer as if alone."""
        served = slot.current  # these requests decide with this bundle, whatever a reload does meanwhile
        metrics.batch.observe(len(jobs))
        results = decide_many(served.bundle, [job.state for job in jobs])
        answers: list[Response | None] = [None] * len(jobs)
        decided, records = [], []
        for n, result in enumerate(results):
            if isinstance(result, ErpStateError):
                answers[n] = _unprocessable(error_fields(result))
            elif isinstance(result, SpecError):  # any other refusal of this state by the bundle
                answers[n] = _unprocessable([("state", str(result))])
            elif isinstance(result, Exception):  # a bug, met by this request alone: its own 500, not its batch's
                log.error("unhandled error deciding for client %s", jobs[n].client_id, exc_info=result)
                answers[n] = _problem(500, "internal error (logged); the request may be retried")
            else:
                body = result.model_dump_json().encode()  # serialised once: for the audit and for the answer
                decided.append((n, result, body))
                records.append(AuditRecord(result.request_sha256, served.bundle.sha256, jobs[n].client_id,
                                           [d.recommendation_id for d in result.decisions], body))
        for (n, response, body), (stored, written) in zip(decided, audit.record_many(records)):
            replayed = 0 if written else len(response.decisions)
            metrics.decisions.labels("new").inc(len(response.decisions) - replayed)
            metrics.decisions.labels("replayed").inc(replayed)
            headers = {"X-Decisions-Replayed": str(replayed)}
            if jobs[n].csv:
                if stored != body:  # answered before (e.g. by an earlier release): the stored decisions
                    response = DecisionResponse.model_validate_json(stored)
                answers[n] = Response(decisions_csv(response), media_type="text/csv; charset=utf-8", headers=headers)
            else:
                answers[n] = Response(stored, media_type="application/json", headers=headers)
        return answers

    batcher = Batcher(answer_all, max_batch=MAX_BATCH, name="decisions", max_weight=MAX_BATCH_ITEMS,
                      weight=lambda job: sum(len(location.items) for location in job.state.locations))

    @app.get("/v1/model", response_model=ModelInfo, tags=["model"], responses=_responses(401, 403, 429))
    def model(_principal: Annotated[Principal, Depends(caller("decide", "admin"))]) -> ModelInfo:
        """The served bundle: name, hash and manifest."""
        bundle = slot.current.bundle
        return ModelInfo(name=bundle.name, sha256=bundle.sha256, manifest=bundle.manifest_dict())

    @app.get("/v1/schema/erp-state", tags=["model"], responses=_responses(401, 403, 429))
    def schema(_principal: Annotated[Principal, Depends(caller("decide", "admin"))]) -> dict[str, Any]:
        """The JSON Schema of the body of POST /v1/decisions."""
        return erp_state_schema()

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **_responses(401, 403, 429)})
    def prometheus(_principal: Annotated[Principal, Depends(caller("decide", "admin"))]) -> Response:
        """Prometheus metrics: requests by endpoint and status, latency, decisions, the bundle served."""
        return Response(metrics.exposition(), media_type=metrics.content_type)

    documentation: dict[str, bytes] = {}  # built once, on the first request: the schema never changes

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(_principal: Annotated[Principal, Depends(caller("decide", "admin"))]) -> Response:
        """The OpenAPI schema of this API."""
        if "schema" not in documentation:
            documentation["schema"] = json.dumps(app.openapi()).encode()
        return Response(documentation["schema"], media_type="application/json")

    @app.get("/docs", include_in_schema=False)
    def docs(_principal: Annotated[Principal, Depends(caller("decide", "admin"))]) -> Response:
        """Swagger UI with the OpenAPI schema inline."""
        if "page" not in documentation:
            documentation["page"] = swagger_page(app.title, app.openapi()).encode()
        return HTMLResponse(documentation["page"])

    def swapped(new: Served, previous: Served, how: str, principal: Principal) -> BundleSwap:
        log.info("bundle %s by %s: %s (sha256 %s) from %s replaces %s", how, principal.client_id, new.bundle.name,
                 new.bundle.sha256, new.path, previous.bundle.sha256)
        return BundleSwap(name=new.bundle.name, sha256=new.bundle.sha256, previous_name=previous.bundle.name,
                          previous_sha256=previous.bundle.sha256, path=new.path)

    @app.post(BUNDLE_ROUTE, response_model=BundleSwap, tags=["operations"],
              responses=_responses(401, 403, 422, 429))
    async def reload_bundle(body: BundleReload,
                            principal: Annotated[Principal, Depends(caller("admin"))]) -> BundleSwap | JSONResponse:
        """Check the bundle at `path` (manifest, file hashes, parity on its own samples) and serve it in every
        worker (each picks it up within a second). The path must resolve, symlinks followed, inside bundles_dir
        or a reload root (settings reload_roots), else 422. A bundle that fails is refused (422) and the old one
        keeps serving; requests in flight finish with the bundle they started with."""
        try:
            path = str(confined(body.path, reload_roots))
            new, previous = await to_thread.run_sync(slot.reload, path, principal.client_id, limiter=admin_thread)
        except (BundleError, OutsideRoots, OSError, ValueError) as error:  # also a path the system cannot take
            log.warning("bundle reload by %s refused: %s", principal.client_id, error)
            return _unprocessable([("path", str(error))])
        return swapped(new, previous, "reloaded", principal)

    @app.put(BUNDLE_ROUTE, response_model=BundleSwap, tags=["operations"], openapi_extra={"requestBody": {
                 "required": True, "description": "a bundle.zip written by experiments.export (at most "
                                                  "max_bundle_bytes)",
                 "content": {media: {"schema": {"type": "string", "format": "binary"}}
                             for media in ("application/zip", "application/octet-stream")}}},
             responses=_responses(401, 403, 422, 429))
    async def upload_bundle(request: Request,
                            principal: Annotated[Principal, Depends(caller("admin"))]) -> BundleSwap | Response:
        """Upload a bundle.zip (the body, `Content-Type: application/zip`, up to max_bundle_bytes): it is
        unpacked into bundles_dir/<sha256 of the zip>/ and checked like a path reload (manifest, file hashes,
        parity on its own samples), then served in every worker. Anything wrong (not a zip, a member outside
        the archive's folder, a changed file, a manifest refused, parity) is a 422 naming it: the old bundle
        keeps serving and nothing of the upload is kept."""
        archive = None
        try:
            fd, name = tempfile.mkstemp(prefix=UPLOAD_PREFIX, suffix=".zip", dir=bundles_dir)
            archive, digest = Path(name), hashlib.sha256()
            with os.fdopen(fd, "wb") as file:
                try:
                    async for chunk in request.stream():
                        digest.update(chunk)
                        file.write(chunk)
                except ClientDisconnect:  # gone, or over max_bundle_bytes (BodyLimitMiddleware answered 422)
                    log.warning("bundle upload by %s ended before its body did", principal.client_id)
                    return _problem(400, "the upload ended before its body did")
            new, previous = await to_thread.run_sync(slot.upload, archive, digest.hexdigest(), bundles_dir,
                                                     principal.client_id, limiter=admin_thread)
        except (BundleError, OSError, ValueError) as error:
            log.warning("bundle upload by %s refused: %s", principal.client_id, error)
            return _unprocessable([("body", str(error))])
        finally:
            if archive is not None:
                archive.unlink(missing_ok=True)
        return swapped(new, previous, "uploaded", principal)

    @app.get("/v1/health", response_model=Health, tags=["operations"],
             responses={503: {"model": Health, "description": "the audit database does not answer"}})
    def health() -> Health | JSONResponse:
        """Liveness and readiness, no token needed: 200 when the audit database answers, else 503."""
        try:
            audit.active()
        except Exception as error:  # any database failure: not ready
            log.warning("health: audit database unavailable: %s", error)
            return JSONResponse(Health(status="unavailable", worker=os.getpid()).model_dump(), status_code=503)
        return Health(status="ok", worker=os.getpid())

    return app


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker, from the settings a launcher put in the environment (`serve`)."""
    return create_app(settings_from_env())


# ------------------------------------------------------------------ launching


def check(settings: ServiceSettings) -> Served:
    """Check what a launch needs before any worker starts: the clients file, the signing key, the bundle (loaded
    and self-checked) and the audit database; publish the bundle as the one to serve. SpecError (BundleError is
    one) naming what is wrong."""
    ClientStore(settings.clients_file)
    signing_key(settings.key_env, settings.key_file)
    try:
        settings.bundles_path().mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SpecError(f"bundles_dir: {settings.bundles_path()} cannot be made ({error}); allowed: a folder the "
                        f"service may write") from None
    for i, root in enumerate(settings.reload_roots or ()):
        if not Path(root).expanduser().is_dir():
            raise SpecError(f"reload_roots[{i}]: {root!r} is not a directory; allowed: folders holding bundles")
    served = Served(checked_bundle(settings.bundle), settings.bundle)
    audit = AuditLog(settings.audit_url)
    try:
        audit.publish_bundle(settings.bundle, served.bundle.sha256, LAUNCHER)
    finally:
        audit.close()
    return served


def log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging config plus this package's loggers (workers are new processes: they log through it)."""
    from uvicorn.config import LOGGING_CONFIG

    config = json.loads(json.dumps(LOGGING_CONFIG))
    config["loggers"]["agents.deploy"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def serve(settings: ServiceSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, *,
          access_log: bool = False, log_level: str = "info") -> None:
    """Run the service with uvicorn: `workers` processes behind `host:port`, until interrupted. Call `check`
    first (a bad setting then fails before anything listens)."""
    import uvicorn

    settings_to_env(settings)
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # workers count into shared files, so /metrics answers for all of them whichever one it reaches
        metrics_dir = tempfile.mkdtemp(prefix="decision-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("agents.deploy.service:app_from_env", factory=True, host=host, port=port, workers=workers,
                    access_log=access_log, log_level=log_level, log_config=log_config(log_level),
                    timeout_graceful_shutdown=10)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)

