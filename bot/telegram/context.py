"""The typed callback context of every handler and job: ``context.resources`` for what they need."""

from __future__ import annotations

from typing import Any, cast

from telegram.ext import CallbackContext, ContextTypes, ExtBot, JobQueue

from bot import resources
from bot.resources import Resources


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """PTB's context with the bot's resources (built in ``post_init``) as an attribute."""

    @property
    def resources(self) -> Resources:
        """The resources of this running bot."""
        return resources.get(self.bot_data)

    @property
    def job_queue(self) -> JobQueue[BotContext] | None:  # type: ignore[override]  # PTB: unsolved TypeVar
        """The application's job queue, typed with this context."""
        return cast("JobQueue[BotContext] | None", super().job_queue)


CONTEXT_TYPES = ContextTypes(context=BotContext)
