"""A fleet: several Linli instances in webhook mode behind HAProxy, on one PostgreSQL, as deploy/
describes it. Used by tests/e2e/test_scale_out.py and bench/scale_out.py.

    fleet = Fleet(tg, database_url, tmp_path)
    await fleet.start()        # haproxy + 3 instances (main.py, each a process of its own)
    tg.send(alice, group, "/demand ...")   # the fake server pushes it to HAProxy
    await fleet.settle()       # every update handled, every message out
    await fleet.kill9(1)       # SIGKILL one instance

HAProxy runs deploy/haproxy.cfg, rendered for 127.0.0.1 and free ports (render_haproxy: the
parts that need root or a certificate are left out, nothing else changes). Each instance gets
deploy/linli.env.example and deploy/instances/<n>.env, overridden by the test's values (token,
fake server, database, ports). An instance may reach PostgreSQL through a TcpGate, which the
test can cut to take that instance's database away while the others keep theirs.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.storage.db import make_engine, make_session_factory, migrate
from bot.storage.models import InboxUpdate, Outbox, RefreshMark
from config.settings import Settings
from tests.fakeapi.server import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRET = "fleet-test-secret_0123456789abcdefXYZ"
WEBHOOK_PATH = "/telegram/webhook"  # the path deploy/haproxy.cfg lets through
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)

# Test timing: timers swept twice a second, admin lists never cached, a meeting "minute" lasting a
# second, and a short outbox lease. Not the 1 s of the one-instance tests: a claim is renewed from
# the outbox's loop, which turns about once a second, so with several instances a 1 s lease lapses
# under load while its rows are still being sent and another instance sends them again.
# Telegram's send limits stay at their defaults, as deployed.
LEASE_SECONDS = 5.0
FAST_ENV = {
    "OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS),
    "SCHEDULER_SWEEP_SECONDS": "0.5",
    "ADMIN_CACHE_SECONDS": "0",
    "MEETING_MINUTE_SECONDS": "1",
    "LOG_LEVEL": "WARNING",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_env(path: Path) -> dict[str, str]:
    """A systemd EnvironmentFile: KEY=VALUE lines; blank lines and comments skipped."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip().strip('"')
    return out


def deploy_env(instance: int) -> dict[str, str]:
    """The env an instance of deploy/ gets: the shared file, then its own (as linli@.service reads them)."""
    unit = (DEPLOY / "linli@.service").read_text(encoding="utf-8")
    files = re.findall(r"^EnvironmentFile=(\S+)$", unit, re.M)
    assert files == ["/etc/linli/linli.env", "/etc/linli/%i.env"], files
    assert re.search(r"^ExecStart=\S+/python main\.py$", unit, re.M), "the unit runs main.py"
    return {**read_env(DEPLOY / "linli.env.example"), **read_env(DEPLOY / "instances" / f"{instance}.env")}


def unknown_settings(env: dict[str, str]) -> list[str]:
    return sorted(k for k in env if k.lower() not in Settings.model_fields)


# ---------------------------------------------------------------------------------------- HAProxy


def render_haproxy(template: str, *, front: int, backends: Sequence[int], stats_socket: Path) -> str:
    """deploy/haproxy.cfg for a test on 127.0.0.1: the frontend on `front` without TLS (the fake
    Telegram posts http://), one server line per backend port with the template's options, the
    stats socket in a folder of the test's, and no chroot, user switch, daemon or syslog (those
    need root). Every other line is kept as written, so the balancing, the checks and the
    timeouts tested are those operators get; a template these rules no longer fit fails here."""
    out: list[str] = []
    section = ""
    found = {"bind": 0, "server": 0, "stats socket": 0}
    server_options: str | None = None
    for line in template.splitlines():
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped and not line[0].isspace():
            section = stripped.split()[0]
        words = stripped.split()
        head = words[0] if words else ""
        if section == "global" and head in ("chroot", "user", "group", "daemon", "log"):
            continue
        if section == "defaults" and (head == "log" or stripped == "option httplog"):
            continue
        if section == "global" and stripped.startswith("stats socket "):
            found["stats socket"] += 1
            out.append(f"{indent}stats socket {stats_socket} mode 600 level admin")
            continue
        if section == "frontend" and head == "bind":
            found["bind"] += 1
            out.append(f"{indent}bind 127.0.0.1:{front}")
            continue
        if section == "backend" and head == "server":
            found["server"] += 1
            if server_options is None:
                server_options = " ".join(words[3:])
                for i, port in enumerate(backends, 1):
                    out.append(f"{indent}server linli{i} 127.0.0.1:{port} {server_options}".rstrip())
            continue
        out.append(line)
    assert found["bind"] == 1 and found["server"] >= 1 and found["stats socket"] == 1, found
    assert server_options is not None and "check" in server_options.split(), "servers must be health-checked"
    return "\n".join(out) + "\n"


