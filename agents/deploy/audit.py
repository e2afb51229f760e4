"""The audit trail of the decision service, in a real database (SQLAlchemy Core; SQLite by default).

Tables:

    requests       one row per request answered: request_sha256 and bundle_sha256 (unique together), client_id,
                   created_at (UTC), and the answer: the decisions' JSON exactly as it was sent
    decisions      one row per decision served: recommendation_id (unique), its request's row and its position
                   in that answer (`decision(recommendation_id)` reads it back)
    replays        one row per request answered again from `requests`: which client asked, and when
    active_bundle  one row: the bundle every worker should serve (path, sha256, changed_at, changed_by)

`record` is idempotent: a recommendation id is a hash of the bundle, the request and the (location, SKU), so the
same recommendation ids come back exactly when the same request comes back to the same bundle; that request's
stored answer is returned instead, and only a `replays` row is written. Two workers recording the same request at
once are safe: the unique key refuses the second insert, which then reads the first one's answer. One row per
request (and a narrow one per decision) keeps the audit at a fraction of a millisecond per request.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, so several worker processes
can share one file; any other SQLAlchemy URL (PostgreSQL, MySQL) works the same way. The service checkpoints the
WAL on a thread of its own (`checkpoint_seconds`): SQLite's automatic checkpoint runs inside the commit that
crosses 1,000 pages, which made every ~130th answer wait 10-25 ms (the open loop's p99, bench --serve).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

BUSY_TIMEOUT_SECONDS = 30

log = logging.getLogger(__name__)

metadata = sa.MetaData()

request_table = sa.Table(
    "requests", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("bundle_sha256", sa.String(64), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.UniqueConstraint("request_sha256", "bundle_sha256", name="one_answer_per_request_and_bundle"),
)

decision_table = sa.Table(
    "decisions", metadata,
    sa.Column("recommendation_id", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.Integer, sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
)

replay_table = sa.Table(
    "replays", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Integer, sa.ForeignKey("requests.id"), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

active_bundle = sa.Table(
    "active_bundle", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1: one row
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("changed_by", sa.String(64), nullable=False),
)


@dataclass(frozen=True)
class AuditRecord:
    """One answered request to record: `answer` is the JSON sent (an object with a `decisions` list), and
    `recommendation_ids` its decisions' ids in that list's order."""

    request_sha256: str
    bundle_sha256: str
    client_id: str
    recommendation_ids: Sequence[str]
    answer: bytes


@dataclass(frozen=True)
class ActiveBundle:
    """The bundle the service should serve, as the last start or admin reload set it."""

    path: str
    sha256: str
    changed_at: dt.datetime
    changed_by: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def make_engine(url: str, *, auto_checkpoint: bool = True) -> sa.Engine:
    """An engine for `url`; SQLite files get WAL mode, a busy timeout and NORMAL sync (safe with WAL), and without
    `auto_checkpoint` no checkpoint inside commits (then someone must checkpoint: `AuditLog`'s thread)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    memory = parsed.database in (None, "", ":memory:")
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
                              **({"poolclass": StaticPool} if memory else {}))

    @sa.event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if not auto_checkpoint:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    return engine


class AuditLayoutError(RuntimeError):
    """The database holds an audit trail in a layout this release does not write."""


def _refuse_old_layout(engine: sa.Engine) -> None:
    """Refuse a database whose `decisions` table has the first layout (a full row per decision): its trail
    would be silently split in two; the message says what to do."""
    inspector = sa.inspect(engine)
    if "decisions" in inspector.get_table_names():
        columns = {column["name"] for column in inspector.get_columns("decisions")}
        if "position" not in columns:
            raise AuditLayoutError(
                f"audit_url: {engine.url.render_as_string(hide_password=True)} holds decisions in the first audit "
                f"layout (a row per decision with its JSON); this release records one row per request; allowed: a "
                f"new database, or keep that one for reading and point audit_url at a new one")


