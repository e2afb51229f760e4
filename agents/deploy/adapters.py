"""ERP adapters: push decisions to a webhook, and decide the ERP state files dropped into a folder.

    with WebhookPusher(WebhookConfig("https://erp.example.com/hooks/replenishment", secret=SECRET)) as pusher:
        pusher.push(decide(bundle, state))

    DropFolder(bundle, inbox=Path("in"), outbox=Path("out"), pusher=pusher).run(poll_seconds=2)

**Webhook.** One POST per `DecisionResponse` (the decisions for one ERP state; the documents are inside its
decisions), body `response.model_dump_json()` (`application/json`), with these headers:

    Idempotency-Key         sha256 (hex) of the lines: bundle sha256, request sha256, the sorted recommendation
                            ids (`idempotency_key`): the same decisions always carry the same key, so a receiver
                            that stores keys takes a retried or repeated push once (it can recompute the key from
                            the body)
    Authorization           `Bearer <token>` when a token is configured
    X-Decisions-Signature   `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` when a shared secret is
                            configured; the receiver recomputes it over the raw body and checks the time against
                            replays (`verify_signature` does both)

A 2xx answer is success. Connection errors, timeouts, 408, 429 and 5xx are retried with exponential back-off and
jitter (`RetryPolicy`), a `Retry-After` (seconds or an HTTP date) on 429 or 503 is waited as given; any other
answer (4xx, or a 3xx: redirects are not followed with a signed body) is permanent and raised at once as a
`WebhookError` with the status and the start of the body. Attempts and the total time are bounded; neither the
token nor the secret is ever logged (or shown in a repr).

**Drop folder.** ERP state files (`erp.state/1` JSON) come into `inbox`; the writer writes `NAME.json.tmp` (or
any name not ending in `.json`) and renames it to `NAME.json` when complete, so only whole files end in `.json`
(`*.tmp` and hidden files are never read). `process_once()` takes every `*.json` of the inbox, oldest name first:

    decided     <outbox>/NAME.decisions.json and .csv (what `python -m experiments.decide` writes for the same
                state and bundle), each written to a temporary file and renamed; then pushed (if a pusher is
                set); the state moves to <inbox>/processed/ and a line goes into processed/ledger.jsonl
    duplicate   a state whose request (its canonical JSON's sha256) this bundle decided before, by the ledger:
                moved to processed/, not decided or pushed again
    rejected    a state that cannot be decided (bad JSON, a bad field, a location the bundle does not serve),
                or whose push the webhook refused permanently: moved to <inbox>/rejected/ with NAME.error.txt
                naming the field; the folder goes on with the next file
    push_failed the webhook could not be reached within its retries: the decisions are in the outbox and the
                state stays in the inbox, to be decided (identically) and pushed (same Idempotency-Key) again
                on the next poll

A file already in processed/ or rejected/ under the same name is kept: the newcomer gets NAME.1.json, NAME.2.json...
Outputs are named by the state file's name: give the ERP export files unique names (e.g. with a timestamp). One
drop folder process per inbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from agents.deploy.bundle import Bundle
from agents.deploy.conversion import ErpStateError, error_fields
from agents.deploy.decide import DecisionResponse, decide, decisions_csv, request_sha256
from agents.deploy.erp_state import ErpState
from twin.config import ConfigReader, SpecError

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Decisions-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "supplychain-twin-webhook/1"
RETRY_STATUSES = frozenset({408, 429})      # and every 5xx
RETRY_AFTER_STATUSES = frozenset({429, 503})
EXCERPT_CHARS = 200
SIGNATURE_TOLERANCE_SECONDS = 300.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


# ------------------------------------------------------------------ webhook


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a push is retried: `attempts` tries in all (the first included), waits of
    `backoff_seconds` x 2^(retry - 1), at most `max_backoff_seconds`, each shortened by a random share of up to
    `jitter`; no try starts once `total_seconds` have passed since the first."""

    attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    total_seconds: float = 120.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        _check("webhook.attempts", self.attempts, 1, 100, integer=True)
        _check("webhook.backoff_seconds", self.backoff_seconds, 0, 3600)
        _check("webhook.max_backoff_seconds", self.max_backoff_seconds, 0, 3600)
        _check("webhook.total_seconds", self.total_seconds, 0.001, 86_400)
        _check("webhook.jitter", self.jitter, 0, 1)

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` (1 = the second try)."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (retry - 1))
        return ceiling * (1 - self.jitter * rng.random())


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how decisions are pushed. `token` and `secret` never appear in a repr or a log line."""

    url: str
    token: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    timeout_seconds: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise SpecError(f"webhook.url: {self.url!r} is not allowed; allowed: an http:// or https:// URL")
        if parts.username or parts.password:
            raise SpecError("webhook.url: credentials in the URL are not allowed; allowed: a bearer token "
                            "(webhook.token_env) or a signing secret (webhook.secret_env)")
        if self.token is not None and parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise SpecError(f"webhook.url: a bearer token over plain http to {parts.hostname!r} is not allowed; "
                            f"allowed: an https:// URL, or http:// to a loopback host")
        for name in ("token", "secret"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise SpecError(f"webhook.{name}: expected a non-empty string")
        _check("webhook.timeout_seconds", self.timeout_seconds, 0.001, 3600)

    @property
    def safe_url(self) -> str:
        """The URL without query or fragment (what log lines show)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, key: str = "webhook",
                  environ: Mapping[str, str] | None = None) -> WebhookConfig | None:
        """The webhook of a config mapping (conf/webhook/default.yaml's keys), or None when `url` is null.
        The token and secret come from the environment variables named by `token_env` and `secret_env`, never
        from the config itself. SpecError naming the key for a bad value."""
        environ = os.environ if environ is None else environ
        r = ConfigReader(data, key)
        url = r.text("url", optional=True)
        token, secret = (_secret_from_env(r, name, environ) for name in ("token_env", "secret_env"))
        timeout = r.number("timeout_seconds", 10.0, low=0, low_open=True)
        retry = RetryPolicy(attempts=r.integer("attempts", 5, low=1, high=100),
                            backoff_seconds=r.number("backoff_seconds", 0.5, low=0, high=3600),
                            max_backoff_seconds=r.number("max_backoff_seconds", 30.0, low=0, high=3600),
                            total_seconds=r.number("total_seconds", 120.0, low=0, low_open=True, high=86_400),
                            jitter=r.number("jitter", 0.5, low=0, high=1))
        r.done()
        if url is None:
            if token or secret:
                raise SpecError(f"{key}.url: required when {key}.token_env or {key}.secret_env is set")
            return None
        return cls(url, token=token, secret=secret, timeout_seconds=timeout, retry=retry)


def _secret_from_env(r: ConfigReader, name: str, environ: Mapping[str, str]) -> str | None:
    variable = r.text(name, optional=True)
    if variable is None:
        return None
    value = environ.get(variable)
    if not value:
        raise SpecError(f"{r.key(name)}: environment variable {variable!r} is not set or empty; allowed: the "
                        f"name of a set variable holding the {name.removesuffix('_env')}")
    return value


def _check(key: str, value: Any, low: float, high: float, integer: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and low <= value <= high and (not integer or int(value) == value))
    if not ok:
        raise SpecError(f"{key}: {value!r} is not allowed; allowed: {kind} in [{low:g}, {high:g}]")


@dataclass(frozen=True)
class PushResult:
    """A push the receiver took: its status, the tries it needed, the key it was sent with."""

    status: int
    attempts: int
    idempotency_key: str
    seconds: float


class WebhookError(Exception):
    """A push that failed: `permanent` (the receiver refused it: do not send it again unchanged) or not (it could
    not be delivered within the retry policy); `status` is the last HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None, attempts: int, permanent: bool) -> None:
        super().__init__(message)
        self.status, self.attempts, self.permanent = status, attempts, permanent


def idempotency_key(response: DecisionResponse) -> str:
    """sha256 (hex) of the bundle's hash, the request's hash and the sorted recommendation ids, one a line: the
    same decisions give the same key."""
    lines = [response.bundle.sha256, response.request_sha256, *sorted(d.recommendation_id for d in response.decisions)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Decisions-Signature` value: `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str | None, *,
                     tolerance_seconds: float = SIGNATURE_TOLERANCE_SECONDS, now: float | None = None) -> bool:
    """For receivers: True if `header` (the X-Decisions-Signature value) signs the raw `body` with `secret` and its
    time is within `tolerance_seconds` of `now` (a replayed old request fails)."""
    if not header:
        return False
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={fields.get('v1', '')}")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header in seconds (delay seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class WebhookPusher:
    """Pushes decision responses to one webhook (see the module docstring); use it as a context manager or
    `close()` it. `sleep` and `rng` are for tests."""

    def __init__(self, config: WebhookConfig, *, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT})

    def __enter__(self) -> WebhookPusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def push(self, response: DecisionResponse) -> PushResult:
        """POST `response` until the receiver takes it (2xx); WebhookError when it refuses or cannot be reached."""
        return self.push_body(response.model_dump_json().encode(), idempotency_key(response))

    def push_body(self, body: bytes, key: str) -> PushResult:
        """POST a JSON body with its idempotency key, with the retries of the config."""
        config, retry = self.config, self.config.retry
        start = time.monotonic()
        deadline = start + retry.total_seconds
        status: int | None = None
        problem = ""
        for attempt in range(1, retry.attempts + 1):
            timeout = max(0.001, min(config.timeout_seconds, deadline - time.monotonic()))
            wait = None
            try:
                answer = self._client.post(config.url, content=body, headers=self._headers(body, key),
                                           timeout=timeout)
            except httpx.TransportError as error:  # connection refused or reset, timeouts, protocol errors
                status, problem = None, f"{type(error).__name__}: {error}".rstrip(": ")
            else:
                status = answer.status_code
                if 200 <= status < 300:
                    seconds = time.monotonic() - start
                    log.info("webhook %s: HTTP %d after %d %s (%.2f s), key %s", config.safe_url, status, attempt,
                             "try" if attempt == 1 else "tries", seconds, key[:12])
                    return PushResult(status, attempt, key, seconds)
                problem = f"HTTP {status}: {_excerpt(answer.text)}"
                if not (status in RETRY_STATUSES or status >= 500):
                    raise WebhookError(f"webhook {config.safe_url}: refused with {problem}; not retried (only "
                                       f"connection errors, timeouts, 408, 429 and 5xx are)", status=status,
                                       attempts=attempt, permanent=True)
                if status in RETRY_AFTER_STATUSES:
                    wait = retry_after_seconds(answer.headers.get("Retry-After"))
            if attempt == retry.attempts:
                break
            delay = wait if wait is not None else retry.backoff(attempt, self._rng)
            if time.monotonic() + delay > deadline:
                problem += f"; the next try ({delay:.3g} s away) would pass total_seconds={retry.total_seconds:g}"
                break
            log.warning("webhook %s: try %d of %d failed (%s); next in %.2f s", config.safe_url, attempt,
                        retry.attempts, problem, delay)
            self._sleep(delay)
        raise WebhookError(f"webhook {config.safe_url}: not delivered after {attempt} "
                           f"{'try' if attempt == 1 else 'tries'} in {time.monotonic() - start:.2f} s; last: "
                           f"{problem}", status=status, attempts=attempt, permanent=False)

    def _headers(self, body: bytes, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        if self.config.secret:
            headers[SIGNATURE_HEADER] = sign(self.config.secret, body, int(time.time()))
        return headers


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return (flat[:EXCERPT_CHARS] + "...") if len(flat) > EXCERPT_CHARS else (flat or "(empty body)")


# ------------------------------------------------------------------ files


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and a rename: a reader sees the old
    file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def decisions_json(response: DecisionResponse) -> str:
    """The decisions as the indented JSON file `experiments.decide` and the drop folder write."""
    return json.dumps(response.model_dump(mode="json"), indent=1) + "\n"


def write_decisions(response: DecisionResponse, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write <stem>.decisions.json and .csv into `directory`, each atomically; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    as_json = write_atomic(directory / f"{stem}.decisions.json", decisions_json(response))
    as_csv = write_atomic(directory / f"{stem}.decisions.csv", decisions_csv(response))
    return as_json, as_csv


# ------------------------------------------------------------------ drop folder

Status = Literal["decided", "duplicate", "rejected", "push_failed"]


@dataclass(frozen=True)
class Outcome:
    """What became of one state file (see the module docstring for each status)."""

    state: str
    status: Status
    request_sha256: str | None = None
    outputs: tuple[Path, ...] = ()
    moved_to: Path | None = None
    error: str | None = None
    push: PushResult | None = None


class DropFolder:
    """ERP state files in, decisions out (see the module docstring)."""

    def __init__(self, bundle: Bundle, inbox: Path, outbox: Path, pusher: WebhookPusher | None = None) -> None:
        inbox, outbox = Path(inbox), Path(outbox)
        if inbox.resolve() == outbox.resolve():
            raise SpecError(f"outbox: {str(outbox)!r} is the inbox; allowed: another folder (decision files "
                            f"there would be read as states)")
        self.bundle, self.inbox, self.outbox, self.pusher = bundle, inbox, outbox, pusher
        self.processed, self.rejected = inbox / "processed", inbox / "rejected"
        self.ledger = self.processed / "ledger.jsonl"
        for folder in (inbox, outbox, self.processed, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        self._decided = self._read_ledger()

    def pending(self) -> list[Path]:
        """The complete state files waiting in the inbox (`*.json`, not hidden), by name."""
        return sorted(p for p in self.inbox.glob("*.json") if p.is_file() and not p.name.startswith("."))

    def process_once(self) -> list[Outcome]:
        """Decide every pending state file once; one Outcome each. A file that vanished meanwhile is skipped."""
        outcomes = []
        for path in self.pending():
            try:
                outcomes.append(self.process_file(path))
            except FileNotFoundError:
                log.warning("%s: gone before it was read; skipped", path.name)
            except OSError:
                log.exception("%s: could not be read or moved; tried again on the next poll", path.name)
        return outcomes

    def process_file(self, path: Path) -> Outcome:
        """Decide one state file of the inbox and move it on (see the module docstring)."""
        raw = path.read_bytes()
        try:
            state = ErpState.model_validate_json(raw)
        except ValidationError as error:
            return self._reject(path, None, error_fields(error))
        request = request_sha256(state)
        done = self._decided.get((self.bundle.sha256, request))
        if done is not None:
            moved = self._move(path, self.processed)
            log.info("%s: request %s already decided (from %s); not decided again", path.name, request[:12], done)
            return Outcome(path.name, "duplicate", request, moved_to=moved)
        try:
            response = decide(self.bundle, state)
        except ErpStateError as error:
            return self._reject(path, request, error_fields(error))
        except Exception as error:  # a bug must not stop the folder: the file goes aside, the traceback to the log
            log.exception("%s: deciding failed", path.name)
            return self._reject(path, request, [("", f"internal error: {type(error).__name__}: {error}")])
        outputs = write_decisions(response, self.outbox, path.stem)
        orders = sum(1 for d in response.decisions if d.document is not None)
        push = None
        if self.pusher is not None:
            try:
                push = self.pusher.push(response)
            except WebhookError as error:
                if error.permanent:
                    return self._reject(path, request, [("webhook", str(error))], outputs)
                log.warning("%s: decided, push failed (%s); the state stays in the inbox for the next poll",
                            path.name, error)
                return Outcome(path.name, "push_failed", request, outputs, error=str(error))
        self._remember(request, path.name, outputs)
        moved = self._move(path, self.processed)
        log.info("%s: %d decisions, %d orders -> %s%s", path.name, len(response.decisions), orders, outputs[1],
                 "" if push is None else f"; pushed (HTTP {push.status}, {push.attempts} tries)")
        return Outcome(path.name, "decided", request, outputs, moved_to=moved, push=push)

    def run(self, poll_seconds: float = 2.0, stop_after: int | None = None,
            stop: threading.Event | None = None) -> int:
        """Poll the inbox every `poll_seconds` until `stop` is set or after `stop_after` polls; returns the number
        of polls."""
        _check("poll_seconds", poll_seconds, 0, 86_400)
        stop = stop or threading.Event()
        log.info("drop folder: %s -> %s, bundle %s (%s), every %g s", self.inbox, self.outbox, self.bundle.name,
                 self.bundle.sha256[:12], poll_seconds)
        polls = 0
        while not stop.is_set():
            outcomes = self.process_once()
            polls += 1
            if outcomes:
                counts = {s: sum(o.status == s for o in outcomes) for s in ("decided", "duplicate", "rejected",
                                                                             "push_failed")}
                log.info("poll %d: %s", polls, ", ".join(f"{n} {s}" for s, n in counts.items() if n))
            if stop_after is not None and polls >= stop_after:
                break
            stop.wait(poll_seconds)
        return polls

    def _reject(self, path: Path, request: str | None, problems: list[tuple[str, str]],
                outputs: tuple[Path, ...] = ()) -> Outcome:
        target = _free_name(self.rejected, path.name)
        text = "".join(f"{where or 'state'}: {message}\n" for where, message in problems)
        write_atomic(target.with_name(f"{target.stem}.error.txt"), text)
        os.replace(path, target)
        log.warning("%s: rejected, %s", path.name, text.splitlines()[0])
        return Outcome(path.name, "rejected", request, outputs, moved_to=target, error=text.strip())

    def _move(self, path: Path, folder: Path) -> Path:
        target = _free_name(folder, path.name)
        os.replace(path, target)
        return target

    def _read_ledger(self) -> dict[tuple[str, str], str]:
        decided: dict[tuple[str, str], str] = {}
        if not self.ledger.exists():
            return decided
        for number, line in enumerate(self.ledger.read_text().splitlines(), 1):
            try:
                entry = json.loads(line)
                decided[(entry["bundle_sha256"], entry["request_sha256"])] = entry["state"]
            except (ValueError, KeyError, TypeError):
                log.warning("%s line %d: unreadable; ignored", self.ledger, number)
        return decided

    def _remember(self, request: str, state: str, outputs: tuple[Path, ...]) -> None:
        entry = {"bundle_sha256": self.bundle.sha256, "request_sha256": request, "state": state,
                 "outputs": [p.name for p in outputs],
                 "decided_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        with open(self.ledger, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._decided[(self.bundle.sha256, request)] = state


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/STEM.N.json` with the first N not taken."""
    target = folder / name
    n = 0
    while target.exists() or target.with_name(f"{target.stem}.error.txt").exists():
        n += 1
        target = folder / f"{Path(name).stem}.{n}{Path(name).suffix}"
    return target
