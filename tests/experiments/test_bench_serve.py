"""The decision service benchmark's building blocks at a tiny scale (experiments/bench_serve.py): a rule bundle,
ERP states from a twin snapshot, a real `python -m experiments.serve`, and the load generator in its own process.

Figures only have to be complete and sane (counts, no errors, ordered percentiles): nothing here is timed.
"""

from __future__ import annotations

import math
import time

import pytest

from agents.deploy.bundle import load_bundle
from agents.deploy.erp_state import ErpState
from experiments import bench_serve


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_serve")
    path = bench_serve.export_rule_bundle(root / "export", network="small")
    bundle = load_bundle(path)
    stores, dcs = bench_serve.erp_states(bundle, day=30)  # every location has an open line by then
    return root, path, bundle, stores, dcs


def _sane_latencies(result: dict, *, long: bool = True) -> None:
    """`long`: a phase of a second or more, long enough for the server's CPU time to pass one clock tick (10 ms)."""
    assert result["errors"] == 0, result["error_kinds"]
    assert result["ok"] == result["requests"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["replayed_decisions"] == 0  # every request was new: decided and audited, not replayed
    assert result["wall_s"] > 0 and (result["server_cpu_s"] > 0 if long else result["server_cpu_s"] >= 0)
    assert (0 < result["server_cpu_pct_machine"] if long else 0 <= result["server_cpu_pct_machine"]) \
        and result["server_cpu_pct_machine"] <= result["server_cpu_pct_core"]


def test_states_one_location_each_and_bodies_vary(setup):
    root, _, bundle, stores, dcs = setup
    kinds = {node.name: node.kind for node in bundle.network.nodes}
    assert len(stores) == sum(k == "store" for k in kinds.values())
    assert len(dcs) == sum(k == "dc" for k in kinds.values())
    for state in (*stores, *dcs):
        assert len(state.locations) == 1
        assert bench_serve.skus_of(state) == len(bundle.network.skus.name)
    paths, fresh = bench_serve.write_templates(stores, root / "bodies", "store")
    assert fresh and all(bench_serve.PLACEHOLDER in p.read_text() for p in paths)
    bare = stores[0].model_copy(update={"locations": [stores[0].locations[0].model_copy(update={"items": [
        item.model_copy(update={"open_orders": []}) for item in stores[0].locations[0].items]})]})
    level, varies = bench_serve.body_template(bare)  # no open line: the first item's service level varies
    assert varies and bench_serve.LEVEL_PLACEHOLDER in level
    bodies = bench_serve._Bodies([p.read_text() for p in paths] + [level])
    first, second = bodies.next(0), bodies.next(0)
    assert first != second and bench_serve.PLACEHOLDER.encode() not in first
    one, two = (ErpState.model_validate_json(bodies.next(len(paths))) for _ in range(2))
    assert one != two and 0.9 <= one.locations[0].items[0].service_level < 1


def test_loads_against_a_real_server(setup):
    root, path, bundle, stores, dcs = setup
    store_templates, _ = bench_serve.write_templates(stores[:2], root / "bodies", "store")
    dc_templates, _ = bench_serve.write_templates(dcs[:1], root / "bodies", "dc")
    with bench_serve.Service(path, root / "server", workers=1, clients=2) as service:
        assert service.worker_pids() == [service.pid]
        open_loop, closed = bench_serve.run_load(service, store_templates, [
            {"kind": "open", "clients": 2, "duration": 1.0, "rate": 4.0},
            {"kind": "closed", "connections": 2, "duration": 1.0, "warmup": 0.2}], root / "load")
        dc = bench_serve.run_load(service, dc_templates, [{"kind": "sequential", "count": 5, "warmup": 1}],
                                  root / "load")[0]
        memory = service.memory()
        pid = service.pid
    assert service.process.poll() is not None and bench_serve.rss_mb(pid) is None  # stopped
    assert open_loop["scheduled"] == open_loop["requests"] == 8  # 2 clients x 4 per second x 1 s
    _sane_latencies(open_loop)
    assert math.isfinite(open_loop["send_lag_p99_ms"])
    _sane_latencies(closed)
    assert closed["requests_per_s"] == closed["ok"] / 1.0
    assert dc["requests"] == 5
    _sane_latencies(dc, long=False)  # 5 requests in ~15 ms: the server's CPU time may read 0 ticks (it did, in CI)
    assert memory["server_mb"] > 0 and memory["workers_mb"] == [memory["server_mb"]]


def test_in_process_and_stack_summary(setup):
    _, _, bundle, _, dcs = setup
    local = bench_serve.in_process(bundle, dcs[0], repeat=3)
    assert 0 < local["decide_ms"] and 0 < local["parse_decide_dump_ms"] and local["repeat"] == 3
    stacks = ("a (x.py:1);create_app.<locals>.decisions (agents/deploy/service.py:9);"
              "AuditLog.append (agents/deploy/audit.py:3) 3\n"
              "a (x.py:1);Thread._bootstrap (threading.py:2);Condition.wait (threading.py:5) 1\n")
    summary = bench_serve.summarise_stacks(stacks)
    assert summary["samples"] == 4
    assert dict(summary["path"]) == {"audit: AuditLog.append (SQLAlchemy + SQLite insert, commit)": 0.75,
                                     "worker threads waiting for work (threading.Condition: anyio's pool "
                                     "hand-off)": 0.25}
    assert sum(share for _, share in summary["own"]) == pytest.approx(1.0)


def test_the_load_generators_http_client_against_a_real_server():
    """experiments/http_load.py over a real socket: keep-alive requests, bodies framed by Content-Length and
    chunked, callers taking turns on one connection, and a broken connection as HttpError."""
    import asyncio
    import http.server
    import threading

    from experiments.http_load import Connection, HttpError

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/stall":
                time.sleep(1.0)
            if self.path == "/close":
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                return
            if self.path == "/chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (body[:3], body[3:]):
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_response(201)
            self.send_header("Content-Length", str(len(body) + 1))
            self.send_header("X-Seen", self.headers.get("X-Token", ""))
            self.end_headers()
            self.wfile.write(body + b"!")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    async def exchange():
        connection = await Connection.open(url)
        try:
            replies = await asyncio.gather(*(connection.request("POST", "/echo", {"X-Token": str(i)}, b"body %d" % i)
                                             for i in range(5)))
            chunked = await connection.request("POST", "/chunked", body=b"abcdefgh")
        finally:
            await connection.close()
        return replies, chunked

    async def broken(path: str, timeout: float = 30.0) -> list[str]:
        connection = await Connection.open(url, timeout=timeout)
        said = []
        try:
            for _ in range(2):
                try:
                    await connection.request("POST", path, body=b"x")
                    said.append("ok")
                except HttpError as error:
                    said.append(str(error))
        finally:
            await connection.close()
        return said

    try:
        replies, chunked = asyncio.run(exchange())
        assert [(r.status, r.headers["x-seen"], r.body) for r in replies] == [
            (201, str(i), b"body %d!" % i) for i in range(5)]
        assert chunked.status == 200 and chunked.body == b"abcdefgh"
        # a server that closes, or stalls past the timeout: never used again (its stream may be out of step)
        assert asyncio.run(broken("/close")) == [
            "ok", "connection unusable: the server closed it (Connection: close)"]
        assert asyncio.run(broken("/stall", timeout=0.3)) == [
            "no complete response within 0.3 s", "connection unusable: no complete response within 0.3 s"]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(HttpError, match="cannot connect"):
        asyncio.run(Connection.open(url))
    with pytest.raises(ValueError, match="url: 'https://x' is not allowed"):
        asyncio.run(Connection.open("https://x"))