class HAProxy:
    def __init__(self, folder: Path, backends: Sequence[int]) -> None:
        assert HAPROXY is not None, "haproxy is not installed"
        self.folder = folder
        self.backends = list(backends)
        self.port = free_port()
        self.socket = folder / "haproxy.sock"
        self.config = folder / "haproxy.cfg"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        template = (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8")
        self.config.write_text(render_haproxy(template, front=self.port, backends=self.backends,
                                              stats_socket=self.socket), encoding="utf-8")
        assert HAPROXY is not None
        with open(self.folder / "haproxy.log", "ab") as log:  # noqa: ASYNC230 - the child's log, opened once
            self.proc = await asyncio.create_subprocess_exec(HAPROXY, "-db", "-f", str(self.config),
                                                             stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while not self.socket.exists():
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not start:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def log_tail(self, n: int = 3000) -> str:
        path = self.folder / "haproxy.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    async def command(self, cmd: str) -> str:
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        writer.write(cmd.encode() + b"\n")
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data.decode()

    async def servers(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers: status (UP, DOWN, ...), stot (requests sent),
        hrsp_2xx / hrsp_4xx / hrsp_5xx (their answers), chkdown (times marked down)."""
        text = (await self.command("show stat")).lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows if r["pxname"] == "linli" and r["svname"] not in ("BACKEND", "FRONTEND")}

    async def wait_status(self, server: str, status: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            got = (await self.servers())[server]["status"]
            if got.split()[0] == status:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"HAProxy shows {server} {got!r}, not {status} after {timeout}s")
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------- a database cable


class TcpGate:
    """A TCP relay from 127.0.0.1:<port> to the database. cut() refuses new connections and breaks
    the open ones, as a dead network or a stopped database would for that one instance."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target = host, port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._streams):
            w.transport.abort()
        self._streams.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target)
        except OSError:
            writer.transport.abort()
            return
        self._streams |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._streams -= {writer, up_writer}


# ---------------------------------------------------------------------------------------- the fleet


class Instance:
    def __init__(self, number: int, framework: str, folder: Path) -> None:
        self.number = number
        self.name = f"linli{number}"
        self.framework = framework
        self.port = free_port()
        self.log = folder / f"{self.name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.gate: TcpGate | None = None
        self.stopped = False  # killed or stopped on purpose

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


class Fleet:
    def __init__(
        self,
        tg: FakeTelegram,
        database_url: str,
        folder: Path,
        *,
        frameworks: Sequence[str] = ("aiogram", "ptb", "aiogram"),
        env: dict[str, str] | None = None,
        gated: Sequence[int] = (),
    ) -> None:
        self.tg = tg
        self.database_url = database_url
        self.folder = folder
        self.env = {**FAST_ENV, **(env or {})}
        self.instances = [Instance(i, fw, folder) for i, fw in enumerate(frameworks, 1)]
        self.gated = set(gated)  # instance numbers that reach the database through a TcpGate
        self.haproxy = HAProxy(folder, [i.port for i in self.instances])
        self.engine: AsyncEngine = make_engine(database_url)
        self.sessions = make_session_factory(self.engine)

    @property
    def webhook_url(self) -> str:
        return self.haproxy.url + WEBHOOK_PATH

    def instance(self, number: int) -> Instance:
        return self.instances[number - 1]

    def _env(self, inst: Instance) -> dict[str, str]:
        url = self.database_url
        if inst.gate is not None:
            url = make_url(url).set(host="127.0.0.1", port=inst.gate.port).render_as_string(hide_password=False)
        env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
        env.update(deploy_env(inst.number))
        env.update(self.env)
        env.update({
            "BOT_TOKEN": self.tg.token,
            "TELEGRAM_API_BASE": self.tg.base_url,
            "BOT_FRAMEWORK": inst.framework,
            "DATABASE_URL": url,
            "WEBHOOK_URL": self.webhook_url,
            "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_LISTEN": f"127.0.0.1:{inst.port}",
        })
        return env

    async def start(self) -> None:
        # The schema first, once: instances started together would otherwise race to create it.
        await migrate(self.engine)
        await self.haproxy.start()
        for inst in self.instances:
            if inst.number in self.gated:
                pg = make_url(self.database_url)
                inst.gate = TcpGate(pg.host or "127.0.0.1", pg.port or 5432)
                await inst.gate.open()
        await asyncio.gather(*(self.start_instance(i.number, wait=False) for i in self.instances))
        await self.wait_up()

    async def start_instance(self, number: int, *, wait: bool = True) -> None:
        inst = self.instance(number)
        inst.stopped = False
        with open(inst.log, "ab") as log:  # noqa: ASYNC230 - the child's log, opened once
            inst.proc = await asyncio.create_subprocess_exec(
                sys.executable, "main.py", cwd=ROOT, env=self._env(inst), stdout=log, stderr=log)
        if wait:
            await self.wait_up([number])

    async def healthz(self, number: int) -> tuple[int, dict[str, Any]]:
        inst = self.instance(number)
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{inst.port}/healthz",
                                                      timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status, await resp.json(content_type=None)

    async def wait_up(self, numbers: Sequence[int] | None = None, timeout: float = 90.0) -> None:  # noqa: ASYNC109
        """Each instance answers /healthz 200 and HAProxy counts it UP."""
        deadline = time.monotonic() + timeout
        for n in numbers or [i.number for i in self.instances]:
            inst = self.instance(n)
            while True:
                self.check_alive(n)
                try:
                    if (await self.healthz(n))[0] == 200:
                        break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{inst.name} not healthy after {timeout}s:\n{inst.log_tail()}")
                await asyncio.sleep(0.1)
            await self.haproxy.wait_status(inst.name, "UP", max(1.0, deadline - time.monotonic()))

    def check_alive(self, number: int) -> None:
        inst = self.instance(number)
        if not inst.stopped and inst.proc is not None and inst.proc.returncode is not None:
            raise AssertionError(f"{inst.name} exited with {inst.proc.returncode}:\n{inst.log_tail()}")

    async def kill9(self, number: int) -> None:
        inst = self.instance(number)
        inst.stopped = True
        if inst.alive:
            assert inst.proc is not None
            inst.proc.send_signal(signal.SIGKILL)
            await inst.proc.wait()

    async def stop(self) -> None:
        for inst in self.instances:
            inst.stopped = True
            if inst.alive:
                assert inst.proc is not None
                inst.proc.send_signal(signal.SIGTERM)
        for inst in self.instances:
            if inst.proc is not None and inst.proc.returncode is None:
                try:
                    await asyncio.wait_for(inst.proc.wait(), 30)
                except TimeoutError:
                    inst.proc.kill()
                    await inst.proc.wait()
        await self.haproxy.stop()
        for inst in self.instances:
            if inst.gate is not None:
                await inst.gate.cut()
        await self.engine.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {i.name} ({i.framework})\n{i.log_tail(1500)}" for i in self.instances)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as s:
            yield s

    async def backlog(self) -> tuple[int, int, int]:
        """Stored updates not yet handled, messages due but not yet sent, and posts (a task's
        roster, a wall) whose edit is still to come: a paced edit may wait seconds, the server quiet."""
        async with self.sessions() as s:
            inbox = await s.scalar(select(func.count()).select_from(InboxUpdate)
                                   .where(InboxUpdate.handled_at.is_(None)))
            outbox = await s.scalar(select(func.count()).select_from(Outbox).where(
                Outbox.status.in_(("pending", "sending")), Outbox.not_before <= datetime.now(UTC)))
            marks = await s.scalar(select(func.count()).select_from(RefreshMark))
        return int(inbox or 0), int(outbox or 0), int(marks or 0)

    async def settle(self, quiet: float = 0.4, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Every update pushed and handled, every due message sent, and the fake server quiet."""
        deadline = time.monotonic() + timeout
        while True:
            for inst in self.instances:
                self.check_alive(inst.number)
            left = max(0.5, deadline - time.monotonic())
            try:
                await self.tg.idle(quiet=quiet, timeout=left)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{self.logs()}") from None
            if await self.backlog() == (0, 0, 0):
                await self.tg.idle(quiet=quiet, timeout=max(0.5, deadline - time.monotonic()))
                if await self.backlog() == (0, 0, 0):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"backlog {await self.backlog()} after {timeout}s\n{self.logs()}")
            await asyncio.sleep(0.1)
