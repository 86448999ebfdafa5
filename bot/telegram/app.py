"""Build the python-telegram-bot Application and wire its resources in post_init/post_shutdown."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from telegram.constants import ChatAction
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder, ExtBot

from bot import resources
from bot.audit_start import audit_bot_start
from bot.consent_texts import load_consent_text
from bot.errors import ConfigurationError
from bot.jobs.handover import schedule_handover_check
from bot.jobs.held import schedule_held_expiry
from bot.jobs.hygiene import start_hygiene
from bot.jobs.retention import schedule_retention
from bot.liveness import start_liveness, stop_liveness
from bot.process.telemetry.checks import database_check, redis_check
from bot.process.telemetry.endpoints import start_endpoints
from bot.settings import BotSettings
from bot.telegram import handlers
from bot.telegram.alerts import monitor
from bot.telegram.case_delivery import CaseDelivery
from bot.telegram.commands import publish_menu
from bot.telegram.context import CONTEXT_TYPES, BotContext
from bot.telegram.delivery import AnswerDelivery
from bot.telegram.ingest import IngestConfig, UpdateIngest
from bot.telegram.outgoing import CHAT_ACTION, OutgoingLimiter
from bot.telegram.transcripts import TranscriptDelivery
from bot.telegram.webhook import WebhookConfig, WebhookListener, delete_webhook, set_webhook
from storage.audit_anchor import AuditAnchor
from storage.db import check_connection, make_engine, make_sessionmaker
from storage.pseudonym import Pseudonymizer
from storage.queue import queue_from_settings
from storage.queue.connection import connect
from storage.queue.updates import UpdateLog
from storage.settings import StorageSettings

log = structlog.get_logger("bot.app")

AppType = Application[Any, Any, Any, Any, Any, Any]
INGEST = "ingest"
TYPING_JOB = "typing"
LIVENESS = "liveness"
DELIVERIES = "deliveries"
WEBHOOK = "webhook"
ENDPOINTS = "endpoints"
START_ATTEMPTS = 3


def build_application(
    settings: BotSettings,
    storage: StorageSettings,
    *,
    redis_url: str,
    database_url: str,
    webhook: WebhookConfig | None = None,
) -> AppType:
    """An Application talking to ``settings.telegram_api_url``, resources built at start-up.

    Updates come by long polling, or with ``webhook`` from Telegram's POSTs to this process's listener.
    """
    # Durations as timedelta (RetryAfter.retry_after): PTB 22's announced default, without its warning.
    os.environ.setdefault("PTB_TIMEDELTA", "1")

    def make_log() -> UpdateLog:
        """An update log on a Redis client of its own (for a thread with its own event loop)."""
        return UpdateLog(Redis.from_url(redis_url), storage.queue_namespace)

    async def post_init(app: AppType) -> None:
        engine = make_engine(database_url)
        await check_connection(engine, database_url)
        redis = await connect(redis_url, attempts=5)
        key = storage.pseudonym_key.get_secret_value() if storage.pseudonym_key else None
        pseudonyms = Pseudonymizer.load_or_create(storage.ensure_data_dir(), key)
        anchor = AuditAnchor.from_pseudonyms(storage.ensure_data_dir(), pseudonyms)
        res = resources.Resources(
            settings=settings,
            sessionmaker=anchor.attach(make_sessionmaker(engine)),
            queue=queue_from_settings(redis, storage),
            pseudonyms=pseudonyms,
            consent=load_consent_text(
                settings.retention_days,
                settings.reviewers,
                conversation_minutes=settings.conversation_idle_min,
            ),
            updates=UpdateLog(redis, storage.queue_namespace),
        )
        app.bot_data[resources.KEY] = res
        _share_limits(app, redis, storage.queue_namespace, pseudonyms)
        app.bot_data["engine"] = engine
        delivery = AnswerDelivery(app.bot, res)
        transcripts = TranscriptDelivery(app.bot, res)  # voice notes heard by a transcriber
        cases = CaseDelivery(app.bot, res)  # clinicians' replies from the console
        app.bot_data[DELIVERIES] = [delivery, transcripts, cases]
        ingest = UpdateIngest(
            app.bot,
            app.bot.base_url,
            res.updates,
            app.process_update,
            IngestConfig(consumer=res.consumer, poll_timeout_s=settings.poll_timeout_s),
            poll_log=make_log,
        )
        app.bot_data[INGEST] = ingest
        assert app.job_queue is not None
        app.bot_data[LIVENESS] = await start_liveness(
            app.job_queue,
            res,
            [
                ingest.recheck_pending,
                delivery.recheck_pending,
                transcripts.recheck_pending,
                cases.recheck_pending,
            ],
        )
        delivery.start()
        transcripts.start()
        cases.start()
        await publish_menu(app.bot)  # the private chats' command menu, as /help lists it
        await _start_intake(app, ingest, webhook, make_log)
        checks = {"redis": redis_check(redis_url), "database": database_check(database_url)}
        app.bot_data[ENDPOINTS] = start_endpoints(checks, "bot")
        app.job_queue.run_repeating(
            _typing_tick, interval=settings.typing_interval_s, first=settings.typing_interval_s
        )
        if settings.admin_chat_id is not None:
            interval = settings.monitor_interval_s
            app.job_queue.run_repeating(monitor, interval=interval, first=interval)
        schedule_held_expiry(app.job_queue, settings.consent_hold_s)
        schedule_retention(app.job_queue, res.sessionmaker, settings.retention_days, leases=res.leases)
        app.bot_data["hygiene"] = await start_hygiene(
            app.job_queue, redis, engine, settings, storage, leases=res.leases
        )
        transcripts.after_handled = app.bot_data["hygiene"].rewrite_now  # audio off the disk at once
        schedule_handover_check(app.job_queue, settings.handover_check_s)
        await audit_bot_start(res.sessionmaker, settings, storage)
        log.info("bot.ready", consumer=res.consumer)

    async def post_shutdown(app: AppType) -> None:
        await stop_intake(app)
        await _stop_endpoints(app)
        if resources.KEY in app.bot_data:  # acknowledgements still waiting: their questions are queued
            acks = list(resources.get(app.bot_data).acknowledgements.values())
            for task in acks:
                task.cancel()
            await asyncio.gather(*acks, return_exceptions=True)
        for loop in app.bot_data.pop(DELIVERIES, []):
            await loop.stop()
        await stop_liveness(app.bot_data.pop(LIVENESS, None))  # what is left unacked is others' now
        if resources.KEY in app.bot_data:
            await resources.get(app.bot_data).queue.redis.aclose()
        if "engine" in app.bot_data:
            await app.bot_data.pop("engine").dispose()

    application = (
        ApplicationBuilder()
        .context_types(CONTEXT_TYPES)
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_url)
        .base_file_url(settings.telegram_file_url)
        .rate_limiter(OutgoingLimiter(max_retries=3))
        .updater(None)  # bot.telegram.ingest polls Telegram and stores every update before confirming it
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    handlers.register(application)
    return application


def _share_limits(app: AppType, redis: Redis, namespace: str, pseudonyms: Pseudonymizer) -> None:
    """Telegram's outgoing limits through Redis, shared with the other bot processes."""
    limiter = app.bot.rate_limiter
    if isinstance(limiter, OutgoingLimiter):
        limiter.attach(redis, namespace, pseudonyms.chat)


