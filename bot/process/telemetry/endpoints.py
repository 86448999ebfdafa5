"""The observability endpoints: /metrics (Prometheus text), /healthz (alive) and /readyz (dependencies)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.process.telemetry.server import ThreadedServer
from bot.process.telemetry.settings import TelemetrySettings

Check = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT_S = 3.0


async def run_checks(checks: Mapping[str, Check]) -> dict[str, bool]:
    """Each check's outcome (a check that raises or takes longer than CHECK_TIMEOUT_S is not ready)."""

    async def one(check: Check) -> bool:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                return await check()
        except Exception:
            return False

    results = await asyncio.gather(*(one(check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))


def observability_app(checks: Mapping[str, Check], registry: CollectorRegistry = REGISTRY) -> Starlette:
    """The three endpoints; /readyz answers 503 unless every check in ``checks`` passes."""

    async def metrics(_: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"alive": True})

    async def readyz(_: Request) -> Response:
        results = await run_checks(checks)
        ready = all(results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


def start_endpoints(checks: Mapping[str, Check], name: str) -> ThreadedServer | None:
    """Serve the endpoints on METRICS_HOST:METRICS_PORT in a thread of their own (None: unset)."""
    settings = TelemetrySettings()
    if settings.metrics_port is None:
        return None
    server = ThreadedServer(
        observability_app(checks), settings.metrics_host, settings.metrics_port, name=f"{name}-metrics"
    )
    server.start()
    return server
