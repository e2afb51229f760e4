"""bundle.zip handling (agents/deploy/bundle.py, reload.py): members that would land outside the folder are refused
before anything is written, a zip loads into a temporary folder that goes away with its Bundle (and at once when
it is refused), an upload unpacks into bundles_dir/<sha256>/ or leaves nothing, and path reloads stay inside
their roots. A tiny base-stock bundle is written here; the service over HTTP is tested in
tests/experiments/test_service.py."""

from __future__ import annotations

import gc
import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import yaml

from agents.deploy.bundle import (
    MANIFEST,
    PARAMETERS_FILE,
    BundleError,
    config_sha256,
    finish_bundle,
    load_bundle,
    now_utc,
    unpack_zip,
    unsafe_member,
    write_network,
)
from agents.deploy.reload import OutsideRoots, confined, unpack_upload
from twin.snapshot import network_hash
from twin.state import Topology

ROOT = Path(__file__).resolve().parents[2]


def _bundle(out: Path, level: float = 50.0) -> Path:
    """A base-stock bundle on the small network, levels all `level`; bundle.zip beside it."""
    data = yaml.safe_load((ROOT / "conf" / "network" / "small.yaml").read_text())
    out.mkdir(parents=True)
    network = write_network(out, data)
    topo = Topology.of(network)
    np.savez(out / PARAMETERS_FILE, levels=np.full((len(topo.names), network.skus.n), level))
    finish_bundle(out, {"name": "base_stock", "kind": "rule", "rule": "base_stock", "created": now_utc(),
                        "network_name": network.name, "network_hash": network_hash(network),
                        "nodes": list(topo.names), "skus": list(network.skus.name),
                        "roles": {n.name: n.kind for n in network.nodes if n.kind != "supplier"},
                        "config": {}, "config_sha256": config_sha256({}), "packages": {}})
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return _bundle(tmp_path_factory.mktemp("b") / "bundle")


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """tempfile's folder for this test alone, to count what loading leaves there."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _rezip(source: Path, target: Path, extra: Mapping[str, bytes] = MappingProxyType({}),
           change: Mapping[str, bytes] = MappingProxyType({})) -> Path:
    """A copy of the zip `source` with members replaced (`change`) and added (`extra`)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            base = info.filename.split("/", 1)[-1]
            out.writestr(info, change.get(base, src.read(info)))
        for name, data in extra.items():
            out.writestr(name, data)
    return target


@pytest.mark.parametrize("name", ["../x", "bundle/../../x", "/etc/x", "..\\x", "C:/x", "C:x", "\\\\host\\x"])
def test_members_that_would_land_outside_are_unsafe(name):
    assert unsafe_member(name)


@pytest.mark.parametrize("name", ["bundle/manifest.json", "a/b..c/x", "..x", "forecaster/lstm.onnx"])
def test_members_inside_are_safe(name):
    assert not unsafe_member(name)


@pytest.mark.parametrize("member", ["../escaped.txt", "/tmp/escaped.txt", "bundle/../../escaped.txt"])
def test_a_zip_with_a_member_outside_its_folder_is_refused_and_writes_nothing(bundle, tmp_path, scratch, member):
    archive = _rezip(bundle.parent / "bundle.zip", tmp_path / "evil.zip", extra={member: b"x"})
    target = tmp_path / "deep" / "target"
    with pytest.raises(BundleError, match=f"member '{member}' is not allowed"):
        unpack_zip(archive, target)
    assert not target.exists() and not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    with pytest.raises(BundleError, match="is not allowed"):
        load_bundle(archive)
    assert list(scratch.iterdir()) == []


def test_loading_a_zip_twice_leaves_no_temporary_folder(bundle, scratch):
    first = load_bundle(bundle.parent / "bundle.zip")
    second = load_bundle(bundle.parent / "bundle.zip")
    assert first.sha256 == second.sha256 == load_bundle(bundle).sha256
    assert first.path != second.path and {p.parent for p in (first.path, second.path)} <= set(scratch.iterdir())
    assert first.path.is_dir() and second.path.is_dir()  # the files stay while their Bundle lives
    del first, second
    gc.collect()
    assert list(scratch.iterdir()) == []