class AuditLog:
    """The service's database: answers recorded idempotently, and the active bundle."""

    def __init__(self, url: str, checkpoint_seconds: float | None = None) -> None:
        """`checkpoint_seconds`: for a SQLite file, checkpoint its WAL this often on a thread of this log's (started
        here, stopped by `close`) instead of inside the commits; None: SQLite's automatic checkpoints."""
        self.url = url
        parsed = sa.make_url(url)
        on_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
        self._checkpoints = checkpoint_seconds if on_file else None
        self.engine = make_engine(url, auto_checkpoint=self._checkpoints is None)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        _refuse_old_layout(self.engine)
        for attempt in range(5):  # workers starting together may race to create the tables
            try:
                metadata.create_all(self.engine)
                break
            except OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.2)
        if self._checkpoints is not None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="audit-checkpoint", daemon=True)
            self._checkpointer.start()

    def close(self) -> None:
        """Stop the checkpoint thread (after a last checkpoint) and release the connections."""
        if self._checkpointer is not None:
            self._stop.set()
            self._checkpointer.join()
            self._checkpointer = None
            self.checkpoint()
        self.engine.dispose()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (PASSIVE: never waits for readers or writers; what another
        process's checkpoint or a reader holds is copied next time)."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _checkpoint_loop(self) -> None:
        while not self._stop.wait(self._checkpoints):
            try:
                self.checkpoint()
            except Exception as error:  # a busy or failing database: the next round tries again
                log.warning("audit checkpoint failed: %s", error)

    # -------------------------------------------------------------- decisions

    def record(self, record: AuditRecord) -> tuple[bytes, bool]:
        """Record the answer unless this request was answered by this bundle before; return the stored answer
        (the earlier one where it existed) and whether this call wrote it."""
        return self.record_many([record])[0]

    def record_many(self, records: Sequence[AuditRecord]) -> list[tuple[bytes, bool]]:
        """`record` for each of `records`, in one transaction (what a worker answered together commits together);
        a request that comes twice among them is written once and replayed the second time."""
        if not records:
            return []
        keys = list(dict.fromkeys((r.request_sha256, r.bundle_sha256) for r in records))
        for attempt in range(3):
            # read, then write in a transaction of its own: a SQLite transaction that read before another
            # process wrote could not write at all (a stale snapshot); this one waits for the lock instead
            with self.engine.connect() as conn:
                earlier = {(row.request_sha256, row.bundle_sha256): (row.id, row.answer.encode()) for row in
                           conn.execute(sa.select(request_table.c.id, request_table.c.request_sha256,
                                                  request_table.c.bundle_sha256, request_table.c.answer)
                                        .where(sa.tuple_(request_table.c.request_sha256,
                                                         request_table.c.bundle_sha256).in_(keys)))}
            try:
                with self.engine.begin() as conn:
                    return self._write(conn, records, earlier)
            except IntegrityError:  # another process recorded one of these requests in between: read its answer
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _write(conn: sa.Connection, records: Sequence[AuditRecord],
               earlier: dict[tuple[str, str], tuple[int, bytes]]) -> list[tuple[bytes, bool]]:
        now = _now()
        stored = dict(earlier)
        out: list[tuple[bytes, bool]] = []
        replays, decisions = [], []
        for record in records:
            key = (record.request_sha256, record.bundle_sha256)
            if key in stored:
                request_id, answer = stored[key]
                replays.append({"request_id": request_id, "client_id": record.client_id, "created_at": now})
                out.append((answer, False))
                continue
            request_id = conn.execute(sa.insert(request_table).values(
                request_sha256=record.request_sha256, bundle_sha256=record.bundle_sha256,
                client_id=record.client_id, created_at=now, answer=record.answer.decode())).inserted_primary_key[0]
            stored[key] = (request_id, record.answer)
            decisions += [{"recommendation_id": rid, "request_id": request_id, "position": p}
                          for p, rid in enumerate(record.recommendation_ids)]
            out.append((record.answer, True))
        if replays:
            conn.execute(sa.insert(replay_table), replays)
        if decisions:
            conn.execute(sa.insert(decision_table), decisions)
        return out

    def decision(self, recommendation_id: str) -> dict[str, Any] | None:
        """The decision served under `recommendation_id`, if one was."""
        query = (sa.select(request_table.c.answer, decision_table.c.position)
                 .join(request_table, request_table.c.id == decision_table.c.request_id)
                 .where(decision_table.c.recommendation_id == recommendation_id))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else json.loads(row.answer)["decisions"][row.position]

    def rows(self, request_sha256: str | None = None) -> list[dict[str, Any]]:
        """One dict per decision served (all, or those of one request), oldest first: recommendation_id,
        request_sha256, client_id, bundle_sha256, decision, created_at."""
        query = sa.select(request_table).order_by(request_table.c.id)
        if request_sha256 is not None:
            query = query.where(request_table.c.request_sha256 == request_sha256)
        with self.engine.connect() as conn:
            found = list(conn.execute(query))
        out = []
        for row in found:
            for decision in json.loads(row.answer)["decisions"]:
                out.append({"recommendation_id": decision["recommendation_id"], "request_sha256": row.request_sha256,
                            "client_id": row.client_id, "bundle_sha256": row.bundle_sha256, "decision": decision,
                            "created_at": row.created_at})
        return out

    def replays(self, request_sha256: str | None = None) -> list[dict[str, Any]]:
        """The requests answered again from the audit (all, or one request's): request_sha256, client_id,
        created_at, oldest first."""
        query = (sa.select(request_table.c.request_sha256, replay_table.c.client_id, replay_table.c.created_at)
                 .join(request_table, request_table.c.id == replay_table.c.request_id).order_by(replay_table.c.id))
        if request_sha256 is not None:
            query = query.where(request_table.c.request_sha256 == request_sha256)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # -------------------------------------------------------------- the active bundle

    def publish_bundle(self, path: str, sha256: str, changed_by: str) -> None:
        """Make `path` (with hash `sha256`) the bundle every worker serves."""
        values = {"path": path, "sha256": sha256, "changed_at": _now(), "changed_by": changed_by}
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    done = conn.execute(sa.update(active_bundle).where(active_bundle.c.id == 1).values(**values))
                    if done.rowcount == 0:
                        conn.execute(sa.insert(active_bundle).values(id=1, **values))
                return
            except IntegrityError:  # two first publishers at once: the other inserted; update it now
                if attempt == 2:
                    raise

    def active(self) -> ActiveBundle | None:
        """The bundle to serve, if one was published."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(active_bundle).where(active_bundle.c.id == 1)).first()
        if row is None:
            return None
        return ActiveBundle(row.path, row.sha256, row.changed_at, row.changed_by)
