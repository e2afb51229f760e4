"""ERP adapters (agents/deploy/adapters.py, experiments/dropfolder.py) against a real HTTP receiver on 127.0.0.1 and
real folders: retries and back-off, no retry on a permanent error, signatures, idempotency keys, the drop folder's
outputs, rejections, partial files and duplicates, and the entry points end to end."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents.deploy.adapters import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    DropFolder,
    RetryPolicy,
    WebhookConfig,
    WebhookError,
    WebhookPusher,
    decisions_json,
    idempotency_key,
    retry_after_seconds,
    sign,
    verify_signature,
)
from agents.deploy.bundle import load_bundle
from agents.deploy.decide import decide, decisions_csv
from agents.deploy.erp_state import ErpState
from agents.deploy.testing import twin_day
from twin import SpecError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-for-tests-only"
FAST = RetryPolicy(attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.05, total_seconds=10)


# ------------------------------------------------------------------ a real receiver


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """An HTTP receiver on 127.0.0.1 in a thread: records every POST, answers the first ones with the failures it
    was told (`fail`), or after a delay (`delay`), checks the signature when it has a secret (401 if wrong), and
    stores each Idempotency-Key once (a repeated key is answered 200 {"duplicate": true} and not stored again)."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.requests: list[Received] = []
        self.stored: dict[str, bytes] = {}
        self.failures: list[tuple[int, dict[str, str], bytes]] = []
        self.delays: list[float] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(Received(dict(self.headers), body, time.monotonic()))
                    failure = receiver.failures.pop(0) if receiver.failures else None
                    delay = receiver.delays.pop(0) if receiver.delays else 0.0
                time.sleep(delay)
                if failure is not None:
                    self._answer(*failure)
                elif receiver.secret and not verify_signature(receiver.secret, body,
                                                              self.headers.get(SIGNATURE_HEADER)):
                    self._answer(401, {}, b'{"error": "bad signature"}')
                else:
                    key = self.headers.get(IDEMPOTENCY_HEADER)
                    with receiver.lock:
                        duplicate = key in receiver.stored
                        receiver.stored.setdefault(key, body)
                    self._answer(200, {}, json.dumps({"duplicate": duplicate}).encode())

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a client that timed out closed its socket: nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/decisions?tenant=test"

    def fail(self, n: int, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.failures += [(status, headers or {}, body)] * n

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def signing_receiver():
    with Receiver(secret=SECRET) as r:
        yield r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ a bundle and its states


def run_module(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("export")
    done = run_module("experiments.export", "policy=base_stock", "network=small", "kpi.seeds=1", "kpi.horizon=40",
                      f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr
    return run / "bundle"


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load_bundle(bundle_dir)


def erp_state(bundle, days: int = 30) -> ErpState:
    """The twin's state after `days` days under the bundle's own policy, in ERP terms."""
    return twin_day(bundle, days).state


@pytest.fixture(scope="module")
def state(bundle) -> ErpState:
    return erp_state(bundle)


@pytest.fixture(scope="module")
def other_state(bundle) -> ErpState:
    return erp_state(bundle, days=31)


def with_item(state: ErpState, location: int, item: int, **values) -> dict:
    data = state.model_dump(mode="json")
    data["locations"][location]["items"][item].update(values)
    return data


def drop(folder: Path, name: str, content: str | dict) -> Path:
    """Drop a state file as an ERP export should: write NAME.tmp, then rename it."""
    text = content if isinstance(content, str) else json.dumps(content)
    tmp = folder / f"{name}.tmp"
    tmp.write_text(text)
    return tmp.rename(folder / name)


# ------------------------------------------------------------------ webhook


def test_push_retries_503_with_backoff_then_succeeds(receiver, bundle, state):
    response = decide(bundle, state)
    receiver.fail(2, 503, body=b"maintenance")
    with WebhookPusher(WebhookConfig(receiver.url, retry=FAST)) as pusher:
        result = pusher.push(response)
    assert (result.status, result.attempts) == (200, 3)
    assert len(receiver.requests) == 3
    keys = {r.headers[IDEMPOTENCY_HEADER] for r in receiver.requests}
    assert keys == {idempotency_key(response)} and len(receiver.stored) == 1
    assert {r.body for r in receiver.requests} == {response.model_dump_json().encode()}
    assert receiver.requests[0].headers["Content-Type"] == "application/json"
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:])]
    assert all(g >= 0.004 for g in gaps)  # waited (0.01 s, then 0.02 s, each less up to half for jitter)


