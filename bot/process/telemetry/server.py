"""An ASGI app served by uvicorn in a thread and event loop of its own, on a socket bound at start."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable

import structlog
import uvicorn
from starlette.types import ASGIApp

log = structlog.get_logger("bot.process.telemetry.server")

Hook = Callable[[], Awaitable[None]]


class ListenError(Exception):
    """A server cannot listen where it was told to (the port is in use, or the address is not ours)."""


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8443`` for IPv6) as a pair; ValueError when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (no host: every interface)


class ThreadedServer:
    """Serve ``app`` on ``host:port`` (0: any free port) without touching the caller's event loop.

    The socket is bound in ``start`` (a port in use raises ListenError there; connections wait in its
    backlog until uvicorn serves), so ``port`` is known at once. ``on_start``/``on_stop`` run in the
    server's own loop (for clients bound to it, such as a Redis connection).
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        name: str,
        on_start: Hook | None = None,
        on_stop: Hook | None = None,
    ) -> None:
        self.app, self.host, self.name = app, host, name
        self._requested_port = port
        self._on_start, self._on_stop = on_start, on_stop
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port served (the one chosen when 0 was asked for)."""
        if self._socket is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._socket.getsockname()[1])

    def start(self) -> None:
        """Bind the socket and start serving in a daemon thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            raise ListenError(
                f"the {self.name} server cannot listen on {self.host}:{self._requested_port} ({exc.strerror})"
            ) from None
        self._socket = sock
        config = uvicorn.Config(
            self.app, lifespan="off", access_log=False, log_config=None, server_header=False,
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        log.info("server.listening", server=self.name, port=self.port)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        assert self._server is not None
        assert self._socket is not None
        if self._on_start is not None:
            await self._on_start()
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            if self._on_stop is not None:
                with contextlib.suppress(Exception):
                    await self._on_stop()

    def stop(self) -> None:
        """Stop serving (requests in progress finish) and wait for the thread; idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
