"""Speed and memory of the decision service over real HTTP, against the targets TARGET_* below (issue 11, README).

    python -m experiments.bench --serve-only                     # rule bundles exported into a temp dir
    python -m experiments.bench --serve-only --bundle outputs/export/RUN/bundle --dc-bundle outputs/export/DC/bundle
    python -m experiments.bench --serve-only --duration 5 --workers 1 --profile outputs/bench/serve_profile

`python -m experiments.serve` runs as a subprocess on a free loopback port (a temporary clients file, signing key
in the environment variable conf/serve.yaml names, SQLite audit database, the rate limits far above the load, no
access log) for workers=1 and workers=2 in turn. The load comes from another process (`--loadgen`, an asyncio
load generator on experiments.http_load, a lean HTTP/1.1 client: httpx spent more CPU per request than the
service), so it does not share the server's interpreter; both run on this machine's
cores, and its CPU is reported too.

What is measured:

1. Open loop: STORE_CLIENTS store clients, each sending its store's 50-SKU ERP state once a second for
   `duration` seconds, on a fixed timetable (client c sends at c / clients + k seconds, each request in its own
   task, so a slow answer never delays the next send), latency from the *scheduled* send time to the last byte
   of the answer (no coordinated omission): p50, p99, max, errors.
2. Saturation: a closed loop of N connections (SATURATION_CONNECTIONS), each sending its next request as soon as
   the last one is answered, for `saturation_s` seconds after a 1 s warm-up; the best N by requests/s is
   reported, with SKU decisions/s and the service's CPU share (CPU seconds of the server process and its worker
   processes, from /proc/PID/stat, over the wall time: % of one core and of the machine).
3. One DC request of DC_SKUS SKUs (a DC's state alone: its stock, open orders, the backorders it owes its stores
   and its forecast): p50 and p99 over `dc_requests` sequential requests (workers=1, its own server), and the
   in-process `decide(bundle, state)` time for the same state (median), with the ratio HTTP p50 / in-process.
4. Memory: VmRSS of the server process (workers=1; with 2 workers each worker's and the total with the
   supervisor) after the load, one bundle loaded.

Every request is new: each carries a different ERP document reference on one of its open order lines (or, for
a location without one, a different service level on its first item: fields the decisions do not read), so the
service decides and appends audit rows for every request, as it would for real ERP traffic, instead of
replaying stored answers. The states are a twin snapshot after `STATE_DAY` days of
the bundle's own policy, converted with `snapshot_to_state` and the oracle forecast: one state per store (one
location each) and one per DC. Without `--bundle` a base-stock rule bundle on paper_5x20 is exported into a
temp dir (and, without `--dc-bundle`, one on paper_5x20 with DC_SKUS SKUs). `--profile DIR` also records the
server (workers=1) under a closed loop with py-spy and prints the hottest functions.

This is a benchmark, not a test: it prints PASS/MISS per target and never fails on a MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from experiments.http_load import Connection, HttpError

ROOT = Path(__file__).resolve().parents[1]

TARGET_OPEN_P99_MS = 20.0        # 100 store clients x 1 request/s, 50 SKUs each
TARGET_REQUESTS_PER_S = 1000.0   # saturation: 50,000 SKU decisions/s
TARGET_DC_P99_MS = 10.0          # one 500-SKU DC request
TARGET_RSS_MB = 300.0            # the server with one bundle loaded

STORE_CLIENTS = 100
DURATION_S = 20.0
SATURATION_CONNECTIONS = (8, 16, 32)
SATURATION_S = 10.0
WARMUP_S = 1.0
DC_REQUESTS = 300
DC_SKUS = 500
WORKERS = (1, 2)
CLIENT_IDS = 4                   # registered clients whose tokens the virtual clients share
STATE_DAY = 30                   # the twin snapshot's day
STATE_SEED = 1_000_000
IN_PROCESS_REPEAT = 200
PLACEHOLDER = "BENCHREF-000000000000"  # an open line's ERP reference, replaced per request by a counter
LEVEL_PLACEHOLDER = '"BENCH-SERVICE-LEVEL"'  # else an item's service level: 0.9 then the run and a counter
START_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------------- bundles and ERP states


def export_rule_bundle(out: Path, network: str = "paper_5x20", skus: int | None = None) -> Path:
    """A base-stock rule bundle on `network` (with `skus` SKUs if given) written by experiments.export into `out`;
    returns the bundle directory."""
    args = [sys.executable, "-m", "experiments.export", "policy=base_stock", f"network={network}",
            "kpi.seeds=1", "kpi.horizon=60", f"hydra.run.dir={out}"]
    if skus is not None:
        args.append(f"network.skus.count={skus}")
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"export failed ({' '.join(args[2:])}):\n{done.stdout}{done.stderr}")
    return out / "bundle"


def erp_states(bundle, day: int = STATE_DAY, seed: int = STATE_SEED) -> tuple[list, list]:
    """(store states, DC states): the bundle's network run under the bundle's own policy to `day`, converted to
    ERP states with the oracle forecast; one state per store and one per DC, each with that location alone."""
    from agents.deploy.testing import twin_day

    network = bundle.network
    state = twin_day(bundle, day, seed=seed, horizon=day + 60).state
    kinds = {node.name: node.kind for node in network.nodes}
    one = [state.model_copy(update={"locations": [location]}) for location in state.locations]
    stores = [s for s in one if kinds[s.locations[0].id] == "store"]
    dcs = [s for s in one if kinds[s.locations[0].id] == "dc"]
    return stores, dcs


def body_template(state) -> tuple[str, bool]:
    """The state's JSON with a field that makes each request new: PLACEHOLDER as the ERP reference of its first
    open order line, or where it has none LEVEL_PLACEHOLDER as the first item's service level (fields no decision
    reads today); and whether it has either (without, every request of this state is the same request: the
    service replays it). Fields left at None are left out, as a client would send them."""
    data = json.loads(state.model_dump_json(exclude_none=True))
    items = [item for location in data["locations"] for item in location["items"]]
    lines = [item for item in items if item.get("open_orders")]
    if lines:
        lines[0]["open_orders"][0]["reference"] = PLACEHOLDER
    elif items and "service_level" not in items[0]:
        items[0]["service_level"] = json.loads(LEVEL_PLACEHOLDER)
    else:
        return json.dumps(data, separators=(",", ":")), False
    return json.dumps(data, separators=(",", ":")), True


def skus_of(state) -> int:
    return sum(len(location.items) for location in state.locations)


def lines_of(state) -> int:
    return sum(len(item.open_orders) for location in state.locations for item in location.items)


def in_process(bundle, state, repeat: int = IN_PROCESS_REPEAT) -> dict:
    """Median milliseconds of `decide(bundle, state)` in this process, and of the whole request's work without
    HTTP (parse the JSON body, decide, write the JSON answer)."""
    from agents.deploy.decide import decide
    from agents.deploy.erp_state import ErpState

    body = state.model_dump_json(exclude_none=True)
    decide(bundle, state)  # warm caches
    plain, full = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        decide(bundle, state)
        t1 = time.perf_counter()
        decide(bundle, ErpState.model_validate_json(body)).model_dump_json()
        t2 = time.perf_counter()
        plain.append(t1 - t0)
        full.append(t2 - t1)
    return {"decide_ms": _median(plain) * 1e3, "parse_decide_dump_ms": _median(full) * 1e3, "repeat": repeat}


# ---------------------------------------------------------------------------- processes: CPU and memory


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc)."""
    children, tree, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def cpu_seconds(pids: list[int], *, system: bool = False) -> float:
    """User + system CPU seconds of `pids` (/proc/PID/stat utime + stime; only stime with `system`), vanished ones
    counted as 0."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[12]) + (0 if system else int(fields[11]))  # stime, utime (fields 15, 14 of stat)
    return total / tick


def rss_mb(pid: int) -> float | None:
    """VmRSS of `pid` in MB (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`python -m experiments.serve` in a subprocess on a free loopback port, with its own clients file, signing
    key, SQLite audit database and log in `directory`; stopped by pid (SIGTERM to the server, which stops its
    workers; SIGKILL to whatever of its tree is left after 20 s)."""

    def __init__(self, bundle: Path, directory: Path, *, workers: int = 1, clients: int = CLIENT_IDS,
                 options: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        from agents.deploy.auth import add_client

        self.directory, self.workers = directory, workers
        directory.mkdir(parents=True, exist_ok=True)
        clients_file = directory / "clients.json"
        self.credentials = [(f"bench-{i}", add_client(clients_file, f"bench-{i}", ["decide"])) for i in range(clients)]
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "server.log"
        key_env = yaml.safe_load((ROOT / "conf" / "serve.yaml").read_text())["key_env"]
        args = [sys.executable, "-m", "experiments.serve", f"bundle={bundle}", f"port={self.port}",
                f"workers={workers}", f"clients_file={clients_file}",
                f"audit_url=sqlite:///{directory / 'audit.sqlite'}", "rate_limit=1e9", "burst=1000000000",
                "token_requests_per_minute=1e6", "access_log=false", "log_level=warning",
                f"hydra.run.dir={directory / 'run'}", *options]
        env = {**os.environ, **(env or {}), key_env: secrets.token_hex(32)}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.memory_at_start = self.memory()

    def _wait_healthy(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if http.get("/v1/health").status_code == 200 and len(self.worker_pids()) >= self.workers:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not answer within {START_TIMEOUT_S:g} s:\n{self.log()}")
                time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def pids(self) -> list[int]:
        """The server process and its descendants (uvicorn's workers with workers > 1)."""
        return process_tree(self.pid)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself with one worker, else its worker children."""
        if self.workers == 1:
            return [self.pid]
        return [p for p in self.pids() if p != self.pid and "multiprocessing.spawn" in _cmdline(p)
                and "resource_tracker" not in _cmdline(p)]

    def memory(self) -> dict:
        """VmRSS (MB) of the server process, of each worker and of the whole tree."""
        tree = {p: rss_mb(p) for p in self.pids()}
        workers = [tree.get(p) or 0.0 for p in self.worker_pids()]
        return {"server_mb": tree.get(self.pid) or 0.0, "workers_mb": workers,
                "total_mb": sum(v for v in tree.values() if v), "processes": len(tree)}

    def stop(self) -> None:
        tree = self.pids() if self.process.poll() is None else []
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for pid in tree:  # whatever of its tree outlived it (by pid: nothing else is touched)
            if rss_mb(pid) is not None:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        if self.process.poll() is None:
            self.process.wait(timeout=5)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------- the load generator (own process)


def _percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation (numpy's default), NaN for no values."""
    if not values:
        return math.nan
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _median(values: list[float]) -> float:
    return _percentile(values, 0.5)


def _latency_summary(latencies: list[float]) -> dict:
    ms = [x * 1e3 for x in latencies]
    return {"p50_ms": _percentile(ms, 0.5), "p99_ms": _percentile(ms, 0.99), "max_ms": max(ms) if ms else math.nan,
            "mean_ms": sum(ms) / len(ms) if ms else math.nan}


_RUN = secrets.token_hex(4)  # this load generator's prefix of references: unique across its processes and phases
_SENT = [0]


class _Bodies:
    """Request bodies: each template with a fresh reference per request (a new request, a new audit entry)."""

    def __init__(self, templates: list[str]) -> None:
        self.templates = templates

    def next(self, index: int) -> bytes:
        _SENT[0] += 1
        text = self.templates[index % len(self.templates)]
        if PLACEHOLDER in text:
            return text.replace(PLACEHOLDER, f"BENCH-{_RUN}-{_SENT[0]:09d}").encode()
        return text.replace(LEVEL_PLACEHOLDER, f"0.9{int(_RUN, 16) % 1000:03d}{_SENT[0]:09d}").encode()


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.replayed = 0

    def record(self, status: int | str, seconds: float, replayed: int = 0) -> None:
        if status == 200:
            self.latencies.append(seconds)
            self.replayed += replayed
        else:
            self.errors[str(status)] += 1

    def summary(self) -> dict:
        return {"requests": len(self.latencies) + sum(self.errors.values()), "ok": len(self.latencies),
                "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
                "replayed_decisions": self.replayed, **_latency_summary(self.latencies)}


async def _post(connection: Connection, headers: dict, body: bytes) -> tuple[int | str, int]:
    try:
        reply = await connection.request("POST", "/v1/decisions", headers, body)
    except HttpError:
        return "HttpError", 0
    return reply.status, int(reply.headers.get("x-decisions-replayed", "0") or 0)


async def _tokens(url: str, credentials: list[list[str]]) -> list[str]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        out = []
        for cid, secret in credentials:
            reply = await http.post("/v1/token", data={"grant_type": "client_credentials", "scope": "decide"},
                                    auth=(cid, secret))
            reply.raise_for_status()
            out.append(reply.json()["access_token"])
    return out


async def _connections(url: str, count: int, workers: int) -> tuple[list, dict[str, int]]:
    """`count` clients of one keep-alive connection each, spread evenly over the server's `workers` processes:
    each connection asks /v1/health which worker holds it and is dropped for a new one while that worker has its
    share already (uvicorn's workers share one listening socket, and the one awake accepts every connection
    opened at once, which would leave the others idle). Returns the clients and connections per worker pid."""
    clients: list = []
    per: Counter[str] = Counter()
    share = math.ceil(count / max(workers, 1))
    tries = 0
    while len(clients) < count:
        http = await Connection.open(url)
        worker = str(json.loads((await http.request("GET", "/v1/health")).body)["worker"])
        tries += 1
        if workers > 1 and per[worker] >= share and tries < 50 * count:
            await http.close()
            await asyncio.sleep(0.002)
            continue
        per[worker] += 1
        clients.append(http)
    return clients, dict(per)


def _headers(token: str) -> dict:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


class _Window:
    """CPU of the server's processes and of this process over a measured window."""

    def __init__(self, server_pids: list[int]) -> None:
        self.pids = server_pids

    def __enter__(self) -> _Window:
        self.t0, self.s0, self.c0 = time.perf_counter(), cpu_seconds(self.pids), time.process_time()
        self.sys0 = cpu_seconds(self.pids, system=True)
        self.each0 = [cpu_seconds([p]) for p in self.pids]
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.server_cpu = cpu_seconds(self.pids) - self.s0
        self.server_sys = cpu_seconds(self.pids, system=True) - self.sys0
        self.each = [cpu_seconds([p]) - c for p, c in zip(self.pids, self.each0)]
        self.loadgen_cpu = time.process_time() - self.c0

    def summary(self) -> dict:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return {"wall_s": self.wall, "server_cpu_s": self.server_cpu, "server_sys_cpu_s": self.server_sys,
                "server_cpu_pct_core_by_pid": {str(p): 100 * c / self.wall for p, c in zip(self.pids, self.each)},
                "server_cpu_pct_core": 100 * self.server_cpu / self.wall,
                "server_cpu_pct_machine": 100 * self.server_cpu / self.wall / cpus,
                "loadgen_cpu_pct_core": 100 * self.loadgen_cpu / self.wall, "cpus": cpus}


async def open_loop(url: str, tokens: list[str], templates: list[str], server_pids: list[int], *,
                    clients: int = STORE_CLIENTS, duration: float = DURATION_S, rate: float = 1.0,
                    workers: int = 1) -> dict:
    """`clients` virtual clients with a connection each, client c sending at start + c / (clients rate) + k / rate
    for k < duration x rate; latency from the scheduled time (a send the loop starts late counts its delay)."""

    loop = asyncio.get_running_loop()
    period, sends = 1.0 / rate, max(1, round(duration * rate))
    tally, bodies = _Tally(), _Bodies(templates)
    https, spread = await _connections(url, clients, workers)
    lag: list[float] = []

    async def one(c: int, scheduled: float, body: bytes) -> None:
        status, replayed = await _post(https[c], _headers(tokens[c % len(tokens)]), body)
        tally.record(status, loop.time() - scheduled, replayed)

    async def client(c: int, start: float) -> None:
        tasks = []
        for k in range(sends):
            scheduled = start + c * period / clients + k * period
            body = bodies.next(c)
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lag.append(max(0.0, loop.time() - scheduled))
            tasks.append(asyncio.create_task(one(c, scheduled, body)))
        await asyncio.gather(*tasks)

    try:
        # one request per client first: connections open and tokens are read outside the measured window
        await asyncio.gather(*(one(c, loop.time(), bodies.next(c)) for c in range(clients)))
        tally = _Tally()
        start = loop.time() + 0.2
        with _Window(server_pids) as window:
            await asyncio.gather(*(client(c, start) for c in range(clients)))
    finally:
        await asyncio.gather(*(h.close() for h in https))
    return {"kind": "open", "clients": clients, "connections_by_worker": spread, "rate_per_client": rate,
            "duration_s": duration,
            "scheduled": clients * sends, **tally.summary(), "send_lag_p99_ms": _percentile(lag, 0.99) * 1e3,
            **window.summary()}


async def closed_loop(url: str, tokens: list[str], templates: list[str], server_pids: list[int], *,
                      connections: int, duration: float = SATURATION_S, warmup: float = WARMUP_S,
                      profile: dict | None = None, workers: int = 1) -> dict:
    """`connections` connections, each sending its next request when the last is answered; counted over
    `duration` seconds after `warmup`. `profile` ({"spy": py-spy, "pid": PID, "outputs": [[FORMAT, PATH, GIL]]}):
    py-spy records that process over the counted seconds (GIL true: only the thread holding the GIL)."""

    loop = asyncio.get_running_loop()
    bodies = _Bodies(templates)
    tally = _Tally()
    https, spread = await _connections(url, connections, workers)
    begin = loop.time()
    t0, t1 = begin + warmup, begin + warmup + duration

    async def connection(c: int) -> None:
        headers = _headers(tokens[c % len(tokens)])
        while True:
            sent = loop.time()
            if sent >= t1:
                return
            status, replayed = await _post(https[c], headers, bodies.next(c))
            done = loop.time()
            if sent >= t0 and done <= t1:
                tally.record(status, done - sent, replayed)

    window = _Window(server_pids)
    try:
        tasks = [asyncio.create_task(connection(c)) for c in range(connections)]
        await asyncio.sleep(max(0.0, t0 - loop.time()))
        spies = []
        if profile:  # samplers side by side (--nonblocking only reads the process's memory), one per format
            spies = [subprocess.Popen([profile["spy"], "record", "--pid", str(profile["pid"]), "--duration",
                                       str(max(1, math.floor(duration))), "--rate", "200", "--nonblocking",
                                       *(["--gil"] if gil else []), "--format", fmt, "-o", path],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                     for fmt, path, gil in profile["outputs"]]
        with window:
            await asyncio.sleep(max(0.0, t1 - loop.time()))
        await asyncio.gather(*tasks)
        for spy in spies:
            said = (await asyncio.to_thread(spy.communicate, timeout=60))[0]
            if spy.returncode != 0:
                print(said.decode(errors="replace")[-2000:], file=sys.stderr)
    finally:
        await asyncio.gather(*(h.close() for h in https))
    summary = {"kind": "closed", "connections": connections, "connections_by_worker": spread, "duration_s": duration,
               **tally.summary(), **window.summary()}
    summary["requests_per_s"] = summary["ok"] / duration
    summary["server_cpu_ms_per_request"] = 1e3 * summary["server_cpu_s"] / max(summary["ok"], 1)
    return summary


async def sequential(url: str, tokens: list[str], templates: list[str], server_pids: list[int], *,
                     count: int = DC_REQUESTS, warmup: int = 5) -> dict:
    """`count` requests one after the other on one connection (after `warmup` unmeasured ones)."""
    loop = asyncio.get_running_loop()
    bodies, tally = _Bodies(templates), _Tally()
    headers = _headers(tokens[0])
    http = await Connection.open(url)
    try:
        for _ in range(warmup):
            await _post(http, headers, bodies.next(0))
        with _Window(server_pids) as window:
            for _ in range(count):
                body = bodies.next(0)
                sent = loop.time()
                status, replayed = await _post(http, headers, body)
                tally.record(status, loop.time() - sent, replayed)
    finally:
        await http.close()
    out = {"kind": "sequential", **tally.summary(), **window.summary()}
    out["server_cpu_ms_per_request"] = 1e3 * out["server_cpu_s"] / max(out["ok"], 1)
    return out


PHASES = {"open": open_loop, "closed": closed_loop, "sequential": sequential}


async def _run_phases(spec: dict) -> list[dict]:
    tokens = await _tokens(spec["url"], spec["credentials"])
    templates = [Path(p).read_text() for p in spec["templates"]]
    out = []
    for phase in spec["phases"]:
        kwargs = dict(phase)
        run = PHASES[kwargs.pop("kind")]
        out.append(await run(spec["url"], tokens, templates, spec["server_pids"], **kwargs))
    return out


def loadgen_main(spec_path: str) -> None:
    """The load generator's process: run the phases of the spec file, print them as one JSON line."""
    spec = json.loads(Path(spec_path).read_text())
    print(json.dumps(asyncio.run(_run_phases(spec))))


def run_load(service: Service, templates: list[Path], phases: list[dict], directory: Path,
             timeout: float | None = None) -> list[dict]:
    """The phases run by a load generator in its own process against `service`."""
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = Path(tempfile.mkstemp(suffix=".json", dir=directory)[1])
    spec = {"url": service.url, "credentials": service.credentials, "templates": [str(p) for p in templates],
            "server_pids": service.pids(), "phases": phases}
    spec_path.write_text(json.dumps(spec))  # mkstemp made it 0600: it holds the clients' secrets
    if timeout is None:
        timeout = 120 + sum(p.get("duration", DURATION_S) + WARMUP_S + p.get("count", 0) for p in phases)
    try:
        done = subprocess.run([sys.executable, "-m", "experiments.bench_serve", "--loadgen", str(spec_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        spec_path.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-5000:]}\nserver log:\n{service.log()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_templates(states: list, directory: Path, prefix: str) -> tuple[list[Path], bool]:
    """Body templates of `states` as files (for the load generator); whether every one varies per request."""
    directory.mkdir(parents=True, exist_ok=True)
    paths, fresh = [], True
    for i, state in enumerate(states):
        text, varies = body_template(state)
        fresh &= varies
        path = directory / f"{prefix}_{i}.json"
        path.write_text(text)
        paths.append(path)
    return paths, fresh


# ---------------------------------------------------------------------------- profile


def profile_server(service: Service, templates: list[Path], directory: Path, *, connections: int = 16,
                   seconds: float = 10.0) -> dict | None:
    """py-spy record of the server (its first worker) under a closed loop of `connections`, over the counted
    `seconds`, by three samplers side by side: collapsed stacks of the thread holding the GIL (gil.txt: where the
    interpreter's time goes, the limit of one worker) and of every thread not idle (threads.txt: a thread
    waiting for the GIL shows at the frame it waits in), and a flame graph of the former (profile.svg); the
    hottest functions by own and inclusive share. None if py-spy is not installed."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("  (no py-spy: pip install py-spy to profile)")
        return None
    directory.mkdir(parents=True, exist_ok=True)
    gil, threads, svg = directory / "gil.txt", directory / "threads.txt", directory / "profile.svg"
    target = service.worker_pids()[0]
    phase = {"kind": "closed", "connections": connections, "duration": seconds,
             "profile": {"spy": spy, "pid": target, "outputs": [["raw", str(gil), True], ["raw", str(threads), False],
                                                                ["flamegraph", str(svg), True]]}}
    result = run_load(service, templates, [phase], directory / "load")[0]
    if not gil.exists():
        return None
    summary = summarise_stacks(gil.read_text())
    summary["threads"] = summarise_stacks(threads.read_text()) if threads.exists() else None
    summary.update({"raw": str(gil), "svg": str(svg) if svg.exists() else None, "pid": target,
                    "connections": connections, "seconds": seconds, "requests_per_s": result["requests_per_s"],
                    "server_cpu_ms_per_request": result["server_cpu_ms_per_request"]})
    return summary


def _frame(frame: str) -> str:
    """'function (path/to/file.py:123)' -> 'function (file.py)' with the project-relative path where it has one."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        if str(ROOT) in path:
            path = os.path.relpath(path, ROOT)
    return f"{name} ({path})" if path else name


# where a sample of the service's request path goes: the first rule any of its frames matches (its own leaf for
# the waits); shares of all samples py-spy took (idle excluded)
PATH_RULES = (
    ("worker threads waiting for work (threading.Condition: anyio's pool hand-off)", ("Condition.wait (",
                                                                                      "Condition.notify (")),
    ("auth: bearer token check and rate limit (caller dependency)", ("caller.<locals>.dependency",)),
    ("audit: AuditLog.append (SQLAlchemy + SQLite insert, commit)", ("AuditLog.append",)),
    ("decide: state_to_twin (ERP state -> snapshot, forecasts)", ("state_to_twin (",)),
    ("decide: the policy (observations, ONNX run or rule)", ("agents/deploy/policies.py", "onnx_head.py")),
    ("decide: Decision models and reason codes (_decision)", ("_decision (",)),
    ("decide: request hash (model_dump_json + sha256)", ("request_sha256 (",)),
    ("decide: the rest (checks, DecisionResponse)", ("decide (agents/deploy/decide.py)",)),
    ("endpoint: audit rows (model_dump per decision) and the JSON answer", ("create_app.<locals>.decisions",)),
    ("request body: read, JSON parse, ErpState validation (event loop)", ("request_body_to_args", "Request.body",
                                                                          "Request.json", "_get_body")),
    ("HTTP: uvicorn (h11), starlette/fastapi middleware, routing, writes (event loop)", ("uvicorn/", "starlette/",
                                                                                         "fastapi/", "h11/",
                                                                                         "asyncio/")),
)


def summarise_stacks(text: str, top: int = 25) -> dict:
    """Own (leaf) and inclusive shares of the functions in py-spy's collapsed stacks ('a;b;c COUNT' lines, root
    first), and the request path's breakdown by PATH_RULES."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    path: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
        for label, needles in PATH_RULES:
            where = frames[-1:] if label.startswith("worker threads waiting") else frames
            if any(needle in f for f in where for needle in needles):
                path[label] += n
                break
        else:
            path["other"] += n
    share = lambda c, k=top: [(f, n / total) for f, n in c.most_common(k)] if total else []  # noqa: E731
    # the inclusive view without the frames that are merely on the way (thread and loop bootstraps, the launcher)
    skip = ("threading.py", "anyio/", "hydra/", "runpy", "experiments/serve.py", "experiments/startup.py",
            "uvicorn/main.py", "uvicorn/server.py", "uvicorn/_compat.py", "asyncio/runners.py", "base_events.py",
            "asyncio/events.py", "fastapi/telemetry", "serve (agents/deploy/service.py)")
    useful = Counter({f: n for f, n in inclusive.items() if not any(s in f for s in skip)})
    ordered = [(label, path[label] / total) for label, _ in PATH_RULES if path[label]] if total else []
    if total and path["other"]:
        ordered.append(("other", path["other"] / total))
    return {"samples": total, "own": share(own), "inclusive": share(useful), "path": ordered}


# ---------------------------------------------------------------------------- the whole benchmark


def measure_workers(bundle: Path, templates: list[Path], skus: int, workers: int, directory: Path, *,
                    duration: float, connections: tuple[int, ...], saturation_s: float, clients: int,
                    profile: Path | None = None, server: dict | None = None) -> dict:
    """Open loop, saturation and memory for one worker count (a fresh server)."""
    with Service(bundle, directory / f"server_w{workers}", workers=workers, **(server or {})) as service:
        open_phase = {"kind": "open", "clients": clients, "duration": duration, "workers": workers}
        closed = [{"kind": "closed", "connections": n, "duration": saturation_s, "workers": workers}
                  for n in connections]
        phases = run_load(service, templates, [open_phase, *closed], directory / "load")
        memory = {**service.memory(), "at_start": service.memory_at_start}
        worker_pids = service.worker_pids()
        profiled = profile_server(service, templates, profile, seconds=min(saturation_s, 10.0)) if profile else None
    open_result, saturation = phases[0], phases[1:]
    for s in saturation:
        s["decisions_per_s"] = s["requests_per_s"] * skus
    best = max(saturation, key=lambda s: s["requests_per_s"]) if saturation else None
    return {"workers": workers, "worker_pids": worker_pids, "open": open_result, "saturation": saturation,
            "best": best, "memory": memory, "profile": profiled}


def measure_dc(bundle: Path, bundle_obj, state, directory: Path, *, count: int, server: dict | None = None) -> dict:
    """The DC request over HTTP (workers=1, sequential) and in process."""
    templates, _ = write_templates([state], directory / "bodies", "dc")
    with Service(bundle, directory / "server_dc", workers=1, **(server or {})) as service:
        http = run_load(service, templates, [{"kind": "sequential", "count": count}], directory / "load")[0]
        memory = {**service.memory(), "at_start": service.memory_at_start}
    local = in_process(bundle_obj, state)
    return {"skus": skus_of(state), "location": state.locations[0].id, "http": http, "in_process": local,
            "ratio": http["p50_ms"] / local["decide_ms"], "memory": memory}


def _fmt_ms(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:,.1f}"


def _split(r: dict, phase: dict) -> str:
    """With several workers: each worker's CPU (% of a core) and connections over the phase."""
    if r["workers"] == 1:
        return ""
    by_pid, conns = phase["server_cpu_pct_core_by_pid"], phase.get("connections_by_worker", {})
    return ("  CPU " + " / ".join(f"{by_pid.get(str(p), 0.0):.0f}" for p in r["worker_pids"])
            + ", connections " + " / ".join(str(conns.get(str(p), 0)) for p in r["worker_pids"]))


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(*, bundle: str | None = None, dc_bundle: str | None = None, duration: float = DURATION_S,
         workers: tuple[int, ...] = WORKERS, connections: tuple[int, ...] = SATURATION_CONNECTIONS,
         saturation_s: float = SATURATION_S, dc_requests: int = DC_REQUESTS, clients: int = STORE_CLIENTS,
         profile: str | None = None, keep: str | None = None, server_options: tuple[str, ...] = (),
         server_env: dict[str, str] | None = None, with_dc: bool = True) -> dict:
    """Run the service benchmark, print its tables and targets, return the figures. `server_options` (extra
    experiments.serve overrides) and `server_env` (its environment) are for what-if runs; `with_dc` False skips
    the DC request."""
    import numpy
    import uvicorn

    from agents.deploy.bundle import load_bundle

    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    notes = []
    try:
        if bundle is None:
            bundle_path = export_rule_bundle(work / "export_store")
            notes.append(f"no --bundle: exported a base-stock rule bundle on paper_5x20 into {bundle_path}")
        else:
            bundle_path = Path(bundle).resolve()
        if not with_dc:
            dc_path = None
        elif dc_bundle is None:
            dc_path = export_rule_bundle(work / "export_dc", skus=DC_SKUS)
            notes.append(f"no --dc-bundle: exported a base-stock rule bundle on paper_5x20 with {DC_SKUS} SKUs "
                         f"into {dc_path}")
        else:
            dc_path = Path(dc_bundle).resolve()
        store_bundle = load_bundle(bundle_path)
        dc_bundle_obj = load_bundle(dc_path) if dc_path is not None else None
        stores, _ = erp_states(store_bundle)
        dc_state = erp_states(dc_bundle_obj)[1][0] if dc_bundle_obj is not None else None
        templates, fresh = write_templates(stores, work / "bodies", "store")
        skus = round(sum(skus_of(s) for s in stores) / len(stores))
        if not fresh:
            notes.append("a store state has no item to vary: its repeated requests are replays of stored answers")

        print("decision service benchmark: python -m experiments.serve, load from another process "
              "(asyncio, experiments.http_load)")
        print(f"python {platform.python_version()}, numpy {numpy.__version__}, uvicorn {uvicorn.__version__}, "
              f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        store_kb = sum(p.stat().st_size for p in templates) / len(templates) / 1024
        shapes = {"store_body_kb": store_kb, "store_lines": sum(map(lines_of, stores)) / len(stores)}
        print(f"store bundle {store_bundle.name} ({store_bundle.manifest.kind}, {store_bundle.network.name}, "
              f"sha256 {store_bundle.sha256[:12]}): {len(stores)} store states of {skus} SKUs, twin day {STATE_DAY} "
              f"under the bundle's policy (mean {shapes['store_lines']:.0f} open order lines, "
              f"{store_kb:.0f} KB of JSON)")
        if dc_state is not None:
            shapes.update(dc_body_kb=len(body_template(dc_state)[0]) / 1024, dc_lines=lines_of(dc_state))
            print(f"DC bundle {dc_bundle_obj.name} ({dc_bundle_obj.manifest.kind}, "
                  f"{len(dc_bundle_obj.network.skus.name)} SKUs, sha256 {dc_bundle_obj.sha256[:12]}): "
                  f"{dc_state.locations[0].id} alone ({shapes['dc_lines']:,} open order lines, "
                  f"{shapes['dc_body_kb']:,.0f} KB of JSON)")
        for note in notes:
            print(f"  ({note})")

        server = {"options": tuple(server_options), "env": dict(server_env or {})}
        if server_options or server_env:
            print(f"  (server run with {' '.join(server_options)} "
                  f"{' '.join(f'{k}={v}' for k, v in (server_env or {}).items())})")
        per_workers = []
        for i, w in enumerate(workers):
            per_workers.append(measure_workers(
                bundle_path, templates, skus, w, work / f"w{w}", duration=duration, connections=connections,
                saturation_s=saturation_s, clients=clients,
                profile=Path(profile) if profile and i == 0 else None, server=server))
        dc = None
        if dc_state is not None:
            dc = measure_dc(dc_path, dc_bundle_obj, dc_state, work / "dc", count=dc_requests, server=server)
        store_local = in_process(store_bundle, stores[0], repeat=100)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)

    results = {"store_bundle": {"name": store_bundle.name, "kind": store_bundle.manifest.kind,
                                "sha256": store_bundle.sha256, "path": str(bundle_path), "skus": skus},
               "dc_bundle": None if dc_bundle_obj is None else {
                   "name": dc_bundle_obj.name, "kind": dc_bundle_obj.manifest.kind, "sha256": dc_bundle_obj.sha256,
                   "path": str(dc_path)},
               "notes": notes, "fresh_requests": fresh, "shapes": shapes, "workers": per_workers, "dc": dc,
               "store_in_process": store_local, "cpus": os.cpu_count()}
    results["load_average_end"] = os.getloadavg()
    report(results, duration=duration, clients=clients, saturation_s=saturation_s)
    return results


def report(results: dict, *, duration: float, clients: int, saturation_s: float) -> None:
    per_workers, dc = results["workers"], results["dc"]
    skus = results["store_bundle"]["skus"]
    print()
    print(f"open loop: {clients} store clients x 1 request/s ({skus} SKUs), {duration:g} s, latency from the "
          f"scheduled send")
    header = (f"{'workers':>7} {'requests':>9} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'server CPU %core':>16} {'%machine':>9} {'loadgen %core':>13}")
    print(header)
    print("-" * len(header))
    for r in per_workers:
        o = r["open"]
        print(f"{r['workers']:>7} {o['requests']:>9,} {o['errors']:>6} {_fmt_ms(o['p50_ms']):>8} "
              f"{_fmt_ms(o['p99_ms']):>8} {_fmt_ms(o['max_ms']):>8} {o['server_cpu_pct_core']:>16.0f} "
              f"{o['server_cpu_pct_machine']:>9.0f} {o['loadgen_cpu_pct_core']:>13.0f}{_split(r, o)}")

    print()
    print(f"saturation: closed loop, N connections, {saturation_s:g} s after a {WARMUP_S:g} s warm-up (* best)")
    header = (f"{'workers':>7} {'N':>4} {'req/s':>8} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
              f"{'server CPU %core':>16} {'%machine':>9} {'CPU ms/req':>10} {'loadgen %core':>13}")
    print(header)
    print("-" * len(header))
    for r in per_workers:
        for s in r["saturation"]:
            mark = "*" if s is r["best"] else " "
            print(f"{r['workers']:>7} {s['connections']:>4} {s['requests_per_s']:>7,.0f}{mark} "
                  f"{s['decisions_per_s']:>12,.0f} {_fmt_ms(s['p50_ms']):>8} {_fmt_ms(s['p99_ms']):>8} "
                  f"{s['errors']:>6} {s['server_cpu_pct_core']:>16.0f} {s['server_cpu_pct_machine']:>9.0f} "
                  f"{s['server_cpu_ms_per_request']:>10.1f} {s['loadgen_cpu_pct_core']:>13.0f}{_split(r, s)}")

    if dc is not None:
        h, local = dc["http"], dc["in_process"]
        print()
        print(f"DC request: {dc['location']} alone, {dc['skus']} SKUs, {h['requests']} sequential requests, "
              f"workers=1")
        print(f"  HTTP p50 {_fmt_ms(h['p50_ms'])} ms, p99 {_fmt_ms(h['p99_ms'])} ms, max {_fmt_ms(h['max_ms'])} ms, "
              f"errors {h['errors']}; server CPU {h['server_cpu_ms_per_request']:.1f} ms per request")
        print(f"  in process: decide(bundle, state) {local['decide_ms']:.2f} ms (median of {local['repeat']}); "
              f"parse + decide + JSON answer {local['parse_decide_dump_ms']:.2f} ms; HTTP p50 / decide "
              f"{dc['ratio']:.2f}x")
    sl = results["store_in_process"]
    print(f"  (a {skus}-SKU store request in process: decide {sl['decide_ms']:.2f} ms, parse + decide + JSON answer "
          f"{sl['parse_decide_dump_ms']:.2f} ms)")

    print()
    print("memory (VmRSS after the load, one bundle loaded)")
    for r in per_workers:
        m = r["memory"]
        s = m["at_start"]
        if r["workers"] == 1:
            print(f"  workers=1: server {m['server_mb']:,.0f} MB (at start {s['server_mb']:,.0f} MB)")
        else:
            each = ", ".join(f"{x:,.0f}" for x in m["workers_mb"])
            print(f"  workers={r['workers']}: workers {each} MB (at start "
                  f"{', '.join(f'{x:,.0f}' for x in s['workers_mb'])}), supervisor {m['server_mb']:,.0f} MB, "
                  f"total {m['total_mb']:,.0f} MB ({m['processes']} processes)")
    if dc is not None:
        d = dc["memory"]
        print(f"  DC server ({dc['skus']} SKUs): {d['server_mb']:,.0f} MB (at start "
              f"{d['at_start']['server_mb']:,.0f} MB)")

    targets = []
    for r in per_workers:
        w = r["workers"]
        o = r["open"]
        targets.append((f"open loop p99 <= {TARGET_OPEN_P99_MS:g} ms, {w} worker(s)", f"{_fmt_ms(o['p99_ms'])} ms",
                        o["p99_ms"] <= TARGET_OPEN_P99_MS and o["errors"] == 0))
        if r["best"] is not None:
            b = r["best"]
            targets.append((f">= {TARGET_REQUESTS_PER_S:,.0f} store req/s, {w} worker(s)",
                            f"{b['requests_per_s']:,.0f}/s", b["requests_per_s"] >= TARGET_REQUESTS_PER_S))
    if dc is not None:
        h = dc["http"]
        targets.append((f"{dc['skus']}-SKU DC request p99 <= {TARGET_DC_P99_MS:g} ms", f"{_fmt_ms(h['p99_ms'])} ms",
                        h["p99_ms"] <= TARGET_DC_P99_MS and h["errors"] == 0))
    for r in per_workers:
        m = r["memory"]
        worst = max(m["workers_mb"] or [m["server_mb"]])
        label = "server" if r["workers"] == 1 else "per worker"
        targets.append((f"RSS <= {TARGET_RSS_MB:g} MB, {label} ({r['workers']} worker(s))", f"{worst:,.0f} MB",
                        worst <= TARGET_RSS_MB))
    print()
    print("targets")
    for label, value, ok in targets:
        print(f"  {_verdict(ok)}  {label:<44} {value:>10}")
    print(f"  (load average at the end {', '.join(f'{x:.1f}' for x in results['load_average_end'])}: other "
          f"processes on these cores slow the figures down)")
    results["targets"] = [{"target": label, "value": value, "pass": ok} for label, value, ok in targets]

    for r in per_workers:
        p = r.get("profile")
        if p:
            print()
            print(f"profile: py-spy (200 Hz) on the server, pid {p['pid']} (workers={r['workers']}), closed loop of "
                  f"{p['connections']} connections for {p['seconds']:g} s ({p['requests_per_s']:,.0f} req/s, "
                  f"{p['server_cpu_ms_per_request']:.1f} ms CPU per request while sampled)")
            print(f"  stacks: {p['raw']}" + (f", flame graph: {p['svg']}" if p["svg"] else ""))
            threads = dict(p["threads"]["path"]) if p.get("threads") else {}
            print(f"  the request path: share of the samples of the thread holding the GIL ({p['samples']:,}), and "
                  f"of every thread not idle")
            for name, share in p["path"]:
                other = f"{100 * threads[name]:5.1f}%" if name in threads else "     -"
                print(f"    {100 * share:5.1f}%  {other}  {name}")
            for name in threads:
                if name not in dict(p["path"]):
                    print(f"        -  {100 * threads[name]:5.1f}%  {name}")
            print("  inclusive share (the function and what it calls):")
            for name, share in p["inclusive"][:20]:
                print(f"    {100 * share:5.1f}%  {name}")
            print("  own share (the leaf frame):")
            for name, share in p["own"][:15]:
                print(f"    {100 * share:5.1f}%  {name}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The service section's options, for experiments.bench."""
    parser.add_argument("--bundle", metavar="PATH", help="the store bundle served (default: a base-stock rule "
                                                         "bundle on paper_5x20, exported into a temp dir)")
    parser.add_argument("--dc-bundle", metavar="PATH", help=f"the bundle of the {DC_SKUS}-SKU DC request (default: "
                                                            f"a base-stock rule bundle with {DC_SKUS} SKUs)")
    parser.add_argument("--duration", type=float, default=DURATION_S, metavar="S",
                        help=f"seconds of the open loop (default {DURATION_S:g})")
    parser.add_argument("--clients", type=int, default=STORE_CLIENTS,
                        help=f"store clients of the open loop, one request a second each (default {STORE_CLIENTS})")
    parser.add_argument("--workers", default=",".join(map(str, WORKERS)), metavar="N,N",
                        help="server worker counts, comma-separated (default 1,2)")
    parser.add_argument("--connections", default=",".join(map(str, SATURATION_CONNECTIONS)), metavar="N,N",
                        help="closed-loop connection counts (default 8,16,32)")
    parser.add_argument("--saturation-s", type=float, default=SATURATION_S, metavar="S",
                        help=f"seconds of each closed loop (default {SATURATION_S:g})")
    parser.add_argument("--dc-requests", type=int, default=DC_REQUESTS, help=f"(default {DC_REQUESTS})")
    parser.add_argument("--profile", metavar="DIR", help="also py-spy the server (workers=1) under a closed loop")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (states, server logs, audit DBs)")
    parser.add_argument("--no-dc", action="store_true", help="skip the DC request")
    parser.add_argument("--server-option", action="append", default=[], metavar="KEY=VALUE",
                        help="what-if: an extra experiments.serve override (repeatable), e.g. "
                             "audit_url=sqlite:///:memory:")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="what-if: an environment variable of the server (repeatable), e.g. MALLOC_ARENA_MAX=2")


def run_from_args(args: argparse.Namespace) -> dict:
    ints = lambda text: tuple(int(x) for x in text.split(",") if x.strip())  # noqa: E731
    return main(bundle=args.bundle, dc_bundle=args.dc_bundle, duration=args.duration, clients=args.clients,
                workers=ints(args.workers),
                connections=ints(args.connections), saturation_s=args.saturation_s, dc_requests=args.dc_requests,
                profile=args.profile, keep=args.keep, server_options=tuple(args.server_option),
                server_env=dict(item.split("=", 1) for item in args.server_env), with_dc=not args.no_dc)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--loadgen", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH")
    add_arguments(parser)
    parsed = parser.parse_args()
    if parsed.loadgen:
        loadgen_main(parsed.loadgen)
    else:
        out = run_from_args(parsed)
        if parsed.json:
            Path(parsed.json).write_text(json.dumps(out, indent=2))
