"""An HTTP relay on 127.0.0.1 in front of a real server that answers the first requests to one path
with an error of its own (429 with Retry-After, 503), then relays everything (streamed) to the server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te", "trailer"}
)


@dataclass(frozen=True)
class Fault:
    """What the relay answers instead of the server: a status, and a Retry-After header when set."""

    status: int
    retry_after: str | None = None


class FaultyRelay:
    """Relays to ``target`` (``http://host:port``); the first requests to ``path`` get ``faults``, in order.

    ``faulted`` counts the faults given, ``relayed`` the requests relayed, by path.
    """

    def __init__(self, target: str, faults: Iterable[Fault], path: str = "/v1/completions") -> None:
        self.target = target.rstrip("/")
        self.path = path
        self.faults = list(faults)
        self.faulted = 0
        self.relayed: Counter[str] = Counter()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Listen on an ephemeral port (``url`` is set then)."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that hangs up mid-stream closes the server's stream too.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{int(self._runner.addresses[0][1])}"

    async def stop(self) -> None:
        """Stop listening and close the connections to the server."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == self.path and self.faulted < len(self.faults):
            fault = self.faults[self.faulted]
            self.faulted += 1
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            body = {"error": {"code": fault.status, "message": "injected", "type": "injected_error"}}
            return web.json_response(body, status=fault.status, headers=headers)
        self.relayed[request.path] += 1
        return await self._relay(request)

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        """Send the request on to the server and stream its answer back as it comes."""
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method, f"{self.target}{request.rel_url}", headers=headers, data=body or None
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-encoding":
                    response.headers[key] = value
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