def test_429_retry_after_is_honoured(receiver, bundle, state):
    receiver.fail(1, 429, {"Retry-After": "1"}, b"slow down")
    with WebhookPusher(WebhookConfig(receiver.url, retry=FAST)) as pusher:
        result = pusher.push(decide(bundle, state))
    assert result.attempts == 2
    first, second = receiver.requests
    assert second.at - first.at >= 0.95  # the back-off alone would have waited 0.01 s
    now = time.time()
    assert retry_after_seconds(formatdate(now + 5, usegmt=True), now=now) == pytest.approx(5, abs=1)  # an HTTP date
    assert retry_after_seconds("soon") is None and retry_after_seconds("-3") == 0


def test_retry_after_beyond_the_total_time_gives_up_at_once(receiver, bundle, state):
    receiver.fail(1, 503, {"Retry-After": "60"})
    retry = RetryPolicy(attempts=5, backoff_seconds=0.01, total_seconds=2)
    start = time.monotonic()
    with WebhookPusher(WebhookConfig(receiver.url, retry=retry)) as pusher, pytest.raises(WebhookError) as caught:
        pusher.push(decide(bundle, state))
    assert time.monotonic() - start < 1.5 and len(receiver.requests) == 1
    assert not caught.value.permanent and caught.value.status == 503 and "total_seconds" in str(caught.value)


def test_no_retry_on_400(receiver, bundle, state):
    receiver.fail(1, 400, body=b'{"error": "material rice unknown in plant dc_0"}')
    with WebhookPusher(WebhookConfig(receiver.url, retry=FAST)) as pusher, pytest.raises(WebhookError) as caught:
        pusher.push(decide(bundle, state))
    error = caught.value
    assert (error.permanent, error.status, error.attempts) == (True, 400, 1)
    assert "HTTP 400" in str(error) and "material rice unknown" in str(error)
    assert len(receiver.requests) == 1


def test_connection_refused_and_timeouts_are_retried_within_bounds(receiver, bundle, state):
    url = f"http://127.0.0.1:{free_port()}/hook"
    start = time.monotonic()
    retry = RetryPolicy(attempts=3, backoff_seconds=0.01, total_seconds=5)
    with WebhookPusher(WebhookConfig(url, retry=retry)) as pusher, pytest.raises(WebhookError) as caught:
        pusher.push(decide(bundle, state))
    assert (caught.value.permanent, caught.value.status, caught.value.attempts) == (False, None, 3)
    assert "ConnectError" in str(caught.value) and time.monotonic() - start < 3

    receiver.delays = [1.0]  # the first answer comes after the client's timeout
    response = decide(bundle, state)
    with WebhookPusher(WebhookConfig(receiver.url, timeout_seconds=0.3, retry=FAST)) as pusher:
        result = pusher.push(response)
    assert result.attempts == 2 and len(receiver.requests) == 2
    assert list(receiver.stored) == [idempotency_key(response)]  # the receiver got it twice, keeps it once


