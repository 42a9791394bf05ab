"""FakeTelegram: a Bot API server on 127.0.0.1 for end-to-end tests.

    async with FakeTelegram(token="123:ABC") as tg:
        # aiogram: AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
        # PTB:     ApplicationBuilder().base_url(tg.base_url + "/bot")
        alice = tg.user(1, "Alice")
        tg.send(alice, tg.private_chat(alice), "/start")
        rec = await tg.wait_text(alice["id"], "欢迎")

Errors are answered as Telegram does: HTTP status == error_code.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakeapi.methods import BotMethods, SentRecord
from tests.fakeapi.validate import ApiError, Checked, UploadedFile, validate_call

# Update types Telegram leaves out unless a bot names them in allowed_updates.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most events within any `window` seconds (a half-open interval): how a log of send times
    is judged against a limit of Telegram's, in every window and not only on average."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


@dataclass(slots=True)
class Fault:
    method: str  # lower-case
    chat_id: int | str | None = None
    status: int | None = None
    description: str | None = None
    retry_after: int | None = None
    drop: bool = False
    # Carry the call out, then answer 200 with a body the framework cannot read: "fields" drops
    # the result's fields but message_id (as some emulators do), "text" is not JSON at all.
    garble: str | None = None


@dataclass(slots=True)
class FailedCall:
    """A call answered by an injected fault or a rate limit: it was not carried out."""

    method: str
    params: dict[str, Any]
    status: int | None  # None when the connection was dropped
    description: str
    time: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Rejection:
    """A call Telegram would refuse: the bot did something wrong (or, kind="refusal", the world said no)."""

    method: str
    params: dict[str, Any]
    reason: str
    status: int = 400
    kind: str = "rejection"
    time: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Limits:
    """Telegram's send limits (Bot FAQ), each held as a sliding window: a send is refused with 429
    when the window ending at its arrival already holds `count` sends."""

    global_per_second: int = 30  # in any 1 s, all chats
    per_chat_count: int = 5  # to one chat, in any per_chat_seconds ("one a second, short bursts")
    per_chat_seconds: float = 5.0
    group_per_minute: int = 20  # to one group, in any 60 s


_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class FakeTelegram(BotMethods):
    def __init__(
        self,
        token: str = "123:ABC",
        *,
        enforce_limits: bool = False,
        limits: Limits | None = None,
        privacy_mode: bool = False,
        push_connections: int = 1,
    ):
        super().__init__(token, privacy_mode=privacy_mode)
        self.enforce_limits = enforce_limits
        self.limits = limits or Limits()
        self.sent: list[SentRecord] = []
        self.failed_calls: list[FailedCall] = []
        self.rejections: list[Rejection] = []  # bot bugs: expect [] at the end of a test
        self.refusals: list[Rejection] = []  # the world said no (blocked, not a member, no rights)
        self.throttled: list[FailedCall] = []  # 429s from enforce_limits
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every request, in order (method, raw params)
        self.faults: list[Fault] = []
        # Seconds a send* call waits, after it was carried out, before it is answered (a slow
        # network): widens the window in which a crash leaves a delivered message unmarked.
        self.answer_delay = 0.0
        # While set, send* calls wait before they are carried out; one whose caller went away
        # meanwhile (a killed bot) is never carried out.
        self.hold_sends = False
        self.stall: dict[str, float] = {}  # method -> seconds it takes to answer (a hanging Telegram)
        # Webhook mode: updates are pushed to webhook_url one at a time, in order, with the secret
        # the bot set; one not answered 200 is pushed again (as Telegram retries).
        self.pushes: list[tuple[int, int | None]] = []  # (update_id, HTTP status or None) per push
        self.push_paused = False
        # Telegram opens up to the webhook's max_connections at once; 1 (the default) keeps one
        # push at a time. With more, a chat's updates still go one at a time (see _queue_of).
        self.push_connections = push_connections
        self._pushing: dict[Any, int] = {}  # queue -> update_id in flight
        self._retry_at: dict[int, float] = {}  # update_id -> when a refused push may go again
        self._pusher: asyncio.Task[None] | None = None
        self.base_url = ""
        self.port = 0
        self.max_delivered = 0  # highest update_id handed to a live getUpdates
        self._inflight = 0
        self._last_activity = time.monotonic()
        self._sent_event = asyncio.Event()
        self._poll_gen = 0
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._send_times: deque[float] = deque()
        self._chat_times: dict[int, deque[float]] = {}  # per chat, the last per_chat_seconds
        self._group_times: dict[int, deque[float]] = {}  # per group, the last 60 s
        self.accepted_sends: list[tuple[float, int]] = []  # (arrival, chat) of every send let through

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._pusher = asyncio.create_task(self._push_loop(), name="fake-webhook-pusher")
        return self

    async def stop(self) -> None:
        self._closing = True
        self._wake()  # long polls return at once
        if self._pusher is not None:
            self._pusher.cancel()
            await asyncio.gather(self._pusher, return_exceptions=True)
            self._pusher = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """Base for PTB's ApplicationBuilder().base_url(...)."""
        return self.base_url + "/bot"

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        description: str | None = None,
        drop: bool = False,
        garble: str | None = None,
        chat_id: int | str | None = None,
        times: int = 1,
    ) -> None:
        """The next call(s) of `method` (optionally to `chat_id`) fail once each, in order.

        garble="fields" / "text": the call is carried out but answered 200 with a body the
        framework cannot read (see Fault)."""
        if not drop and status is None and garble is None:
            raise ValueError("give status=..., drop=True or garble=...")
        if status == 429 and retry_after is None:
            retry_after = 1
        for _ in range(times):
            self.faults.append(Fault(method.lower(), chat_id, status, description, retry_after, drop, garble))

    def _take_fault(self, method: str, raw: dict[str, Any]) -> Fault | None:
        for i, f in enumerate(self.faults):
            if f.method == method.lower() and (f.chat_id is None or str(f.chat_id) == str(raw.get("chat_id"))):
                return self.faults.pop(i)
        return None

    # ------------------------------------------------------------------ HTTP

    @staticmethod
    def _error(e: ApiError) -> web.Response:
        return web.json_response(e.payload(), status=e.code)

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if request.content_type == "application/json":
            body = await request.json() if request.can_read_body else None
            if body is not None and not isinstance(body, dict):
                raise ApiError(400, "Bad Request: the JSON body must be an object")
            raw.update(body or {})
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = UploadedFile(value.filename, value.file.read(), value.content_type)
                else:
                    raw[key] = value
        # PTB omits a file field and sends the part under that name; it is picked up by validation.
        return raw, files

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        is_poll = method.lower() == "getupdates"
        if not is_poll:
            self._inflight += 1
            self._last_activity = time.monotonic()
        try:
            return await self._serve(request, method)
        finally:
            if not is_poll:
                self._inflight -= 1
                self._last_activity = time.monotonic()

    async def _serve(self, request: web.Request, method: str) -> web.StreamResponse:
        try:
            raw, files = await self._read_params(request)
        except (ValueError, ApiError) as e:
            err = e if isinstance(e, ApiError) else ApiError(400, f"Bad Request: can't parse request body: {e}")
            self.rejections.append(Rejection(method, {}, err.description, err.code))
            return self._error(err)
        self.calls.append((method, raw))
        if request.match_info["token"] != self.token:
            err = ApiError(401, "Unauthorized")
            self.rejections.append(Rejection(method, raw, err.description, err.code))
            return self._error(err)
        spec_method = self.spec.method(method)
        if spec_method is None:
            self.rejections.append(Rejection(method, raw, "Not Found", 404))
            return self._error(ApiError(404, "Not Found"))
        name = spec_method["name"]

        fault = self._take_fault(name, raw)
        if fault is not None and fault.garble is None:
            return await self._inject(request, name, raw, fault)
        try:
            checked = validate_call(self.spec, name, raw, files)
        except ApiError as e:
            self.rejections.append(Rejection(name, raw, e.description, e.code))
            return self._error(e)
        if name == "getUpdates":
            return await self._get_updates(request, checked)
        if name in self.stall:
            until = time.monotonic() + self.stall[name]
            while time.monotonic() < until and not _gone(request) and not self._closing:
                await asyncio.sleep(0.02)
            if _gone(request) or self._closing:
                self.failed_calls.append(FailedCall(name, raw, None, "caller gone while stalled"))
                return web.Response(status=503)
        if self.hold_sends and name.startswith("send"):
            while self.hold_sends and not _gone(request) and not self._closing:
                await asyncio.sleep(0.01)
            if _gone(request) or self._closing:
                self.failed_calls.append(FailedCall(name, raw, None, "caller gone while held"))
                return web.Response(status=503)
        if self.enforce_limits and (wait := self._throttle(checked)):
            err = ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
            self.throttled.append(FailedCall(name, checked.params, 429, err.description))
            return self._error(err)
        handler = self.handlers.get(name)
        try:
            result = await handler(checked) if handler else True
        except ApiError as e:
            target = self.refusals if e.kind == "refusal" else self.rejections
            target.append(Rejection(name, checked.params, e.description, e.code, e.kind))
            return self._error(e)
        self._record(self.make_record(checked, result))
        if self.answer_delay and name.startswith("send"):
            await asyncio.sleep(self.answer_delay)
        if fault is not None and fault.garble == "text":
            self.failed_calls.append(FailedCall(name, raw, 200, "garbled answer (not JSON)"))
            return web.Response(text="OK", status=200, content_type="text/plain")
        if fault is not None and fault.garble is not None:
            self.failed_calls.append(FailedCall(name, raw, 200, "garbled answer (fields missing)"))
            thin = {"message_id": result["message_id"]} if isinstance(result, dict) and "message_id" in result else {}
            return web.json_response({"ok": True, "result": thin})
        return web.json_response({"ok": True, "result": result})

    async def _inject(self, request: web.Request, name: str, raw: dict[str, Any], fault: Fault) -> web.StreamResponse:
        if fault.drop:
            self.failed_calls.append(FailedCall(name, raw, None, "connection dropped"))
            # Close the TCP connection without an answer: the client sees a disconnect.
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # aiohttp gives up on this request quietly
        status = fault.status or 500
        desc = fault.description or (
            f"Too Many Requests: retry after {fault.retry_after}" if status == 429
            else _DEFAULT_DESCRIPTIONS.get(status, "Error")
        )
        self.failed_calls.append(FailedCall(name, raw, status, desc))
        return self._error(ApiError(status, desc, retry_after=fault.retry_after if status == 429 else None))

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        parts = request.match_info["path"].split("/")
        entry = self.files.get(parts[1]) if len(parts) >= 2 else None
        if entry is None:
            return web.Response(status=404)
        return web.Response(body=entry[1])

    def _record(self, rec: SentRecord) -> None:
        self.sent.append(rec)
        self._sent_event.set()
        self._sent_event = asyncio.Event()

    # ------------------------------------------------------------------ getUpdates

    def _allowed(self) -> set[str]:
        names = set(self.spec.update_types())
        if self.allowed_updates:
            return set(self.allowed_updates)
        return names - OPT_IN_UPDATES

    async def _get_updates(self, request: web.Request, c: Checked) -> web.StreamResponse:
        p = c.params
        if self.webhook_url:
            err = ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
            self.rejections.append(Rejection("getUpdates", p, err.description, 409))
            return self._error(err)
        if "allowed_updates" in p:
            self.allowed_updates = list(p["allowed_updates"])
        offset = p.get("offset")
        if offset is not None:
            if offset < 0:
                del self.updates[: max(0, len(self.updates) + offset)]
            else:
                self.updates[:] = [u for u in self.updates if u["update_id"] >= offset]
        limit = min(max(p.get("limit", 100), 1), 100)
        deadline = time.monotonic() + max(p.get("timeout", 0), 0)
        self._poll_gen += 1
        gen = self._poll_gen
        self._wake()  # an older poll still waiting ends with 409, as on Telegram
        while True:
            waiter = self._update_event
            if gen != self._poll_gen:
                if not _gone(request):
                    self.rejections.append(Rejection("getUpdates", p, _CONFLICT, 409))
                return self._error(ApiError(409, _CONFLICT))
            batch = self._deliverable(limit)
            left = deadline - time.monotonic()
            if batch or left <= 0 or self._closing or _gone(request):
                break
            try:
                await asyncio.wait_for(waiter.wait(), timeout=min(left, 0.5))
            except TimeoutError:
                pass
        if batch and not _gone(request):
            self.max_delivered = max(self.max_delivered, batch[-1]["update_id"])
            self._last_activity = time.monotonic()
        return web.json_response({"ok": True, "result": batch})

    def _deliverable(self, limit: int) -> list[dict[str, Any]]:
        allowed = self._allowed()
        keep = []
        for u in self.updates:
            kind = next(k for k in u if k != "update_id")
            if kind in allowed:
                keep.append(u)
            else:
                self.dropped_updates.append(u)
        self.updates[:] = keep
        return keep[:limit]

    # ------------------------------------------------------------------ webhook

    async def post_webhook(self, body: Any, secret: str | None, *, raw: bytes | None = None,
                           url: str | None = None) -> int:
        """POST to the bot's webhook as Telegram would (or a forger): returns the HTTP status."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        data = raw if raw is not None else json.dumps(body).encode()
        async with aiohttp.ClientSession() as session, session.post(
            url or self.webhook_url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            await resp.read()
            return resp.status

    async def _push_loop(self) -> None:
        while not self._closing:
            if self.push_connections > 1:  # a test may widen it after the start
                await self._push_parallel()
                return
            waiter = self._update_event
            # Only to this machine: a test never makes the fake reach out to the internet.
            local = self.webhook_url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))
            if self.webhook_url and local and not self.push_paused:
                batch = self._deliverable(1)
                if batch:
                    update = batch[0]
                    try:
                        status: int | None = await self.post_webhook(
                            update, self.webhook_params.get("secret_token"))
                    except (aiohttp.ClientError, TimeoutError):
                        status = None
                    self.pushes.append((update["update_id"], status))
                    if status == 200:
                        self.updates[:] = [u for u in self.updates if u["update_id"] != update["update_id"]]
                        self.max_delivered = max(self.max_delivered, update["update_id"])
                        self._last_activity = time.monotonic()
                        continue
                    await asyncio.sleep(0.2)  # Telegram retries later
                    continue
            try:
                await asyncio.wait_for(waiter.wait(), timeout=0.2)
            except TimeoutError:
                pass

    @staticmethod
    def _queue_of(update: dict[str, Any]) -> tuple[str, Any]:
        """The queue an update waits in, as the Bot API server's webhook keeps them (telegram-bot-api,
        Client.cpp: `webhook_queue_id`): a chat's messages and the bot's own membership changes per
        chat, button presses and others' membership changes per user. The next update of a queue
        is pushed only after the previous one was answered 200; different queues go in parallel."""
        if "callback_query" in update:
            return ("user", update["callback_query"]["from"]["id"])
        if "chat_member" in update:
            return ("member", update["chat_member"]["new_chat_member"]["user"]["id"])
        for kind in ("message", "edited_message", "my_chat_member", "channel_post", "edited_channel_post"):
            if kind in update:
                return ("chat", update[kind]["chat"]["id"])
        return ("update", update["update_id"])

    def _ready_pushes(self, room: int) -> list[dict[str, Any]]:
        """Up to `room` updates that may be pushed now: the head of each queue not in flight."""
        if room <= 0:
            return []
        allowed = self._allowed()
        now = time.monotonic()
        seen: set[tuple[str, Any]] = set()
        ready: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for u in self.updates:
            if next(k for k in u if k != "update_id") not in allowed:
                dropped.append(u)
                continue
            queue = self._queue_of(u)
            if queue in seen:
                continue
            seen.add(queue)
            if queue in self._pushing or self._retry_at.get(u["update_id"], 0.0) > now:
                continue
            ready.append(u)
            if len(ready) >= room:
                break
        if dropped:
            self.dropped_updates.extend(dropped)
            gone = {id(u) for u in dropped}
            self.updates[:] = [u for u in self.updates if id(u) not in gone]
        return ready

    async def _push_parallel(self) -> None:
        """Up to min(push_connections, the webhook's max_connections) pushes at once, over kept-alive
        connections, each queue in order (see _queue_of)."""
        tasks: set[asyncio.Task[None]] = set()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            while not self._closing:
                waiter = self._update_event
                local = self.webhook_url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))
                if self.webhook_url and local and not self.push_paused:
                    width = min(self.push_connections, int(self.webhook_params.get("max_connections") or 40))
                    for update in self._ready_pushes(width - len(self._pushing)):
                        self._pushing[self._queue_of(update)] = update["update_id"]
                        task = asyncio.create_task(self._push_one(session, update))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                try:
                    await asyncio.wait_for(waiter.wait(), timeout=0.05 if self._retry_at else 0.2)
                except TimeoutError:
                    pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.close()

    async def _push_one(self, session: aiohttp.ClientSession, update: dict[str, Any]) -> None:
        uid = update["update_id"]
        headers = {"Content-Type": "application/json"}
        if secret := self.webhook_params.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        status: int | None
        try:
            async with session.post(self.webhook_url, data=json.dumps(update).encode(), headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        finally:
            self._pushing.pop(self._queue_of(update), None)
        self.pushes.append((uid, status))
        if status == 200:
            self._retry_at.pop(uid, None)
            self.updates[:] = [u for u in self.updates if u["update_id"] != uid]
            self.max_delivered = max(self.max_delivered, uid)
            self._last_activity = time.monotonic()
        else:
            self._retry_at[uid] = time.monotonic() + 0.2  # Telegram retries later
        self._wake()  # the queue's next update may go now

    # ------------------------------------------------------------------ rate limits

    def _throttle(self, c: Checked) -> int:
        """Seconds to wait if this send breaks a limit (then it is not counted), else 0.

        Every limit is a sliding window over arrival times, as Telegram states them ("20 messages
        per minute to one group" holds in *every* minute, not on average)."""
        if not (c.method.startswith("send") and c.method != "sendChatAction") or "chat_id" not in c.params:
            return 0
        now = time.monotonic()
        chat_id = c.params["chat_id"]
        key = chat_id if isinstance(chat_id, int) else hash(chat_id)
        lim = self.limits
        windows: list[tuple[deque[float], int, float]] = [
            (self._send_times, lim.global_per_second, 1.0),
            (self._chat_times.setdefault(key, deque()), lim.per_chat_count, lim.per_chat_seconds),
        ]
        if isinstance(chat_id, int) and chat_id < 0:
            windows.append((self._group_times.setdefault(key, deque()), lim.group_per_minute, 60.0))
        waits = []
        for times, count, seconds in windows:
            while times and now - times[0] >= seconds:
                times.popleft()
            if len(times) >= count:
                waits.append(seconds - (now - times[-count]))
        if waits:
            return max(1, math.ceil(max(waits)))
        for times, _, _ in windows:
            times.append(now)
        self.accepted_sends.append((now, key))
        return 0

    # ------------------------------------------------------------------ waiting in tests

    def mark(self) -> int:
        """An index into `sent`; pass it as since= to wait only for later calls."""
        return len(self.sent)

    async def wait_for(
        self, predicate: Callable[[SentRecord], bool], timeout: float = 5.0, *, since: int = 0  # noqa: ASYNC109
    ) -> SentRecord:
        """The first sent record (from index `since`) matching predicate; waits for new ones."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            waiter = self._sent_event
            while i < len(self.sent):
                if predicate(self.sent[i]):
                    return self.sent[i]
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching bot call within {timeout}s; last calls:\n{self.describe()}")
            try:
                await asyncio.wait_for(waiter.wait(), timeout=left)
            except TimeoutError:
                pass

    async def wait_text(
        self, chat_id: int | dict[str, Any], substring: str, timeout: float = 5.0, *, since: int = 0  # noqa: ASYNC109
    ) -> SentRecord:
        """The first message sent or edited into `chat_id` whose visible text contains `substring`."""
        cid = chat_id if isinstance(chat_id, int) else chat_id["id"]
        return await self.wait_for(
            lambda r: r.chat_id == cid and r.text is not None and substring in r.text
            and r.method != "answerCallbackQuery",
            timeout,
            since=since,
        )

    async def idle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the bot fetched every queued update and made no call for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            # Pushed in parallel, an update refused once may wait behind a later one already delivered.
            pending = (list(self.updates) if self.push_connections > 1 and self.webhook_url
                       else [u for u in self.updates if u["update_id"] > self.max_delivered])
            if not pending and not self._pushing and self._inflight == 0 and now - self._last_activity >= quiet:
                return
            if now > deadline:
                raise AssertionError(
                    f"bot not idle after {timeout}s: {len(pending)} updates not fetched, "
                    f"{self._inflight} calls in flight; last calls:\n{self.describe()}"
                )
            await asyncio.sleep(0.02)

    def describe(self, last: int = 10) -> str:
        lines = [
            f"  {r.method} chat={r.chat_id} mid={r.message_id} text={(r.text or '')[:80]!r}" for r in self.sent[-last:]
        ]
        lines += [f"  REJECTED {r.method}: {r.reason}" for r in self.rejections[-last:]]
        return "\n".join(lines) or "  (none)"

    def sent_by(self, method: str) -> list[SentRecord]:
        return [r for r in self.sent if r.method.lower() == method.lower()]


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
