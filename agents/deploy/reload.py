"""The bundle a worker serves now, and its hot reload.

A `BundleSlot` holds one checked bundle. A request reads `slot.current` once and decides with it to the end,
so swapping in another bundle (one attribute assignment, atomic in Python) never fails a request in flight.

A new bundle is checked before it serves: `load_bundle` (manifest, every file's hash) and `self_check()`
(parity on its own sample observations). The admin endpoint checks it, publishes its path and hash in the
audit database (`active_bundle`), and swaps. Every worker process polls that row (at most once per
`interval` seconds, in a background thread) and swaps when the hash differs from its own, after the same
checks and after confirming the files still hash to what was published; a bundle that fails is logged once
and the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agents.deploy.audit import AuditLog
from agents.deploy.bundle import Bundle, BundleError, load_bundle

log = logging.getLogger("agents.deploy.reload")


def checked_bundle(path: str | Path) -> Bundle:
    """The bundle at `path`, loaded (manifest and file hashes) and self-checked; BundleError says what is wrong."""
    bundle = load_bundle(path)
    bundle.self_check()
    return bundle


@dataclass(frozen=True)
class Served:
    """A bundle in service and the directory it was loaded from."""

    bundle: Bundle
    path: str


class BundleSlot:
    """The bundle this worker serves; swapped atomically by `install` (admin) or `poll` (published by another
    worker)."""

    def __init__(self, served: Served, audit: AuditLog, interval: float = 1.0,
                 on_swap: Callable[[Served, Served], None] | None = None) -> None:
        self._served, self.audit, self.interval, self.on_swap = served, audit, interval, on_swap
        self._lock = threading.RLock()        # one reload or poll at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: tuple[str, str] | None = None  # the (path, sha256) that failed, so it is logged once

    @property
    def current(self) -> Served:
        """The bundle to decide with (read it once per request)."""
        return self._served

    def install(self, served: Served) -> Served:
        """Serve `served` from now on (then call `on_swap(new, previous)`); return what served before."""
        with self._lock:
            previous, self._served = self._served, served
            if self.on_swap is not None:
                self.on_swap(served, previous)
        log.info("serving bundle %s (sha256 %s) from %s", served.bundle.name, served.bundle.sha256, served.path)
        return previous

    def reload(self, path: str, changed_by: str) -> tuple[Served, Served]:
        """Check the bundle at `path`, publish it to every worker and serve it here: (new, previous).
        BundleError (nothing changes) if it fails its checks."""
        with self._lock:
            bundle = checked_bundle(path)
            self.audit.publish_bundle(path, bundle.sha256, changed_by)
            return Served(bundle, path), self.install(Served(bundle, path))

    def poll(self) -> None:
        """Swap to the published bundle if it is not the one served (checked the same way as `reload`)."""
        with self._lock:
            active = self.audit.active()
            if active is None or active.sha256 == self._served.bundle.sha256:
                return
            if self._refused == (active.path, active.sha256):
                return
            try:
                bundle = checked_bundle(active.path)
                if bundle.sha256 != active.sha256:
                    raise BundleError(f"{active.path}: hashes to {bundle.sha256}, published as {active.sha256} "
                                      f"(changed since it was checked)")
            except (OSError, ValueError) as error:  # BundleError, or a path the file system refuses
                self._refused = (active.path, active.sha256)
                log.error("published bundle refused, still serving %s: %s", self._served.bundle.sha256, error)
                return
            self.install(Served(bundle, active.path))

    def start(self) -> None:
        """Poll in a background thread until `stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bundle-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the polling thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a database hiccup must not end the polling: log it and try again next time
                log.exception("checking the published bundle failed")
