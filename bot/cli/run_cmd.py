"""``run`` (everything on one machine, supervised) and ``bot`` (the Telegram side alone)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import structlog

from bot.cli.database import database_url, prepare_database
from bot.errors import ConfigurationError
from bot.process.local_transcriber import transcriber_spec
from bot.process.local_worker import worker_spec
from bot.process.private_redis import PrivateRedis, private_redis_dir, shared_redis_url
from bot.process.runlock import RunLock
from bot.process.signals import stop_event
from bot.process.supervisor import Supervisor
from bot.process.telemetry.server import parse_listen
from bot.settings import BotSettings
from bot.telegram.alerts import alert
from bot.telegram.app import AppType, build_application, run_bot
from bot.telegram.webhook import WebhookConfig, load_secret
from inference.errors import ModelNotFoundError
from inference.modelfile import validate_gguf
from inference.settings import InferenceSettings
from inference.setup import ensure_model
from inference.whisper_model import resolve_whisper_model
from storage.settings import StorageSettings

log = structlog.get_logger("cli.run")


def bot(args: argparse.Namespace) -> int:
    """The bot alone (long polling, or a webhook listener with --webhook-url), until SIGINT/SIGTERM."""
    settings, storage = BotSettings(), StorageSettings()
    webhook = _webhook(args, settings)
    db_url = database_url(storage)
    prepare_database(db_url)
    app = build_application(
        settings, storage, redis_url=shared_redis_url(storage), database_url=db_url, webhook=webhook
    )

    async def main() -> None:
        await run_bot(app, stop_event())

    asyncio.run(main())
    return 0


def _webhook(args: argparse.Namespace, settings: BotSettings) -> WebhookConfig | None:
    """The webhook's configuration from --webhook-url, --listen and WEBHOOK_SECRET (None: polling)."""
    url = getattr(args, "webhook_url", None)
    if url is None:
        return None
    if not url.startswith(("https://", "http://")):  # also an empty one (WEBHOOK_URL unset in compose)
        raise ConfigurationError(
            "--webhook-url", "--webhook-url must be a URL (Telegram accepts https:// only)"
        )
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        raise ConfigurationError("--listen", f"--listen: {exc}") from None
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    return WebhookConfig(url, host, port, load_secret(secret, settings.webhook_secret_file))


def _whisper_model(inference: InferenceSettings, storage: StorageSettings) -> Path | None:
    """The Whisper model `run` starts a transcriber with: a directory, or a name already downloaded.

    None (voice notes then get a kind "please type" reply) when it is not here: `run` never waits
    for a download of it; `meditron-bot model pull-whisper` fetches it.
    """
    try:
        return resolve_whisper_model(inference.whisper_model, storage.data_dir, allow_download=False)
    except ModelNotFoundError as exc:
        log.warning("voice.off", reason=str(exc))
        return None


def run(_: argparse.Namespace) -> int:
    """Lock DATA_DIR, migrate, then the supervised private Redis and worker, and the bot in this process."""
    settings, storage, inference = BotSettings(), StorageSettings(), InferenceSettings()
    with RunLock(storage.ensure_data_dir()) as lock:
        model = ""  # a worker answering through INFERENCE_URL loads no model file
        if not inference.inference_url:
            path = ensure_model(inference, storage.data_dir)
            validate_gguf(path)
            model = str(path)
        whisper = _whisper_model(inference, storage)
        db_url = database_url(storage)
        prepare_database(db_url)
        return asyncio.run(_run(settings, storage, lock, (model, whisper), db_url))


class _Alerts:
    """Tells the admin chat that a child died (once the bot runs); pids and exit codes only."""

    def __init__(self, chat_id: int | None) -> None:
        self.chat_id = chat_id
        self.app: AppType | None = None

    async def child_exited(self, name: str, code: int, delay: float) -> None:
        """The supervisor's exit callback."""
        if self.app is None or not self.app.running:
            return
        text = f"meditron-bot: the {name} process exited (code {code}); restarting it in {delay:g} s."
        await alert(self.app.bot, self.chat_id, text)


async def _run(
    settings: BotSettings,
    storage: StorageSettings,
    lock: RunLock,
    models: tuple[str, Path | None],
    db_url: str,
) -> int:
    """One event loop: children, then the bot until a signal; stop the bot, transcriber, worker, Redis."""
    stop = stop_event()
    alerts = _Alerts(settings.admin_chat_id)
    supervisor = Supervisor(on_exit=alerts.child_exited, on_start=lock.record)
    try:
        redis_url = await _start_redis(supervisor, storage)
        model, whisper = models
        await supervisor.start(worker_spec(redis_url, model))
        if whisper is not None:
            await supervisor.start(transcriber_spec(redis_url, whisper))
        alerts.app = build_application(settings, storage, redis_url=redis_url, database_url=db_url)
        await run_bot(alerts.app, stop)
        log.info("bot.stopped")
    finally:
        await supervisor.stop_all()
    log.info("run.stopped")
    return 0


async def _start_redis(supervisor: Supervisor, storage: StorageSettings) -> str:
    """REDIS_URL, or the private server started as a supervised child; returns the URL."""
    if storage.redis_url is not None:
        return storage.redis_url.get_secret_value()
    private = PrivateRedis(private_redis_dir(storage))
    private.prepare()
    await supervisor.start(private.child_spec())
    return private.url
