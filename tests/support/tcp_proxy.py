"""A TCP relay on 127.0.0.1 in front of a real server, which a test can cut and restore (an outage), or
make lose the server's replies (the server did the work; the client never hears of it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class TcpProxy:
    """Relays connections to ``target``; ``cut()`` drops every connection and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.connections = 0
        self.upstream_ports: set[int] = set()
        """Local ports of the open connections to the server (as the server lists its clients)."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._up = True
        self._dropping = False

    async def start(self) -> None:
        """Listen on an ephemeral port."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        self._drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """The server is gone: open connections are reset and new ones closed at once."""
        self._up = False
        self._drop_all()

    def restore(self) -> None:
        """The server is back."""
        self._up = True

    def drop_replies(self) -> None:
        """From now on what the server sends is thrown away: requests reach it, no reply comes back
        (until the server hangs up, which the client then sees as a connection closed unanswered)."""
        self._dropping = True

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        upstream_port = int(up_writer.get_extra_info("sockname")[1])
        self.upstream_ports.add(upstream_port)
        self._writers |= {writer, up_writer}
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer, lambda: self._dropping)),
        ]
        # Either side closing closes both (the client waits for the server to hang up, and back).
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        self._writers -= {writer, up_writer}
        self.upstream_ports.discard(upstream_port)
        for w in (writer, up_writer):
            w.transport.abort()
        await asyncio.gather(*pipes, return_exceptions=True)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dropping: Callable[[], bool] = lambda: False
) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            if dropping():
                continue
            writer.write(data)
            await writer.drain()
