"""The observability endpoints, served in a thread of their own: /healthz, /readyz (real checks), /metrics."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from bot.errors import ConfigurationError
from bot.process.telemetry.checks import database_check, flag_check, redis_check
from bot.process.telemetry.endpoints import Check, observability_app
from bot.process.telemetry.server import ListenError, ThreadedServer, parse_listen
from bot.telegram.webhook import load_secret


async def _failing() -> bool:
    raise OSError("unreachable")


@pytest.fixture
def served() -> Iterator[Callable[..., str]]:
    """A factory: serve the endpoints with ``checks`` on a free port; stopped after the test."""
    servers: list[ThreadedServer] = []

    def serve(checks: dict[str, Check], registry: CollectorRegistry | None = None) -> str:
        app = observability_app(checks, registry) if registry else observability_app(checks)
        server = ThreadedServer(app, "127.0.0.1", 0, name="test-metrics")
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield serve
    for server in servers:
        server.stop()


async def test_readyz_follows_its_checks_and_healthz_is_alive_regardless(
    served: Callable[..., str], redis_url: str, migrated_db_url: str
) -> None:
    loaded = {"model": False}
    checks = {
        "redis": redis_check(redis_url),
        "database": database_check(migrated_db_url),
        "model": flag_check(lambda: loaded["model"]),
    }
    base = served(checks)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "ready": False,
            "checks": {"redis": True, "database": True, "model": False},
        }
        loaded["model"] = True
        response = await client.get(f"{base}/readyz")
        assert response.status_code == 200 and response.json()["ready"] is True
        assert (await client.get(f"{base}/healthz")).json() == {"alive": True}
        assert (await client.post(f"{base}/readyz")).status_code == 405


async def test_a_check_that_raises_or_cannot_connect_is_not_ready(
    served: Callable[..., str], tmp_path: Path
) -> None:
    checks = {"broken": _failing, "redis": redis_check(f"unix://{tmp_path}/no.sock")}
    base = served(checks)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"broken": False, "redis": False}


async def test_metrics_are_prometheus_text(served: Callable[..., str]) -> None:
    registry = CollectorRegistry()
    counter = Counter("meditron_test_things", "Things", ["kind"], registry=registry)
    counter.labels("a").inc(3)
    base = served({}, registry)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert 'meditron_test_things_total{kind="a"} 3.0' in response.text


def test_a_port_in_use_fails_at_start() -> None:
    first = ThreadedServer(observability_app({}), "127.0.0.1", 0, name="first")
    first.start()
    try:
        second = ThreadedServer(observability_app({}), "127.0.0.1", first.port, name="second")
        with pytest.raises(ListenError, match="in use"):
            second.start()
    finally:
        first.stop()


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8443") == ("127.0.0.1", 8443)
    assert parse_listen(":80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("8443", "host:", "host:port", "h:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


def test_webhook_secret_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert load_secret("abc_DEF-123", None) == "abc_DEF-123"
    file = tmp_path / "secret"
    file.write_text("from-a-file\n")
    assert load_secret(None, file) == "from-a-file"
    for value, path in ((None, None), ("", None), ("has space", None), ("x" * 257, None)):
        with pytest.raises(ConfigurationError) as caught:
            load_secret(value, path)
        assert caught.value.setting == "WEBHOOK_SECRET"
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_secret(None, tmp_path / "missing")


def test_the_local_worker_of_run_serves_its_metrics_on_the_next_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.process.local_worker import worker_env

    monkeypatch.setenv("METRICS_PORT", "9100")
    assert worker_env("redis://r", "m.gguf")["METRICS_PORT"] == "9101"
    monkeypatch.setenv("METRICS_PORT", "0")  # any free port: both may ask for one
    assert worker_env("redis://r", "m.gguf")["METRICS_PORT"] == "0"
    monkeypatch.delenv("METRICS_PORT")
    assert "METRICS_PORT" not in worker_env("redis://r", "m.gguf")


async def test_a_worker_process_is_ready_once_its_model_is_loaded_and_stops_on_sigterm(
    worker_process: Callable[..., Any],
) -> None:
    """`meditron-bot worker` wires its stop event and loaded flag to the endpoints (bot/process/lifecycle)."""
    worker = await worker_process(METRICS_PORT="0")  # returns once the worker logged worker.ready
    line = await worker.wait_for_line("server.listening")
    match = re.search(r'"port": (\d+)', line)
    assert match is not None, line
    base = f"http://127.0.0.1:{match[1]}"
    async with httpx.AsyncClient(timeout=10) as client:
        ready = await client.get(f"{base}/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"redis": True, "model": True}
        assert await worker.stop(signal.SIGTERM) == 0
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{base}/healthz")
    assert "worker.stopped" in worker.output
