"""Joining a running Ray cluster (`trainer.ray_address`, the stress test's `ray.address`), with one clear error
when that cannot work.

Ray (2.60) rewrites a loopback address: `ray.init(address="127.0.0.1:PORT")` and `ray start --head
--node-ip-address=127.0.0.1` both dial or register this machine's network-interface address instead,
unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` is set (`ray._private.services.resolve_ip_for_localhost` ->
`get_node_ip_address`, which returns 127.0.0.1 only when that switch, on by default on Linux, is off; the
switch is named for macOS and Windows, where it is off by default). With it set for `ray start` every
process of the head listens on 127.0.0.1 only; the driver needs it too, or it dials the interface address,
where nothing listens. Such a head takes no other machines (`ray start --address` refuses to start a
worker node): it is a cluster on one machine, for testing. README.md, "A cluster on one machine, loopback
only", has the commands.

A head started by `ray start` (2.59 and later) asks for a token when the caller has not set
`RAY_AUTH_MODE`; a driver given an explicit address sends one only with `RAY_AUTH_MODE=token` (the token
from `RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or ~/.ray/auth_token).
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from twin import SpecError

log = logging.getLogger("experiments.ray_cluster")

LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # what Ray rewrites (ray._common.network_utils.is_localhost)
PROBE_TIMEOUT_S = 3.0
README = 'README.md, "A cluster on one machine, loopback only"'


def keeps_loopback() -> bool:
    """Whether Ray in this process keeps 127.0.0.1 as it is (Ray's own rule: it rewrites loopback when the
    switch is 1 or true, and when it is unset except on macOS and Windows)."""
    value = os.environ.get(LOOPBACK_SWITCH)
    if value is None:
        return sys.platform in ("darwin", "win32")
    return value.lower() not in ("1", "true")


def split_address(address: str, key: str = "trainer.ray_address") -> tuple[str, int]:
    """`host:port` (`[v6]:port` too) -> (host, port); a SpecError naming `key` otherwise."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(f"{key}: {address!r} is not allowed; allowed: 'auto', null, HOST:PORT "
                        "(the head's GCS port, 6379 unless `ray start --port` said otherwise) or ray://HOST:PORT")
    return host, int(port)


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def check_reachable(address: str, key: str = "trainer.ray_address") -> None:
    """Before any work: the address Ray will dial answers, or a SpecError naming `key` saying why not."""
    host, port = split_address(address, key)
    dialled = host
    if host in LOOPBACK_HOSTS and not keeps_loopback():
        import ray.util

        dialled = ray.util.get_node_ip_address()  # what Ray dials for a loopback address
    if answers(dialled, port):
        return
    if dialled != host and answers(host, port):
        raise SpecError(f"{key}: {address} answers only on loopback, and Ray dials this machine's "
                        f"address ({dialled}:{port}) instead: set {LOOPBACK_SWITCH}=0 for this command, as for the "
                        f"`ray start --head` that started it ({README})")
    raise SpecError(f"{key}: nothing answers at {dialled}:{port}: start the head first "
                    f"(`ray start --head --port={port}`) or give its address as HOST:PORT")


def refused_token(error: BaseException | None, kind: type) -> bool:
    """Whether the cluster refused the token: an AuthenticationError somewhere in the chain, or its text in a
    message (Ray also wraps it in a RuntimeError holding the formatted traceback)."""
    while error is not None:
        if isinstance(error, kind) or "InvalidAuthToken" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def join_cluster(address: str, key: str = "trainer.ray_address") -> None:
    """`ray.init` on the cluster at `address` ('auto': the one `ray start` started on this machine); every
    failure to join is one SpecError naming `key` (the setting that gave the address)."""
    import ray
    from ray.exceptions import AuthenticationError

    if address != "auto" and "://" not in address and not os.environ.get("RAY_ADDRESS"):
        check_reachable(address, key)  # (Ray Client's ray://, and RAY_ADDRESS, which Ray dials instead, left to Ray)
    try:
        context = ray.init(address=address, log_to_driver=False)
    except (AuthenticationError, ConnectionError, RuntimeError, ValueError) as error:
        if refused_token(error, AuthenticationError):
            raise SpecError(f"{key}: the cluster at {address} refused this command's token (none is "
                            "sent without RAY_AUTH_MODE=token): set RAY_AUTH_MODE=token and give the head's token in "
                            "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token") from error
        raise SpecError(f"{key}: cannot join the Ray cluster at {address}: "
                        f"{str(error).splitlines()[0]}") from error
    nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]
    log.info("joined the Ray cluster at %s (GCS %s): %d node(s) at %s, %g CPUs", address,
             context.address_info["gcs_address"], len(nodes), ", ".join(sorted(set(nodes))),
             ray.cluster_resources().get("CPU", 0))
