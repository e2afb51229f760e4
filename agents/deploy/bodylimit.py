"""A request body size limit (pure ASGI middleware): 422 naming the limit, before the app reads anything.

The refusal has the shape of every other 422 of the service: `{"detail": [{"loc": "body", "msg": "... over
max_body_bytes=N ..."}]}` (the body is the field refused, the setting and its value say why).

A `Content-Length` over the limit is refused at once; a body without one (chunked) is counted as it streams
and refused as soon as it passes the limit. A body within the limit is handed to the app unchanged.

Routes named in `streamed` (an admin's bundle.zip upload) have a limit of their own and are not held in
memory: the app reads their body as it arrives, counted; past the limit the client gets the 422 and the app
sees the client go away (starlette's `ClientDisconnect`), and whatever it answers then is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` (the setting `setting`) with 422 `{"detail": [{"loc": "body", ...}]}`;
    `streamed` maps (method, path) to (limit, setting) for routes whose body streams through."""

    def __init__(self, app: ASGIApp, max_bytes: int, setting: str = "max_body_bytes",
                 streamed: Mapping[tuple[str, str], tuple[int, str]] | None = None) -> None:
        self.app, self.max_bytes, self.setting = app, max_bytes, setting
        self.streamed = dict(streamed or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.streamed.get((scope["method"], scope["path"]), (self.max_bytes, self.setting))
        streamed = (scope["method"], scope["path"]) in self.streamed
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > limit:
                await self._refuse(send, f"the body is {declared} bytes (Content-Length)", limit, setting)
                return
        if streamed:
            await self._stream(scope, receive, send, limit, setting)
            return
        # read the body here (within the limit), then replay it to the app as it arrived
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                chunks.append(message)
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(send, f"the body passed {limit} bytes as it streamed", limit, setting)
                return
            chunks.append(message)
            if not message.get("more_body", False):
                break
        queue = iter(chunks)

        async def replay() -> Message:
            return next(queue, None) or await receive()

        await self.app(scope, replay, send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, limit: int, setting: str) -> None:
        size, refused, started = 0, False, False

        async def counted() -> Message:
            nonlocal size, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit and not started:
                    refused = True
                    await self._refuse(send, f"the body passed {limit} bytes as it streamed", limit, setting)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if not refused:
                started = True
                await send(message)

        await self.app(scope, counted, guarded)

    async def _refuse(self, send: Send, what: str, limit: int, setting: str) -> None:
        message = f"{what}, over {setting}={limit}; allowed: at most {limit} bytes"
        body = json.dumps({"detail": [{"loc": "body", "msg": message}]}).encode()
        await send({"type": "http.response.start", "status": 422,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