def test_a_refused_zip_leaves_no_temporary_folder(bundle, tmp_path, scratch):
    tampered = _rezip(bundle.parent / "bundle.zip", tmp_path / "t.zip", change={PARAMETERS_FILE: b"changed"})
    with pytest.raises(BundleError, match=f"{PARAMETERS_FILE}: its sha256"):
        load_bundle(tampered)
    damaged = tmp_path / "d.zip"
    data = bytearray((bundle.parent / "bundle.zip").read_bytes())
    data[40:60] = b"\0" * 20  # inside the first member's compressed data: its CRC fails
    damaged.write_bytes(bytes(data))
    with pytest.raises(BundleError):
        load_bundle(damaged)
    assert list(scratch.iterdir()) == []


def test_an_upload_unpacks_into_its_sha256_or_leaves_nothing(bundle, tmp_path):
    bundles_dir = tmp_path / "bundles"
    bundles_dir.mkdir()
    archive = bundle.parent / "bundle.zip"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    path, made = unpack_upload(archive, digest, bundles_dir)
    assert made and path == bundles_dir / digest and (path / MANIFEST).is_file()
    assert load_bundle(path).sha256 == load_bundle(bundle).sha256
    assert unpack_upload(archive, digest, bundles_dir) == (path, False)  # the same zip again: reused
    assert sorted(p.name for p in bundles_dir.iterdir()) == [digest]

    evil = _rezip(archive, tmp_path / "evil.zip", extra={"../escaped.txt": b"x"})
    with pytest.raises(BundleError, match="the uploaded bundle.zip: member '../escaped.txt'"):
        unpack_upload(evil, "f" * 64, bundles_dir)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="the uploaded bundle.zip: not a readable zip archive"):
        unpack_upload(garbage, "e" * 64, bundles_dir)
    assert sorted(p.name for p in bundles_dir.iterdir()) == [digest]
    assert not (tmp_path / "escaped.txt").exists()


def test_a_reload_path_must_resolve_inside_a_root(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "b").mkdir(parents=True)
    (outside / "b").mkdir(parents=True)
    roots = (allowed.resolve(),)
    assert confined(allowed / "b", roots) == (allowed / "b").resolve()
    assert confined(allowed / "not-yet", roots) == (allowed / "not-yet").resolve()  # loading then names it
    for path in (outside / "b", allowed / ".." / "outside" / "b", Path("/etc")):
        with pytest.raises(OutsideRoots, match=f"allowed: a bundle in '{allowed.resolve()}'"):
            confined(path, roots)
    (allowed / "link").symlink_to(outside / "b")  # a symlink inside pointing outside
    with pytest.raises(OutsideRoots, match="symlinks resolved"):
        confined(allowed / "link", roots)
    shutil.rmtree(outside)
    with pytest.raises(OutsideRoots, match="is a hidden name"):  # an upload still being written
        confined(allowed / ".upload-1234.zip", roots)


def test_any_corrupted_byte_of_a_bundle_zip_is_a_bundle_error(bundle, tmp_path, scratch):
    """A flipped byte anywhere in the archive (deflate streams included: zlib.error) is refused as a BundleError,
    which the service answers with 422, never an uncaught error (500)."""
    original = (bundle.parent / "bundle.zip").read_bytes()
    step = max(1, len(original) // 60)
    for at in range(0, len(original), step):
        damaged = bytearray(original)
        damaged[at] ^= 0x5A
        path = tmp_path / f"d{at}.zip"
        path.write_bytes(bytes(damaged))
        try:
            load_bundle(path)
        except BundleError:
            pass
    assert list(scratch.iterdir()) == []


def test_a_zip_with_too_many_members_is_refused(tmp_path, scratch, monkeypatch):
    import agents.deploy.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "MAX_ZIP_MEMBERS", 3)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(4):
            z.writestr(f"f{i}.txt", "x")
    with pytest.raises(BundleError, match="4 members; allowed: at most 3"):
        load_bundle(many)