async def run_bot(app: AppType, stop: asyncio.Event) -> None:
    """Initialize and start ``app``, serve until ``stop`` is set, then stop and shut it down completely.

    A refused token, or a Bot API that stays unreachable over three attempts, is a ConfigurationError.
    """
    await _initialize(app)
    try:
        if app.post_init:
            await app.post_init(app)
        await app.start()
        await stop.wait()
    finally:
        await stop_intake(app)  # finish the updates being handled while the bot can still reply
        if app.running:
            await app.stop()
        if app.post_stop:
            await app.post_stop(app)
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)


async def _start_intake(
    app: AppType, ingest: UpdateIngest, webhook: WebhookConfig | None, make_log: Callable[[], UpdateLog]
) -> None:
    """Start the ingest's consumer, and long polling or (with ``webhook``) the listener and setWebhook."""
    if webhook is None:
        await delete_webhook(app.bot.base_url)  # getUpdates is refused while a webhook is set
        ingest.start()
        return
    listener = WebhookListener(webhook, make_log)
    listener.start()  # before setWebhook: Telegram's first POST finds it
    app.bot_data[WEBHOOK] = listener
    ingest.start(poll=False)
    await set_webhook(app.bot.base_url, webhook, ingest.config.allowed_updates)


async def stop_intake(app: AppType) -> None:
    """Stop the webhook listener (if any), then the ingest: no update is taken in that is not handled."""
    if (listener := app.bot_data.pop(WEBHOOK, None)) is not None:
        await asyncio.to_thread(listener.stop)
    if INGEST in app.bot_data:
        await app.bot_data.pop(INGEST).stop()


async def _stop_endpoints(app: AppType) -> None:
    """Stop serving /metrics, /healthz and /readyz."""
    if (endpoints := app.bot_data.pop(ENDPOINTS, None)) is not None:
        await asyncio.to_thread(endpoints.stop)


async def _initialize(app: AppType) -> None:
    """``app.initialize()`` (which asks Telegram who the bot is), retried on network errors."""
    for attempt in range(START_ATTEMPTS):
        try:
            await app.initialize()
            return
        except InvalidToken:
            raise ConfigurationError(
                "TELEGRAM_BOT_TOKEN",
                "Telegram refused TELEGRAM_BOT_TOKEN: check the token @BotFather gave you",
            ) from None
        except NetworkError as exc:
            if attempt == START_ATTEMPTS - 1:
                url = app.bot.base_url.removesuffix(app.bot.token)
                raise ConfigurationError(
                    "TELEGRAM_API_URL",
                    f"cannot reach the Telegram Bot API at {url} ({type(exc).__name__}); "
                    "check the network or TELEGRAM_API_URL",
                ) from None
            await asyncio.sleep(1.0 + attempt)


async def _typing_tick(context: BotContext) -> None:
    """Show "typing…" in the chats whose question is being answered now (for a bounded time).

    Only the oldest waiting questions, as many as the workers answer at once, get it: a chat action
    counts against Telegram's outgoing limit like a message, and would otherwise delay answers.
    One bot process per tick sends them (a lease, taken only while some chat waits).
    """
    res = context.resources
    try:
        slots = max(1, await res.queue.capacity())
        chats = await res.progress.typing_chats(slots)
        if not chats or not await res.leases.take(TYPING_JOB, res.settings.typing_interval_s):
            return
    except (RedisError, OSError):
        return
    bot: ExtBot[Any] = context.bot  # the limiter's priorities are ints
    for chat_id in chats:
        try:
            await bot.send_chat_action(chat_id, ChatAction.TYPING, rate_limit_args=CHAT_ACTION)
        except TelegramError as exc:
            log.debug("typing.failed", error=type(exc).__name__)
