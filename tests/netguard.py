"""pytest plugin: no test may reach the network; loopback and unix sockets only.

Enable it from tests/conftest.py with `pytest_plugins = ["tests.netguard"]`. Extra hosts (say a
PostgreSQL container named "db") can be allowed with LINLI_NET_ALLOW="db,10.0.0.5".
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from typing import Any

_originals: dict[str, Any] = {}


class NetworkBlocked(RuntimeError):
    pass


def _extra_allowed() -> set[str]:
    return {h.strip().lower() for h in os.environ.get("LINLI_NET_ALLOW", "").split(",") if h.strip()}


def is_local(host: Any) -> bool:
    """True for loopback addresses, localhost names and anything that is not an IP host."""
    if host is None:
        return True  # asyncio passes None for sock= / unix paths
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True
    name = host.strip("[]").split("%", 1)[0].lower()
    if name in _extra_allowed():
        return True
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False  # a host name: resolving it would already query DNS
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _check(address: Any) -> None:
    # AF_UNIX addresses are str/bytes paths; inet ones are tuples (host, port, ...).
    if isinstance(address, tuple) and address:
        if not is_local(address[0]):
            raise NetworkBlocked(f"network access blocked in tests: {address[0]}:{address[1] if len(address) > 1 else ''}")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _originals["connect"](self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _originals["connect_ex"](self, address)


def _guarded_sendto(self: socket.socket, data: Any, *args: Any) -> Any:
    address = args[-1]
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _originals["sendto"](self, data, *args)


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
    _check(address)
    return _originals["create_connection"](address, *args, **kwargs)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not is_local(host):
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
        raise NetworkBlocked(f"network access blocked in tests: {name} (DNS lookup)")
    return _originals["getaddrinfo"](host, *args, **kwargs)


async def _guarded_loop_create_connection(self: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> Any:
    host = kwargs.get("host", args[1] if len(args) > 1 else None)
    if kwargs.get("sock") is None and not is_local(host):
        port = kwargs.get("port", args[2] if len(args) > 2 else "")
        raise NetworkBlocked(f"network access blocked in tests: {host}:{port}")
    return await _originals["loop_create_connection"](self, *args, **kwargs)


def install() -> None:
    """Patch the socket layer (idempotent)."""
    if _originals:
        return
    _originals.update(
        connect=socket.socket.connect,
        connect_ex=socket.socket.connect_ex,
        sendto=socket.socket.sendto,
        create_connection=socket.create_connection,
        getaddrinfo=socket.getaddrinfo,
        loop_create_connection=asyncio.base_events.BaseEventLoop.create_connection,
    )
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign,assignment]
    socket.create_connection = _guarded_create_connection  # type: ignore[assignment]
    socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]
    asyncio.base_events.BaseEventLoop.create_connection = _guarded_loop_create_connection  # type: ignore[method-assign]


def uninstall() -> None:
    if not _originals:
        return
    socket.socket.connect = _originals["connect"]  # type: ignore[method-assign]
    socket.socket.connect_ex = _originals["connect_ex"]  # type: ignore[method-assign]
    socket.socket.sendto = _originals["sendto"]  # type: ignore[method-assign]
    socket.create_connection = _originals["create_connection"]
    socket.getaddrinfo = _originals["getaddrinfo"]
    asyncio.base_events.BaseEventLoop.create_connection = _originals["loop_create_connection"]  # type: ignore[method-assign]
    _originals.clear()


def installed() -> bool:
    return bool(_originals)


def pytest_configure(config: Any) -> None:
    install()


def pytest_unconfigure(config: Any) -> None:
    uninstall()
