"""The chat page: static files, the page's state, live events (server-sent events) and its actions.

The page acts only through the World (as a person typing, uploading or pressing a button) and the
Sandbox (clock and reset); it never reaches the bot any other way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from bot.sandbox.world import ApiError

if TYPE_CHECKING:
    from bot.sandbox.run import Sandbox

log = logging.getLogger("linli.sandbox.page")

STATIC = Path(__file__).parent / "static"
KEEPALIVE_SECONDS = 15.0
MAX_ADVANCE = timedelta(days=30)
UPLOAD_MAX = 20 * 1024 * 1024  # Telegram's bots may download up to 20 MB


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def guard(loopback_only: bool) -> Any:
    """A middleware for the page's routes: no other website may act through a visitor's browser.

    A POST must come from the page itself (its Origin, when the browser sends one, is this server),
    so a site the visitor opens cannot reset or write into the sandbox. On loopback, the Host must be
    a loopback name, so a DNS-rebinding site cannot reach the page as a "same origin" either.
    The Bot API routes (the bot's own calls) pass untouched.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path == "/" or path.startswith(("/sandbox/", "/static/")):
            if loopback_only and (request.url.host or "") not in LOOPBACK_NAMES:
                return _fail(403, "the sandbox answers on its loopback address only")
            origin = request.headers.get("Origin")
            if request.method == "POST" and origin is not None and origin != f"{request.scheme}://{request.host}":
                return _fail(403, "only the sandbox's own page may do this")
            response = await handler(request)
            response.headers.setdefault("Cache-Control", "no-cache")  # a new version's page, not a stale one
            return response
        return await handler(request)

    return middleware


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _fail(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status, dumps=_dumps)


class Page:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.world = sandbox.world

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.index),
            web.static("/static", STATIC),
            web.get("/sandbox/state", self.state),
            web.get("/sandbox/events", self.events),
            web.post("/sandbox/send", self.send),
            web.post("/sandbox/upload", self.upload),
            web.post("/sandbox/press", self.press),
            web.post("/sandbox/clock", self.clock),
            web.post("/sandbox/reset", self.reset),
            web.get("/sandbox/file/{file_id}", self.file),
        ]

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def state(self, request: web.Request) -> web.Response:
        state = self.world.page_state()
        state["timezone"] = self.sandbox.settings.timezone
        return web.json_response(state, dumps=_dumps, headers={"Cache-Control": "no-store"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        queue = self.world.subscribe()
        try:
            await resp.write(b"retry: 1000\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                await resp.write(f"data: {_dumps(event)}\n\n".encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.world.unsubscribe(queue)
        return resp

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="expected a JSON object") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="expected a JSON object")
        return body

    def _playable(self) -> web.Response | None:
        if not self.world.ready:
            return _fail(409, "the sandbox is still getting ready")
        return None

    async def send(self, request: web.Request) -> web.Response:
        if (busy := self._playable()) is not None:
            return busy
        body = await self._json(request)
        try:
            msg = self.world.user_message(
                int(body["user_id"]), int(body["chat_id"]), text=str(body.get("text") or ""),
                reply_to=int(body["reply_to"]) if body.get("reply_to") else None,
            )
        except (KeyError, TypeError, ValueError):
            return _fail(400, "user_id, chat_id and text are needed")
        except ApiError as exc:
            return _fail(exc.code, exc.description)
        return web.json_response({"ok": True, "message_id": msg["message_id"]})

    async def upload(self, request: web.Request) -> web.Response:
        if (busy := self._playable()) is not None:
            return busy
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _fail(400, "no file")
        data = upload.file.read(UPLOAD_MAX + 1)
        if not data or len(data) > UPLOAD_MAX:
            return _fail(400, "the file is empty or larger than 20 MB")
        try:
            user_id, chat_id = int(str(form["user_id"])), int(str(form["chat_id"]))
            reply_to = int(str(form["reply_to"])) if form.get("reply_to") else None
        except (KeyError, ValueError):
            return _fail(400, "user_id and chat_id are needed")
        prefix = "AgAC" if (upload.content_type or "").startswith("image/") else "BQAD"
        entry = self.world.files.put(upload.filename or "file", data, upload.content_type, prefix=prefix)
        try:
            msg = self.world.user_message(
                user_id, chat_id, text=str(form.get("caption") or ""), file=entry, reply_to=reply_to
            )
        except ApiError as exc:
            return _fail(exc.code, exc.description)
        return web.json_response({"ok": True, "message_id": msg["message_id"]})

    async def press(self, request: web.Request) -> web.Response:
        if (busy := self._playable()) is not None:
            return busy
        body = await self._json(request)
        try:
            qid = self.world.press(int(body["user_id"]), int(body["chat_id"]), int(body["message_id"]),
                                   str(body["data"]))
        except (KeyError, TypeError, ValueError):
            return _fail(400, "user_id, chat_id, message_id and data are needed")
        except ApiError as exc:
            return _fail(exc.code, exc.description)
        return web.json_response({"ok": True, "qid": qid})

    async def clock(self, request: web.Request) -> web.Response:
        if (busy := self._playable()) is not None:
            return busy
        body = await self._json(request)
        try:
            delta = timedelta(seconds=float(body["seconds"]))
        except (KeyError, TypeError, ValueError):
            return _fail(400, "seconds is needed")
        if not timedelta(0) < delta <= MAX_ADVANCE:
            return _fail(400, "the clock moves forward by up to 30 days at a time")
        await self.sandbox.advance(delta)
        return web.json_response({"ok": True, "offset_ms": int(self.sandbox.clock.offset.total_seconds() * 1000)})

    async def reset(self, request: web.Request) -> web.Response:
        if self.world.phase in ("seeding", "resetting", "starting"):
            return _fail(409, "the sandbox is already starting afresh")
        # The reset runs on its own: the page learns of its progress from the event stream.
        self.sandbox.spawn(self.sandbox.reset())
        return web.json_response({"ok": True})

    async def file(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        entry = self.world.files.get(file_id)
        if entry is None:
            raise web.HTTPNotFound()
        disposition = "attachment" if "download" in request.query else "inline"
        headers = {
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(entry.name)}",
            "X-Content-Type-Options": "nosniff",
            # A file is the bot's or a visitor's upload: never let it run script in the page's origin.
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
        }
        return web.Response(body=self.world.files.read(file_id), content_type=entry.mime, headers=headers)
