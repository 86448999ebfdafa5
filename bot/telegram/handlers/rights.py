"""/consent, /withdraw and /forget: see and change consent, withdraw from research, be forgotten."""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.consent_texts import available, consent_for, is_current
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.handlers.consent import shown_text
from bot.telegram.i18n import t
from bot.telegram.identity import (
    current_user,
    forget_recalled_language,
    language_of,
    pseudonym_of,
    user_language,
)
from bot.telegram.keyboards import consent_keyboard
from storage.models import ConsentEvent, User
from storage.repositories.consent import latest_consents, record_consent
from storage.repositories.erasure import erase_research_text, forget_user
from storage.repositories.users import get_user

log = structlog.get_logger("bot.rights")

_SHOWN = {"granted": texts.RIGHTS_YES, "declined": texts.RIGHTS_NO, "withdrawn": texts.RIGHTS_WITHDRAWN}


def _value(event: ConsentEvent | None, language: str) -> str:
    """A consent value in words."""
    return t(_SHOWN.get(event.new_value if event else "", texts.RIGHTS_NOT_CHOSEN), language)


def _status(version: str | None, latest: dict[str, ConsentEvent], language: str) -> str:
    """What the user agreed to (under text ``version``), in the user's language."""
    newest = max(latest.values(), key=lambda e: e.id, default=None)
    date = t(texts.RIGHTS_SINCE, language).format(date=f"{newest.created_at:%Y-%m-%d}") if newest else ""
    status = t(texts.RIGHTS_STATUS, language).format(
        service=_value(latest.get("service"), language), research=_value(latest.get("research"), language),
        version=version or "-", date=date,
    )  # fmt: skip
    if version and not is_current(version):
        status += "\n\n" + t(texts.RIGHTS_OUTDATED, language)
    return status


async def consent_command(update: Update, context: BotContext) -> None:
    """Show what the user agreed to, the current text and the buttons to change it."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    language = user_language(update, res)
    async with res.sessionmaker.begin() as session:
        user = await current_user(session, res, update)
        latest = await latest_consents(session, user.id) if user is not None else {}
        status = _status(user.consent_text_version if user else None, latest, language)
    current = consent_for(language, res.settings.retention_days, res.settings.reviewers)
    await message.reply_text(
        f"{status}\n\n{current.text}", reply_markup=consent_keyboard(current.version, language)
    )


async def _withdraw_consent(
    session: AsyncSession, user: User, scope: str, res: Resources, update: Update
) -> None:
    """Record ``scope`` as withdrawn by command, under the text the user had agreed to."""
    version = user.consent_text_version
    text = (
        shown_text(res, version)
        if version in available()
        else consent_for(language_of(update), res.settings.retention_days, res.settings.reviewers)
    )
    await record_consent(
        session, user, scope=scope, new_value="withdrawn", text_version=text.version,
        text_sha256=text.sha256, language=language_of(update), source="command",
    )  # fmt: skip


async def withdraw(update: Update, context: BotContext) -> None:
    """Withdraw research consent, erase the user's kept texts and held question; confirm in one message."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    held = await res.state.drop_held(pseudonym_of(update, res))
    count = 0
    async with res.sessionmaker.begin() as session:
        user = await current_user(session, res, update)
        if user is not None and user.research_consent:
            await _withdraw_consent(session, user, "research", res, update)
        if user is not None:
            count = (await erase_research_text(session, user)).questions
    log.info("research.withdrawn", questions=count, held=held)
    language = user_language(update, res)
    reply = t(texts.WITHDRAW_DONE if count else texts.WITHDRAW_NOTHING, language).format(count=count)
    await message.reply_text(reply + _held_note(held, language))


def _held_note(held: bool, language: str) -> str:
    """A line saying that the question waiting in a group was deleted too (when there was one)."""
    return "\n\n" + t(texts.HELD_QUESTION_ERASED, language) if held else ""


async def forget(update: Update, context: BotContext) -> None:
    """Erase everything about the user and end their service consent; confirm in one message."""
    message, res = update.effective_message, context.resources
    if message is None or update.effective_user is None:
        return
    language = user_language(update, res)
    pseudonym = pseudonym_of(update, res)
    await res.queue.cancel(pseudonym)  # a waiting question leaves Redis now
    held = await res.state.drop_held(pseudonym)  # and so does one held for consent in a group
    await res.state.forget_language(pseudonym)
    count = 0
    async with res.sessionmaker.begin() as session:
        user = await get_user(session, pseudonym)
        if user is not None:
            for scope in [
                s for s, on in (("service", user.service_consent), ("research", user.research_consent)) if on
            ]:
                await _withdraw_consent(session, user, scope, res, update)
            count = (await forget_user(session, user)).questions
    await res.progress.stop_typing(message.chat.id)
    forget_recalled_language()
    log.info("user.forgotten", questions=count, held=held)
    await message.reply_text(t(texts.FORGET_DONE, language).format(count=count) + _held_note(held, language))
