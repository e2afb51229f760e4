"""`trainer=cluster` on a real Ray cluster: a head started by `ray start --head` on loopback (its own temp dir,
a free port, a token of its own), joined by `python -m experiments.train`, trained two iterations with an env
runner on the head, checkpointed; every socket the head's processes listen on is on 127.0.0.1. The head is
stopped by its processes (the session `ray start` was started in), and none outlives the test. An address
where nothing answers is one config error naming trainer.ray_address, before any work.

Loopback needs RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for the head and the driver (see experiments/ray_cluster.py
and README.md, "A cluster on one machine, loopback only")."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
TINY = ["agent=ppo", "env.granularity=node_sku", "network=small", "env.episode_days=30", "evaluation.seeds=1",
        "evaluation.horizon=30", "evaluation.warmup=5", "trainer.num_envs_per_env_runner=1",
        "agent.train_batch_size=200", "agent.minibatch_size=100", "agent.num_epochs=1", "agent.hidden=[8]",
        "stop.iterations=2", "checkpoint_every=1"]
# the cluster preset asks for 8 env runners and a learner: one of each fits the head's 2 CPUs
FITS = ["trainer.num_env_runners=1", "trainer.num_learners=1", "trainer.num_gpus_per_learner=0"]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env() -> dict[str, str]:
    return {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}


def session_processes(sid: int) -> list[int]:
    """The processes of session `sid` (Ray's workers leave the launcher's process group, not its session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def stop_session(sid: int) -> list[int]:
    """SIGTERM the session's processes, SIGKILL those left after 5 s; returns those still there after that."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in session_processes(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while session_processes(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
    return session_processes(sid)


def listening_addresses(pids: list[int]) -> set[str]:
    """The local addresses of the TCP sockets these processes listen on (from /proc/net/tcp, tcp6)."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes.update(link[8:-1] for link in links if link.startswith("socket:["))
    out = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(cols[1].split(":")[0])
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # per 32-bit word, host order
                out.add(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words))
    return out


def train(*args: str, env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_training_joins_a_loopback_head_and_checkpoints(tmp_path):
    env = loopback_env()
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's unix socket paths are limited
    head = subprocess.Popen([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                             f"--temp-dir={temp}", "--num-cpus=2", "--include-dashboard=false",
                             "--disable-usage-stats"], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started, _ = head.communicate(timeout=90)  # the launcher exits once the head runs
        assert head.returncode == 0, started[-3000:]
        assert "Local node IP: 127.0.0.1" in started, started[-3000:]
        address = f"127.0.0.1:{port}"
        run_dir = tmp_path / "run"
        done = train("trainer=cluster", f"trainer.ray_address={address}", *TINY, *FITS,
                     f"hydra.run.dir={run_dir}", env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        joined = f"joined the Ray cluster at {address} (GCS {address}): 1 node(s) at 127.0.0.1, 2 CPUs"
        assert joined in done.stderr, done.stderr[-3000:]
        checkpoints = run_dir / "checkpoints"
        assert {p.name for p in checkpoints.glob("iter_*")} == {"iter_000001", "iter_000002"}
        assert (checkpoints / "latest").resolve().name == "iter_000002"
        # the head ran the job: its session holds the logs of the driver's core worker and of the env runner
        logs = next(temp.glob("session_2*")) / "logs"
        assert list(logs.glob("python-core-driver-*.log")), sorted(p.name for p in logs.iterdir())
        assert list(logs.glob("worker-*.out")), sorted(p.name for p in logs.iterdir())
        listening = listening_addresses(session_processes(head.pid))
        assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
        # a driver without the switch dials this machine's interface address instead, where nothing listens
        bare = {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        interface = subprocess.run([sys.executable, "-c", "import ray.util; print(ray.util.get_node_ip_address())"],
                                   env=bare, capture_output=True, text=True, timeout=60).stdout.strip()
        if interface != "127.0.0.1":  # a machine with a network interface
            refused = train("trainer=cluster", f"trainer.ray_address={address}", *TINY, *FITS,
                            f"hydra.run.dir={tmp_path / 'bare'}", env=bare, timeout=120)
            assert refused.returncode == 2, refused.stderr[-3000:]
            assert refused.stderr.strip().splitlines()[-1].startswith(
                f"config error: trainer.ray_address: {address} answers only on loopback, and Ray dials this "
                f"machine's address ({interface}:{port}) instead: set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"), \
                refused.stderr[-3000:]
    finally:
        if head.poll() is None:
            head.kill()
        left = stop_session(head.pid)
        shutil.rmtree(temp, ignore_errors=True)
    assert not left, subprocess.run(["ps", "-o", "pid,args", "-p", ",".join(map(str, left))],
                                    capture_output=True, text=True).stdout


def test_an_address_where_nothing_answers_is_one_config_error(tmp_path):
    port = free_port()  # closed again: nothing listens there
    done = train("trainer=cluster", f"trainer.ray_address=127.0.0.1:{port}", *TINY, *FITS,
                 f"hydra.run.dir={tmp_path}", env=loopback_env(), timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"config error: trainer.ray_address: nothing answers at 127.0.0.1:{port}: start the head first "
        f"(`ray start --head --port={port}`) or give its address as HOST:PORT")
    assert not (tmp_path / "checkpoints").exists()
