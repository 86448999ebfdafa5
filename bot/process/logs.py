"""Logging for every process: structlog, JSON lines off a terminal, never message text or ids."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_FORBIDDEN_KEYS = frozenset({"text", "question", "answer", "token", "chat_id", "user_id", "telegram_id"})


def _drop_forbidden(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Remove keys that could carry message text, secrets or raw Telegram ids."""
    for key in _FORBIDDEN_KEYS & event_dict.keys():
        event_dict[key] = "[removed]"
    return event_dict


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is at that moment (it may be replaced later)."""

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    """structlog logger factory for :class:`_StderrLogger`."""
    return _StderrLogger()


# Libraries whose log arguments can carry updates, requests or responses (message text, chat ids).
_CONTENT_LOGGERS = ("telegram", "apscheduler", "httpx", "httpcore")


def _without_traceback(record: logging.LogRecord) -> bool:
    """Keep the record, drop its traceback (the exception's type and message stay in the line).

    For libraries that log what they send and receive, only the message template and the exception's
    type are kept: their arguments and exception messages may hold message text or Telegram ids.
    """
    if record.name.startswith(_CONTENT_LOGGERS):
        error = record.exc_info[1] if record.exc_info else None
        record.msg = str(record.msg) + (f" ({type(error).__name__})" if error is not None else "")
        record.args = None
    elif record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
        record.args = None
    record.exc_info = None
    record.exc_text = None
    return True


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and the standard library once per process."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_forbidden,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    # One line per library error: tracebacks could carry request data (message text) and bury the message.
    for handler in logging.getLogger().handlers:
        handler.addFilter(_without_traceback)
    # httpx logs full request URLs, which contain the bot token: keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
