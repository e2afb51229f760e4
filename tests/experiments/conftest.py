"""What the service tests share: `python -m experiments.serve` as a real subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "SUPPLYCHAIN_TWIN_SIGNING_KEY"
KEY = "test-only-signing-key-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `python -m experiments.serve` on 127.0.0.1 and an httpx client for it; `stop()` ends it by pid."""

    def __init__(self, directory: Path, bundle: Path, clients: tuple[Path, dict[str, str]], **options) -> None:
        self.port, self.secrets = free_port(), clients[1]
        self.audit_url = f"sqlite:///{directory / 'audit.sqlite'}"
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        self.log_path = directory / "server.log"
        args = [f"bundle={bundle}", f"port={self.port}", f"clients_file={clients[0]}", f"audit_url={self.audit_url}",
                f"hydra.run.dir={directory / 'run'}", *(f"{k}={v}" for k, v in options.items())]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "experiments.serve", *args], cwd=ROOT,
                                            env={**os.environ, KEY_ENV: KEY}, stdout=log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self._tokens: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.http.get("/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server did not answer within 60 s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def token(self, client: str) -> str:
        if client not in self._tokens:
            answer = self.http.post("/v1/token", data={"grant_type": "client_credentials", "client_id": client,
                                                       "client_secret": self.secrets[client]})
            assert answer.status_code == 200, answer.text
            self._tokens[client] = answer.json()["access_token"]
        return self._tokens[client]

    def auth(self, client: str = "erp") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client)}"}

    def decide(self, body, client: str = "erp", **kwargs) -> httpx.Response:
        content = body if isinstance(body, (str, bytes)) else json.dumps(body)
        headers = {"Content-Type": "application/json", **self.auth(client), **kwargs.pop("headers", {})}
        return self.http.post("/v1/decisions", content=content, headers=headers, **kwargs)

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def clients(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A clients file: erp (decide), ops (admin and decide), slow (decide, for the rate limit)."""
    from agents.deploy.auth import add_client

    path = tmp_path_factory.mktemp("clients") / "clients.json"
    secrets = {cid: add_client(path, cid, scopes) for cid, scopes in
               (("erp", ["decide"]), ("ops", ["admin", "decide"]), ("slow", ["decide"]))}
    return path, secrets


@pytest.fixture(scope="session")
def server_class() -> type[Server]:
    """`Server`, for tests that start their own (a conftest is not imported by name)."""
    return Server
