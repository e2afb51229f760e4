"""The decision service's parts without a server: rate limiter, clients file and its CLI, signing key, tokens,
and the audit log's idempotent appends under concurrency (tests/experiments/test_service.py tests them over
HTTP)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time

import pytest

from agents.deploy import auth
from agents.deploy.audit import AuditLayoutError, AuditLog, AuditRecord
from agents.deploy.auth import AuthError, ClientStore, TokenIssuer, add_client, grant, read_clients, require
from agents.deploy.ratelimit import RateLimiter, retry_after
from twin.config import SpecError

KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    wait = limiter.acquire("a")
    assert wait == pytest.approx(0.5)
    assert limiter.acquire("b") is None  # buckets are per key
    clock.now = 0.5
    assert limiter.acquire("a") is None and limiter.acquire("a") is not None
    clock.now = 100.0
    assert [limiter.acquire("a") for _ in range(4)].count(None) == 3  # refilled to the burst, not beyond
    assert retry_after(0.01) == "1" and retry_after(1.2) == "2"


def test_rate_limiter_keeps_a_bounded_number_of_keys():
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=100, clock=Clock())
    for i in range(1000):
        limiter.acquire(f"made-up-{i}")
    assert len(limiter._buckets) == 100


def test_add_client_cli_prints_the_secret_once_and_stores_its_hash(tmp_path, capsys):
    path = tmp_path / "clients.json"
    assert auth.main(["add-client", "--clients", str(path), "--id", "erp-1", "--scopes", "decide"]) == 0
    secret = capsys.readouterr().out.split("client_secret: ")[1].split()[0]
    text = path.read_text()
    assert secret not in text and "$argon2id$" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_clients(path)["erp-1"].scopes == ("decide",)
    assert ClientStore(path).authenticate("erp-1", secret) is not None
    assert ClientStore(path).authenticate("erp-1", secret + "x") is None
    assert ClientStore(path).authenticate("nobody", secret) is None

    assert auth.main(["list-clients", "--clients", str(path)]) == 0
    assert secret not in capsys.readouterr().out
    assert auth.main(["add-client", "--clients", str(path), "--id", "bad id!", "--scopes", "decide"]) == 2
    assert "--id" in capsys.readouterr().err


def test_clients_file_errors_name_the_file_and_entry(tmp_path):
    path = tmp_path / "clients.json"
    with pytest.raises(SpecError, match="no such clients file"):
        read_clients(path)
    path.write_text(json.dumps({"clients": {"erp": {"secret_hash": "$argon2id$x", "scopes": ["root"]}}}))
    with pytest.raises(SpecError, match=r"clients\.erp\.scopes: 'root' is not a scope; allowed"):
        read_clients(path)


def test_client_store_sees_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 0.0)
    path = tmp_path / "clients.json"
    add_client(path, "erp", ["decide"])
    store = ClientStore(path)
    assert store.get("ops") is None
    time.sleep(0.01)
    add_client(path, "ops", ["admin"])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a distinct modification time
    assert store.get("ops").scopes == ("admin",)


def test_signing_key_from_env_or_a_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY", "short")
    with pytest.raises(SpecError, match="TEST_KEY: the signing key is 5 bytes; allowed: at least 32"):
        auth.signing_key("TEST_KEY", None)
    monkeypatch.setenv("TEST_KEY", "x" * 40)
    assert auth.signing_key("TEST_KEY", tmp_path / "unused") == b"x" * 40
    assert not (tmp_path / "unused").exists()

    monkeypatch.delenv("TEST_KEY")
    path = tmp_path / "keys" / "signing.key"
    key = auth.signing_key("TEST_KEY", path)
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.signing_key("TEST_KEY", path) == key  # generated once, then read
    path.chmod(0o644)
    with pytest.raises(SpecError, match="readable by others"):
        auth.signing_key("TEST_KEY", path)


def test_a_token_checked_before_is_still_refused_once_expired_or_its_client_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 0.0)
    path = tmp_path / "clients.json"
    add_client(path, "erp", ["decide"])
    store = ClientStore(path)
    issuer = TokenIssuer(KEY, 60)
    token = issuer.issue("erp", ["decide"])
    assert issuer.verify(token, store).client_id == "erp"
    decoded = []
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: decoded.append(1) or pytest.fail("decoded again"))
    assert issuer.verify(token, store).client_id == "erp" and decoded == []  # its claims are kept ...
    monkeypatch.undo()
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 0.0)
    brief = TokenIssuer(KEY, 1)
    short = brief.issue("erp", ["decide"])
    assert brief.verify(short, store).client_id == "erp"
    time.sleep(2.1)  # past its expiry (whole seconds)
    with pytest.raises(AuthError, match="expired"):  # ... until it expires
        brief.verify(short, store)
    other = issuer.issue("erp", ["decide"], now=time.time() - 1)
    issuer.verify(other, store)
    auth.remove_client(path, "erp")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(AuthError, match="no longer registered"):  # the client is looked up every time
        issuer.verify(other, store)


def test_tokens_expire_are_bound_to_the_key_and_to_registered_clients(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 0.0)
    path = tmp_path / "clients.json"
    add_client(path, "erp", ["decide"])
    store = ClientStore(path)
    issuer = TokenIssuer(KEY, 60)
    principal = issuer.verify(issuer.issue("erp", ["decide"]), store)
    assert principal.client_id == "erp" and principal.scopes == {"decide"}
    require(principal, "decide")
    with pytest.raises(AuthError) as refused:
        require(principal, "admin")
    assert refused.value.status == 403 and refused.value.code == "insufficient_scope"

    for token, text in ((issuer.issue("erp", ["decide"], now=time.time() - 3600), "expired"),
                        (TokenIssuer(b"o" * 32, 60).issue("erp", ["decide"]), "not valid"),
                        ("abc", "not valid")):
        with pytest.raises(AuthError, match=text) as refused:
            issuer.verify(token, store)
        assert refused.value.status == 401 and refused.value.code == "invalid_token"

    # a scope the client no longer holds is not granted; a removed client's tokens stop working
    assert issuer.verify(issuer.issue("erp", ["decide", "admin"]), store).scopes == {"decide"}
    auth.remove_client(path, "erp")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(AuthError, match="no longer registered"):
        issuer.verify(issuer.issue("erp", ["decide"]), store)


def test_grant_gives_the_requested_scopes_or_all_of_the_clients():
    client = auth.Client("ops", "$argon2id$x", ("admin", "decide"))
    assert grant(client, None) == ("admin", "decide")
    assert grant(client, " decide ") == ("decide",)
    with pytest.raises(ValueError, match="scope 'root' is not allowed for this client; allowed: admin decide"):
        grant(client, "decide root")


def _record(n: int, tag: str, client: str = "erp", answer_tag: str | None = None) -> AuditRecord:
    ids = [f"{tag}-{i}" for i in range(n)]
    answer = {"request_sha256": f"req-{tag}",
              "decisions": [{"recommendation_id": rid, "order": i, "tag": answer_tag or tag} for i, rid in
                            enumerate(ids)]}
    return AuditRecord(f"req-{tag}", "bundle", client, ids, json.dumps(answer).encode())


def test_audit_records_once_and_returns_the_stored_answer(tmp_path):
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    try:
        first = _record(3, "a")
        stored, written = audit.record(first)
        assert written and stored == first.answer
        # the same request again, from another client, answered otherwise (an earlier release): the first answer
        stored, written = audit.record(_record(3, "a", client="ops", answer_tag="changed"))
        assert not written and stored == first.answer
        # the same request to another bundle is another request
        other = AuditRecord("req-a", "bundle-2", "erp", ["b-0"], b'{"decisions": [{"recommendation_id": "b-0"}]}')
        assert audit.record(other) == (other.answer, True)
        rows = audit.rows("req-a")
        assert [r["recommendation_id"] for r in rows] == ["a-0", "a-1", "a-2", "b-0"]
        assert rows[1]["decision"] == {"recommendation_id": "a-1", "order": 1, "tag": "a"}
        assert {r["client_id"] for r in rows} == {"erp"} and rows[3]["bundle_sha256"] == "bundle-2"
        assert audit.decision("a-2") == {"recommendation_id": "a-2", "order": 2, "tag": "a"}
        assert audit.decision("nope") is None
        assert [(r["request_sha256"], r["client_id"]) for r in audit.replays()] == [("req-a", "ops")]
    finally:
        audit.close()


def test_audit_records_a_batch_in_one_go_a_request_twice_in_it_is_a_replay(tmp_path):
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    try:
        assert audit.record_many([]) == []
        audit.record(_record(2, "old"))
        batch = [_record(3, "a"), _record(2, "old", client="ops", answer_tag="changed"), _record(1, "b"),
                 _record(3, "a", client="ops", answer_tag="changed")]
        results = audit.record_many(batch)
        assert [written for _, written in results] == [True, False, True, False]
        # a replay gets the answer stored first: the earlier batch's, or the one written earlier in this batch
        assert results[1][0] == _record(2, "old").answer and results[3][0] == batch[0].answer
        assert [r["recommendation_id"] for r in audit.rows()] == ["old-0", "old-1", "a-0", "a-1", "a-2", "b-0"]
        assert audit.decision("a-2")["order"] == 2 and audit.decision("b-0")["tag"] == "b"
        assert [(r["request_sha256"], r["client_id"]) for r in audit.replays()] == [("req-old", "ops"),
                                                                                  ("req-a", "ops")]
    finally:
        audit.close()


def test_audit_refuses_a_database_of_the_first_layout(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE decisions (id INTEGER PRIMARY KEY, recommendation_id TEXT, decision TEXT)")
    with pytest.raises(AuditLayoutError, match="audit_url: sqlite:///.*old.sqlite holds decisions in the first"):
        AuditLog(f"sqlite:///{path}")


def test_audit_concurrent_records_of_the_same_request_write_one_answer(tmp_path):
    """Two connections (as two workers) record the same request at the same moment, many times over."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    logs = [AuditLog(url), AuditLog(url)]
    errors, results = [], []
    try:
        for round_ in range(15):
            barrier = threading.Barrier(2)

            def record(log: AuditLog, round_: int = round_, barrier: threading.Barrier = barrier) -> None:
                try:
                    barrier.wait()
                    results.append(log.record(_record(50, f"r{round_}")))
                except Exception as error:  # collected: a thread's exception would not fail the test
                    errors.append(error)

            threads = [threading.Thread(target=record, args=(log,)) for log in logs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
        assert len(logs[0].rows()) == 15 * 50
        assert sum(written for _, written in results) == 15  # one writer per round, the other replays
        assert len(logs[0].replays()) == 15
        assert len({stored for stored, _ in results}) == 15
    finally:
        for log in logs:
            log.close()


def test_active_bundle_is_one_row(tmp_path):
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    try:
        assert audit.active() is None
        audit.publish_bundle("/a", "1" * 64, "start")
        audit.publish_bundle("/b", "2" * 64, "ops")
        active = audit.active()
        assert (active.path, active.sha256, active.changed_by) == ("/b", "2" * 64, "ops")
    finally:
        audit.close()


def test_the_batcher_answers_what_queued_up_together_each_caller_its_own_answer():
    import asyncio

    from agents.deploy.batching import Batcher, BatcherStopped

    seen: list[list[int]] = []
    gate = threading.Event()

    def answer(jobs: list[int]) -> list:
        seen.append(list(jobs))
        if jobs[0] == 0:
            gate.wait(5)  # the first batch holds the thread while the others queue up
        if 99 in jobs:
            raise RuntimeError("the whole batch failed")
        return [ValueError(f"job {j} refused") if j == 7 else j * 10 for j in jobs]

    batcher = Batcher(answer, max_batch=4)

    async def main() -> list:
        with pytest.raises(BatcherStopped):
            await batcher.submit(1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # job 0 is being answered: the next six queue up
        rest = [asyncio.ensure_future(batcher.submit(j)) for j in range(1, 7)]
        await asyncio.sleep(0.05)
        gate.set()
        answers = await asyncio.gather(first, *rest)
        with pytest.raises(ValueError, match="job 7 refused"):
            await batcher.submit(7)
        with pytest.raises(RuntimeError, match="the whole batch failed"):
            await batcher.submit(99)
        assert await batcher.submit(8) == 80  # the thread goes on after a failed batch
        return answers

    try:
        assert asyncio.run(main()) == [0, 10, 20, 30, 40, 50, 60]
    finally:
        batcher.stop()
    assert seen[:3] == [[0], [1, 2, 3, 4], [5, 6]]  # in arrival order, at most max_batch at a time
    assert batcher.jobs == 10 and batcher.batches == 6
    with pytest.raises(ValueError, match="max_batch: 0 is not allowed; allowed: >= 1"):
        Batcher(answer, max_batch=0)


def test_a_batch_takes_jobs_up_to_their_weight():
    import asyncio

    from agents.deploy.batching import Batcher

    seen: list[list[int]] = []
    gate = threading.Event()

    def answer(jobs: list[int]) -> list[int]:
        seen.append(list(jobs))
        if jobs == [0]:
            gate.wait(5)
        return jobs

    batcher = Batcher(answer, max_batch=10, weight=lambda job: job, max_weight=10)

    async def main() -> list[int]:
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.submit(j)) for j in (4, 5, 2, 20, 1)]
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(first, *rest))

    try:
        assert asyncio.run(main()) == [0, 4, 5, 2, 20, 1]
    finally:
        batcher.stop()
    # 4 + 5 fit 10, 2 more would not; a job heavier than the limit goes alone, at the head of its batch
    assert seen == [[0], [4, 5], [2], [20], [1]]


