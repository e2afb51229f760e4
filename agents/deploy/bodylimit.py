"""A request body size limit (pure ASGI middleware): 413 naming the limit, before the app reads anything.

A `Content-Length` over the limit is refused at once; a body without one (chunked) is counted as it streams
and refused as soon as it passes the limit. A body within the limit is handed to the app unchanged.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413 `{"detail": "..."}`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.max_bytes:
                await self._refuse(send, f"the body is {declared} bytes")
                return
        # read the body here (within the limit), then replay it to the app as it arrived
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                chunks.append(message)
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, f"the body passed {self.max_bytes} bytes")
                return
            chunks.append(message)
            if not message.get("more_body", False):
                break
        queue = iter(chunks)

        async def replay() -> Message:
            return next(queue, None) or await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, what: str) -> None:
        body = json.dumps({"detail": f"{what}; allowed: at most {self.max_bytes} bytes (max_body_bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