def test_signature_verifies_on_the_receiver(signing_receiver, bundle, state, caplog):
    caplog.set_level(logging.DEBUG)
    response = decide(bundle, state)
    config = WebhookConfig(signing_receiver.url, token="bearer-for-tests-only", secret=SECRET, retry=FAST)
    with WebhookPusher(config) as pusher:
        assert pusher.push(response).status == 200
    request = signing_receiver.requests[-1]
    assert verify_signature(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    assert request.headers["Authorization"] == "Bearer bearer-for-tests-only"
    assert not verify_signature(SECRET, request.body + b" ", request.headers[SIGNATURE_HEADER])  # tampered
    assert not verify_signature("another secret", request.body, request.headers[SIGNATURE_HEADER])
    old = sign(SECRET, request.body, int(time.time()) - 3600)
    assert not verify_signature(SECRET, request.body, old)  # a replay an hour later
    for secret in (SECRET, "bearer-for-tests-only"):
        assert secret not in caplog.text and secret not in repr(config)
    ours = [r.getMessage() for r in caplog.records if r.name == "agents.deploy.adapters"]
    assert ours and not any("tenant=test" in line for line in ours)  # our log lines show the URL without query

    wrong = WebhookConfig(signing_receiver.url, secret="not the receiver's", retry=FAST)
    with WebhookPusher(wrong) as pusher, pytest.raises(WebhookError) as caught:
        pusher.push(response)
    assert (caught.value.status, caught.value.attempts, caught.value.permanent) == (401, 1, True)


def test_the_same_decisions_carry_the_same_key_and_the_receiver_dedupes(receiver, bundle, state, other_state):
    first, again = decide(bundle, state), decide(bundle, ErpState.model_validate_json(state.model_dump_json()))
    other = decide(bundle, other_state)
    assert idempotency_key(first) == idempotency_key(again) != idempotency_key(other)
    with WebhookPusher(WebhookConfig(receiver.url, retry=FAST)) as pusher:
        for response in (first, again, other):
            pusher.push(response)
    keys = [r.headers[IDEMPOTENCY_HEADER] for r in receiver.requests]
    assert keys == [idempotency_key(first)] * 2 + [idempotency_key(other)]
    assert len(receiver.stored) == 2


def test_webhook_config_reads_secrets_from_the_environment_only():
    env = {"HOOK_SECRET": SECRET}
    config = WebhookConfig.from_dict({"url": "https://erp.example.com/h", "secret_env": "HOOK_SECRET",
                                      "attempts": 3}, environ=env)
    assert config.secret == SECRET and config.retry.attempts == 3 and SECRET not in repr(config)
    assert WebhookConfig.from_dict({"url": None}, environ=env) is None
    bad = [({"url": "ftp://erp.example.com/h"}, "webhook.url: 'ftp://erp.example.com/h' is not allowed"),
           ({"url": "https://u:p@erp.example.com/h"}, "webhook.url: credentials in the URL are not allowed"),
           ({"url": "https://erp.example.com/h", "token_env": "NOT_SET"}, "webhook.token_env: environment variable"),
           ({"url": "https://erp.example.com/h", "secret": SECRET}, "webhook: unknown key 'secret'"),
           ({"url": "https://erp.example.com/h", "attempts": 0}, "webhook.attempts: 0 is out of range")]
    for data, message in bad:
        with pytest.raises(SpecError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            WebhookConfig.from_dict(data, environ=env)
    with pytest.raises(SpecError, match="bearer token over plain http"):
        WebhookConfig("http://erp.example.com/h", token="t")


# ------------------------------------------------------------------ drop folder


def test_a_good_state_gives_the_offline_decisions(tmp_path, bundle, state):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    folder = DropFolder(bundle, inbox, outbox)
    drop(inbox, "erp_2021-01-31.json", state.model_dump_json(indent=1))
    [outcome] = folder.process_once()
    assert outcome.status == "decided"
    response = decide(bundle, state)
    assert (outbox / "erp_2021-01-31.decisions.csv").read_text() == decisions_csv(response)
    assert (outbox / "erp_2021-01-31.decisions.json").read_text() == decisions_json(response)
    assert sorted(p.name for p in outbox.iterdir()) == ["erp_2021-01-31.decisions.csv",
                                                        "erp_2021-01-31.decisions.json"]  # no temporary file left
    assert not list(inbox.glob("*.json")) and (inbox / "processed" / "erp_2021-01-31.json").exists()


def test_bad_states_are_rejected_naming_the_field_and_the_next_file_is_processed(tmp_path, bundle, state):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    folder = DropFolder(bundle, inbox, outbox)
    drop(inbox, "a_negative.json", with_item(state, 0, 0, on_hand=-5.0))
    drop(inbox, "b_unknown_sku.json", with_item(state, 1, 0, sku="caviar"))
    drop(inbox, "c_truncated.json", state.model_dump_json()[:200])
    drop(inbox, "d_good.json", state.model_dump_json())
    outcomes = folder.process_once()
    assert [(o.state, o.status) for o in outcomes] == [("a_negative.json", "rejected"), ("b_unknown_sku.json",
                                                       "rejected"), ("c_truncated.json", "rejected"),
                                                       ("d_good.json", "decided")]
    rejected = inbox / "rejected"
    assert (rejected / "a_negative.error.txt").read_text().startswith("locations[0].items[0].on_hand: ")
    assert (rejected / "b_unknown_sku.error.txt").read_text().startswith(
        "locations[1].items[0].sku: 'caviar' is not a SKU of network 'small'; allowed: ")
    assert (rejected / "c_truncated.error.txt").read_text().startswith("state: Invalid JSON")
    assert {p.name for p in rejected.glob("*.json")} == {"a_negative.json", "b_unknown_sku.json", "c_truncated.json"}
    assert sorted(p.name for p in outbox.iterdir()) == ["d_good.decisions.csv", "d_good.decisions.json"]

    drop(inbox, "a_negative.json", with_item(state, 0, 0, on_hand=-5.0))  # the same name again: kept apart
    [again] = folder.process_once()
    assert again.moved_to == rejected / "a_negative.1.json" and (rejected / "a_negative.1.error.txt").exists()


def test_partial_files_are_ignored_until_renamed(tmp_path, bundle, state):
    inbox = tmp_path / "in"
    folder = DropFolder(bundle, inbox, tmp_path / "out")
    partial = inbox / "late.json.tmp"
    partial.write_text(state.model_dump_json()[:100])
    (inbox / ".hidden.json").write_text("{")
    assert folder.process_once() == []
    assert partial.exists() and not list((inbox / "rejected").iterdir())
    partial.write_text(state.model_dump_json())
    partial.rename(inbox / "late.json")
    assert [o.status for o in folder.process_once()] == ["decided"]


def test_the_same_state_dropped_twice_is_decided_once(tmp_path, bundle, state):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    drop(inbox, "monday.json", state.model_dump_json())
    drop(inbox, "monday_again.json", state.model_dump_json(indent=2))  # other whitespace, same request
    outcomes = DropFolder(bundle, inbox, outbox).process_once()
    assert [o.status for o in outcomes] == ["decided", "duplicate"]
    assert outcomes[0].request_sha256 == outcomes[1].request_sha256
    drop(inbox, "monday_later.json", state.model_dump_json())  # a new process remembers it (the ledger)
    assert [o.status for o in DropFolder(bundle, inbox, outbox).process_once()] == ["duplicate"]
    assert sorted(p.name for p in outbox.iterdir()) == ["monday.decisions.csv", "monday.decisions.json"]
    ledger = (inbox / "processed" / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 1 and json.loads(ledger[0])["state"] == "monday.json"


def test_the_drop_folder_pushes_and_keeps_a_state_whose_push_failed(tmp_path, receiver, bundle, state, other_state):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    retry = RetryPolicy(attempts=2, backoff_seconds=0.01, total_seconds=5)
    with WebhookPusher(WebhookConfig(receiver.url, retry=retry)) as pusher:
        folder = DropFolder(bundle, inbox, outbox, pusher)
        drop(inbox, "tuesday.json", state.model_dump_json())
        receiver.fail(2, 502)
        [failed] = folder.process_once()
        assert failed.status == "push_failed" and (inbox / "tuesday.json").exists()
        assert (outbox / "tuesday.decisions.csv").exists()
        [done] = folder.process_once()  # the next poll: the receiver is back
        assert done.status == "decided" and done.push.status == 200
        assert {r.headers[IDEMPOTENCY_HEADER] for r in receiver.requests} == {idempotency_key(decide(bundle,
                                                                                                      state))}
        drop(inbox, "wednesday.json", other_state.model_dump_json())
        receiver.fail(1, 422, body=b"plant dc_0 locked")
        [refused] = folder.process_once()
    assert refused.status == "rejected"
    assert (inbox / "rejected" / "wednesday.error.txt").read_text().startswith("webhook: webhook http://127.0.0.1:")
    assert "HTTP 422: plant dc_0 locked" in refused.error


def test_run_polls_until_stopped(tmp_path, bundle, state):
    inbox = tmp_path / "in"
    folder = DropFolder(bundle, inbox, tmp_path / "out")
    stop = threading.Event()
    polls: list[int] = []
    runner = threading.Thread(target=lambda: polls.append(folder.run(poll_seconds=0.05, stop=stop)))
    runner.start()
    try:
        drop(inbox, "thursday.json", state.model_dump_json())
        deadline = time.monotonic() + 10
        while not (tmp_path / "out" / "thursday.decisions.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(5)
    assert not runner.is_alive() and polls and polls[0] >= 1
    assert (inbox / "processed" / "thursday.json").exists()
    assert folder.run(poll_seconds=0, stop_after=3) == 3


def test_the_outbox_may_not_be_the_inbox(tmp_path, bundle):
    with pytest.raises(SpecError, match="^outbox: .* is the inbox; allowed: another folder"):
        DropFolder(bundle, tmp_path, tmp_path)


# ------------------------------------------------------------------ entry points, end to end


def test_dropfolder_and_decide_entry_points_end_to_end(tmp_path, signing_receiver, bundle_dir, state, other_state):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    drop(inbox, "friday.json", state.model_dump_json())
    drop(inbox, "broken.json", state.model_dump(mode="json") | {"as_of": "not a date"})
    (inbox / "saturday.json.tmp").write_text(other_state.model_dump_json()[:50])
    hook = [f"webhook.url='{signing_receiver.url}'",  # quoted: Hydra's grammar reads ?, = and & in a URL otherwise
            "webhook.secret_env=TEST_HOOK_SECRET", "webhook.backoff_seconds=0.01"]
    env = {"TEST_HOOK_SECRET": SECRET}

    done = run_module("experiments.dropfolder", f"bundle={bundle_dir}", f"inbox={inbox}", f"outbox={outbox}",
                      "once=true", *hook, f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert done.returncode == 1, done.stderr  # one file rejected
    assert "friday.json: decided" in done.stdout and "broken.json: rejected (as_of: " in done.stdout
    assert sorted(p.name for p in outbox.iterdir()) == ["friday.decisions.csv", "friday.decisions.json"]
    assert (inbox / "saturday.json.tmp").exists()
    assert SECRET not in done.stdout + done.stderr
    [pushed] = signing_receiver.requests
    assert verify_signature(SECRET, pushed.body, pushed.headers[SIGNATURE_HEADER])

    # experiments.decide on the same state: the same files, and its push carries the same key (stored once)
    offline = tmp_path / "offline"
    done = run_module("experiments.decide", f"bundle={bundle_dir}", f"state={inbox / 'processed' / 'friday.json'}",
                      *hook, f"hydra.run.dir={offline}", env=env)
    assert done.returncode == 0, done.stderr
    for suffix in ("csv", "json"):
        name = f"friday.decisions.{suffix}"
        assert (offline / name).read_bytes() == (outbox / name).read_bytes()
    assert "friday.json: pushed to http://127.0.0.1:" in done.stdout
    assert len(signing_receiver.requests) == 2 and len(signing_receiver.stored) == 1

    # a bad webhook is a config error before anything runs
    done = run_module("experiments.dropfolder", f"bundle={bundle_dir}", f"inbox={inbox}", f"outbox={outbox}",
                      "once=true", "webhook.url=ftp://erp.example.com", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["config error: webhook.url: 'ftp://erp.example.com' is not allowed; "
                                                "allowed: an http:// or https:// URL"]
