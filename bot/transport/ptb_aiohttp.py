"""python-telegram-bot's Bot API requests over aiohttp: a `telegram.request.BaseRequest`, PTB's
documented way to bring another HTTP library. PTB's own request layer (parameters, answers by
HTTP status, errors) runs above it unchanged; only httpx is replaced.

Why: httpcore's connection pool re-examines every pooled connection (polling the idle sockets)
each time a request enters or leaves it, so a burst of button answers cost PTB several times
what it costs aiogram (bench/claims.py: 1,000 answerCallbackQuery at once, 3 ms of CPU each
against 0.7). aiohttp, which aiogram and the inbox use already, keeps a call's cost flat.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_DEFAULT = type(BaseRequest.DEFAULT_NONE)  # what PTB passes when a call names no timeout of its own


def _seconds(value: Any, default: float | None) -> float | None:
    return default if isinstance(value, _DEFAULT) else value


class AiohttpRequest(BaseRequest):
    """At most `connection_pool_size` connections; timeouts as HTTPXRequest takes them (aiohttp has
    no write timeout: the total bounds an upload instead, as in the aiogram adapter)."""

    def __init__(
        self,
        *,
        connection_pool_size: int,
        read_timeout: float | None,
        write_timeout: float | None,
        connect_timeout: float | None,
        pool_timeout: float | None,
        media_write_timeout: float | None = None,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._media_write = media_write_timeout if media_write_timeout is not None else write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._pool_size))

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        params = request_data.json_parameters if request_data else None
        read = _seconds(read_timeout, self._read)
        write = _seconds(write_timeout, self._media_write if files else self._write)
        connect = _seconds(connect_timeout, self._connect)
        pool = _seconds(pool_timeout, self._pool)
        parts = (read, write, connect, pool)
        timeout = aiohttp.ClientTimeout(
            total=None if None in parts else sum(p for p in parts if p is not None),
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
        data: Any = params
        if files:
            # Names as they are (UTF-8), as httpx and aiogram send them: quoted, 会议.ics would
            # arrive as %E4%BC%9A%E8%AE%AE.ics.
            form = aiohttp.FormData(quote_fields=False)
            for name, value in (params or {}).items():
                form.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                form.add_field(name, content, filename=filename, content_type=mimetype)
            data = form
        try:
            async with self._session.request(
                method, url, data=data, headers={"User-Agent": self.USER_AGENT}, timeout=timeout
            ) as resp:
                return resp.status, await resp.read()
        except TimeoutError as err:  # aiohttp's connect and read timeouts are TimeoutErrors too
            raise TimedOut(f"aiohttp.{type(err).__name__}: {err}") from err
        except aiohttp.ClientError as err:
            raise NetworkError(f"aiohttp.{type(err).__name__}: {err}") from err
