"""The bundle a worker serves now, and its hot reload.

A `BundleSlot` holds one checked bundle. A request reads `slot.current` once and decides with it to the end,
so swapping in another bundle (one attribute assignment, atomic in Python) never fails a request in flight.

A new bundle is checked before it serves: `load_bundle` (manifest, every file's hash) and `self_check()`
(parity on its own sample observations). The admin endpoint checks it, publishes its path and hash in the
audit database (`active_bundle`), and swaps. Every worker process polls that row (at most once per
`interval` seconds, in a background thread) and swaps when the hash differs from its own, after the same
checks and after confirming the files still hash to what was published; a bundle that fails is logged once
and the old one keeps serving.

Where a bundle may come from: an admin's path must resolve (symlinks followed) inside one of the allowed roots
(`confined`); an uploaded bundle.zip is unpacked into `bundles_dir/<sha256 of the zip>/` (`unpack_upload`) and
then checked, published and swapped like a path; a refused upload leaves no folder behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.deploy.audit import AuditLog
from agents.deploy.bundle import Bundle, BundleError, load_bundle, unpack_zip

log = logging.getLogger("agents.deploy.reload")

UPLOAD_PREFIX = ".upload-"  # an upload being received: bundles_dir/.upload-XXXX.zip (removed once unpacked)
UNPACK_PREFIX = ".unpack-"  # ... and being unpacked: bundles_dir/.unpack-XXXX/ (renamed to its sha256, or removed)


class OutsideRoots(ValueError):
    """A reload path that resolves outside every allowed root."""


def confined(path: str | Path, roots: Sequence[Path]) -> Path:
    """`path` made absolute with `~` expanded and every symlink resolved, if it lies in one of `roots`
    (resolved folders); OutsideRoots naming the path and the roots otherwise."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (RuntimeError, OSError) as error:  # `~nobody`, a symlink loop
        raise OutsideRoots(f"{str(path)!r} cannot be resolved ({error}); allowed: a bundle in "
                           f"{', '.join(repr(str(r)) for r in roots)}") from None
    inside = [root for root in roots if resolved.is_relative_to(root)]
    if inside and any(part.startswith(".") for part in resolved.relative_to(inside[0]).parts):
        raise OutsideRoots(f"{str(resolved)!r} is a hidden name (an upload in progress is written as .upload-* "
                           f"or .unpack-*); allowed: a bundle folder or zip without a leading dot")
    if inside:
        return resolved
    raise OutsideRoots(f"{str(resolved)!r} (symlinks resolved) is outside the folders a reload may read; allowed: "
                       f"a bundle in {', '.join(repr(str(r)) for r in roots)} (settings bundles_dir, "
                       f"reload_roots)")


def unpack_upload(archive: Path, digest: str, bundles_dir: Path) -> tuple[Path, bool]:
    """Unpack the uploaded bundle.zip `archive` (whose sha256 is `digest`) as the folder `bundles_dir/<digest>`:
    (that folder, whether this call made it; an earlier upload of the same zip is reused). It is unpacked into a
    scratch folder beside it first, then renamed, so the folder is whole or absent; BundleError (nothing left
    behind) for an archive that `unpack_zip` refuses."""
    final = bundles_dir / digest
    if final.is_dir():
        return final, False
    scratch = Path(tempfile.mkdtemp(prefix=UNPACK_PREFIX, dir=bundles_dir))
    try:
        inner = unpack_zip(archive, scratch, "the uploaded bundle.zip")
        try:
            os.rename(inner, final)
        except OSError:
            if final.is_dir():  # the same zip, unpacked meanwhile by another worker
                return final, False
            raise
        return final, True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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

    def upload(self, archive: Path, digest: str, bundles_dir: Path, changed_by: str) -> tuple[Served, Served]:
        """Unpack the uploaded bundle.zip `archive` (sha256 `digest`) into `bundles_dir/<digest>`, then check,
        publish and serve it as `reload` does: (new, previous). BundleError if it fails (nothing changes, and a
        folder this upload made is removed)."""
        with self._lock:
            path, made = unpack_upload(archive, digest, bundles_dir)
            try:
                return self.reload(str(path), changed_by)
            except BaseException:
                if made:
                    shutil.rmtree(path, ignore_errors=True)
                raise

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
