"""The audit trail of the decision service, in a real database (SQLAlchemy Core; SQLite by default).

Tables:

    decisions      one row per decision served: recommendation_id (unique), request_sha256, client_id,
                   bundle_sha256, decision (its JSON), created_at (UTC)
    active_bundle  one row: the bundle every worker should serve (path, sha256, changed_at, changed_by)

`append` is idempotent by recommendation id: a decision whose id is stored already is not written again, and
the stored one is returned instead, so the same request sent twice gets the same answer and one set of rows.
Two workers appending the same ids at once are safe: the unique key refuses the second insert, which then
reads the first one's rows.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, so several worker processes
can share one file; any other SQLAlchemy URL (PostgreSQL, MySQL) works the same way.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

BUSY_TIMEOUT_SECONDS = 30
_CHUNK = 500  # ids per IN (...) query, below every database's limit on bound parameters

metadata = sa.MetaData()

decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recommendation_id", sa.String(128), nullable=False, unique=True),
    sa.Column("request_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("bundle_sha256", sa.String(64), nullable=False),
    sa.Column("decision", sa.JSON, nullable=False),
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
class AuditRow:
    """One decision to record."""

    recommendation_id: str
    request_sha256: str
    client_id: str
    bundle_sha256: str
    decision: dict[str, Any]


@dataclass(frozen=True)
class ActiveBundle:
    """The bundle the service should serve, as the last start or admin reload set it."""

    path: str
    sha256: str
    changed_at: dt.datetime
    changed_by: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _values(row: AuditRow) -> dict[str, Any]:
    return {"recommendation_id": row.recommendation_id, "request_sha256": row.request_sha256,
            "client_id": row.client_id, "bundle_sha256": row.bundle_sha256, "decision": row.decision,
            "created_at": _now()}


def make_engine(url: str) -> sa.Engine:
    """An engine for `url`; SQLite files get WAL mode, a busy timeout and NORMAL sync (safe with WAL)."""
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
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    return engine


class AuditLog:
    """The service's database: decisions appended idempotently, and the active bundle."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        for attempt in range(5):  # workers starting together may race to create the tables
            try:
                metadata.create_all(self.engine)
                break
            except OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    # -------------------------------------------------------------- decisions

    def append(self, rows: Sequence[AuditRow]) -> tuple[dict[str, dict[str, Any]], int]:
        """Record the rows whose recommendation id is new; return the stored decision of every row's id (the
        earlier one where it existed) and how many rows were written."""
        mine = {row.recommendation_id: row.decision for row in rows}
        for attempt in range(3):
            # read, then write in a transaction of its own: a SQLite transaction that read before another
            # process wrote could not write at all (a stale snapshot); this one waits for the lock instead
            stored = self.stored(mine)
            new = [row for row in rows if row.recommendation_id not in stored]
            try:
                if new:
                    with self.engine.begin() as conn:
                        conn.execute(sa.insert(decisions), [_values(row) for row in new])
                return {key: stored.get(key, value) for key, value in mine.items()}, len(new)
            except IntegrityError:  # another process wrote some of these ids in between: read them again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def stored(self, recommendation_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored decision for each of the ids that has one."""
        with self.engine.connect() as conn:
            return self._stored(conn, list(recommendation_ids))

    @staticmethod
    def _stored(conn: sa.Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids, found = list(ids), {}
        column = decisions.c.recommendation_id
        for i in range(0, len(ids), _CHUNK):
            query = sa.select(column, decisions.c.decision).where(column.in_(ids[i:i + _CHUNK]))
            found.update({key: value for key, value in conn.execute(query)})
        return found

    def rows(self, request_sha256: str | None = None) -> list[dict[str, Any]]:
        """Audit rows (all, or those of one request), oldest first, as dicts."""
        query = sa.select(decisions).order_by(decisions.c.id)
        if request_sha256 is not None:
            query = query.where(decisions.c.request_sha256 == request_sha256)
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
