"""A lean HTTP/1.1 keep-alive client on asyncio streams, for load generation on the machine under test.

    connection = await Connection.open("http://127.0.0.1:8000")
    reply = await connection.request("POST", "/v1/decisions", {"Authorization": "Bearer ..."}, body)
    reply.status, reply.headers["x-decisions-replayed"], reply.body

The load generator shares this machine's cores with the service it measures, so what it spends per request is
taken from the service: httpx spent about 1.5 ms of CPU per 50-SKU request (bench --serve, 2 cores), and capped a
no-op FastAPI endpoint at about 600 requests/s; this client spends about 0.05 ms. It speaks just enough HTTP/1.1
for that: one request at a time per connection (callers take turns), bodies framed by Content-Length or chunked,
no redirects, no TLS.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection failed or the server answered something that is not HTTP/1.1."""


@dataclass(frozen=True)
class Reply:
    """A response: status, headers (names lower-cased) and the body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection to a server; `request` sends a request and reads its whole response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host
        self._turn = asyncio.Lock()  # one request at a time: a second caller waits for the first answer
        self.broken: str | None = None  # why this connection can no longer be used (then every request says so)
        self.timeout = 30.0

    @classmethod
    async def open(cls, url: str, timeout: float = 30.0) -> Connection:
        """A connection to `url` (http://HOST:PORT)."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"url: {url!r} is not allowed; allowed: http://HOST:PORT")
        port = parts.port or 80
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout)
        except (OSError, asyncio.TimeoutError) as error:
            raise HttpError(f"cannot connect to {url}: {error!r}") from error
        connection = cls(reader, writer, f"{parts.hostname}:{port}")
        connection.timeout = timeout
        return connection

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> Reply:
        """Send one request and read its response within the connection's timeout. HttpError if the connection
        breaks, times out or was broken before: after an error the stream may be out of step, so the connection
        is not used again (open another)."""
        async with self._turn:
            if self.broken:
                raise HttpError(f"connection unusable: {self.broken}")
            try:
                reply = await asyncio.wait_for(self._exchange(method, path, headers or {}, body), self.timeout)
            except asyncio.TimeoutError:
                self.broken = f"no complete response within {self.timeout:g} s"
                raise HttpError(self.broken) from None
            except HttpError as error:
                self.broken = str(error)
                raise
            except BaseException:  # cancelled mid-exchange: the stream is out of step
                self.broken = "a request was cancelled mid-exchange"
                raise
            if reply.headers.get("connection", "").lower() == "close":
                self.broken = "the server closed it (Connection: close)"
            return reply

    async def _exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as error:
            raise HttpError(f"no response: {error!r}") from error
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise HttpError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
        reply_headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            reply_headers[name.strip().lower()] = value.strip()
        try:
            if reply_headers.get("transfer-encoding", "").lower() == "chunked":
                content = await self._chunked()
            else:
                content = await self.reader.readexactly(int(reply_headers.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ValueError, OSError) as error:
            raise HttpError(f"response body cut short: {error!r}") from error
        return Reply(int(rest[:3]), reply_headers, content)

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            try:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            except asyncio.LimitOverrunError as error:
                raise HttpError(f"a chunk size line too long: {error!r}") from error
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers are sent by the servers measured
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