def test_the_audit_checkpoints_its_wal_on_its_own_thread_not_in_commits(tmp_path):
    """SQLite's automatic checkpoint ran inside the commit crossing 1,000 pages (a 10-25 ms answer every ~130th
    request); the service's AuditLog turns it off and checkpoints on a thread of its own."""
    from agents.deploy.audit import make_engine

    big = json.dumps({"decisions": [], "pad": "x" * 40_000}).encode()

    def fill(log: AuditLog, tag: str) -> None:
        log.record_many([AuditRecord(f"{tag}-{n}", "bundle", "erp", [f"{tag}-{n}-0"], big) for n in range(150)])

    # without a checkpointer and without automatic checkpoints, the database file never grows: all is in the WAL
    alone = tmp_path / "alone.sqlite"
    AuditLog(f"sqlite:///{alone}").close()
    engine = make_engine(f"sqlite:///{alone}", auto_checkpoint=False)
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        for n in range(150):
            conn.exec_driver_sql("INSERT INTO requests (request_sha256, bundle_sha256, client_id, created_at, answer) "
                                 "VALUES (?, 'b', 'c', '2026-01-01', ?)", (f"r{n}", big.decode()))
    assert alone.stat().st_size < 1_000_000
    engine.dispose()

    path = tmp_path / "audit.sqlite"
    log = AuditLog(f"sqlite:///{path}", checkpoint_seconds=0.05)
    try:
        with log.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        fill(log, "a")
        deadline = time.monotonic() + 10
        while path.stat().st_size < 5_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 5_000_000  # the thread copied the WAL into the database
    finally:
        log.close()
    again = AuditLog(f"sqlite:///{path}")
    try:
        with again.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM requests").scalar() == 150
            assert conn.exec_driver_sql("SELECT count(*) FROM decisions").scalar() == 150
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000  # SQLite's default
    finally:
        again.close()
