"""The consent buttons: record the choice as immutable consent events and confirm it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.ext import ContextTypes

from bot import resources, texts
from bot.identity import current_user, language_of
from bot.keyboards import ConsentChoice, consent_keyboard, parse_consent
from bot.resources import Resources
from storage.models import User
from storage.repository.consent import record_consent

_VALUES = {
    "both": ("granted", "granted", texts.CONSENT_BOTH_DONE),
    "service": ("granted", "declined", texts.CONSENT_SERVICE_DONE),
    "decline": ("declined", "declined", texts.CONSENT_DECLINED),
}


def has_consent(user: User, res: Resources) -> bool:
    """Whether the user agreed to the service under the current consent text."""
    return user.service_consent and user.consent_text_version == res.consent.version


async def on_consent_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Store a consent choice; forged or stale buttons get the current prompt instead."""
    query = update.callback_query
    if query is None or update.effective_user is None:
        return
    res = resources.get(context.bot_data)
    choice = parse_consent(query.data)
    if choice is None or choice.version != res.consent.version:
        await query.answer(texts.CONSENT_STALE)
        await query.edit_message_text(
            f"{texts.CONSENT_STALE}\n\n{res.consent.text}", reply_markup=consent_keyboard(res.consent.version)
        )
        return
    async with res.sessionmaker.begin() as session:
        user = await current_user(session, res, update)
        await _record(session, user, res, choice, language_of(update))
    await query.answer()
    await query.edit_message_text(_VALUES[choice.choice][2])


async def _record(
    session: AsyncSession, user: User, res: Resources, choice: ConsentChoice, language: str
) -> None:
    """One consent event per scope whose value changes."""
    service, research, _ = _VALUES[choice.choice]
    current = {"service": user.service_consent, "research": user.research_consent}
    for scope, value in (("service", service), ("research", research)):
        if current[scope] == (value == "granted") and user.consent_text_version == res.consent.version:
            continue
        await record_consent(
            session,
            user,
            scope=scope,
            new_value=value,
            text_version=res.consent.version,
            text_sha256=res.consent.sha256,
            language=language,
            source="button",
        )
    user.consent_text_version = res.consent.version
