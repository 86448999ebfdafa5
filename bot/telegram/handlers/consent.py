"""The consent buttons: record the choice as immutable consent events and confirm it.

A button carries the version of the text it was shown under; only a text of the current revision
is accepted, and its exact sha256 is stored. Turning research review off erases what was kept.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import CallbackQuery, Update

from bot.consent_texts import ConsentText, consent_for, is_current, load_consent_text
from bot.resources import Resources
from bot.telegram import texts
from bot.telegram.context import BotContext
from bot.telegram.i18n import t
from bot.telegram.identity import consenting_user, language_of, pseudonym_of, user_language
from bot.telegram.keyboards import ConsentChoice, consent_keyboard, parse_consent
from storage.models import User
from storage.repositories.consent import record_consent
from storage.repositories.erasure import erase_research_text

_VALUES = {
    "both": ("granted", "granted", texts.CONSENT_BOTH_DONE),
    "service": ("granted", "declined", texts.CONSENT_SERVICE_DONE),
    "decline": ("declined", "declined", texts.CONSENT_DECLINED),
}


def has_consent(user: User | None, res: Resources) -> bool:
    """Whether the user (None: no consent choice ever made) agreed to the service under a current text."""
    return user is not None and user.service_consent and is_current(user.consent_text_version)


def shown_text(res: Resources, version: str) -> ConsentText:
    """The consent text of ``version`` rendered as users see it."""
    return load_consent_text(res.settings.retention_days, res.settings.reviewers, version)


async def on_consent_button(update: Update, context: BotContext) -> None:
    """Store a consent choice (the first one creates the user row); forged or stale buttons get the
    current prompt instead."""
    query = update.callback_query
    if query is None or update.effective_user is None:
        return
    res = context.resources
    language = user_language(update, res)
    choice = parse_consent(query.data)
    if choice is None or not is_current(choice.version):
        await _stale(query, res, language)
        return
    async with res.sessionmaker.begin() as session:
        user = await consenting_user(session, res, update)
        erased = await _record(session, user, shown_text(res, choice.version), choice, language_of(update))
    await res.state.forget_language(pseudonym_of(update, res))  # now on the user row
    reply = t(_VALUES[choice.choice][2], language)
    if erased:
        reply += "\n\n" + t(texts.RESEARCH_ERASED, language).format(count=erased)
    await query.answer()
    await query.edit_message_text(reply)


async def _stale(query: CallbackQuery, res: Resources, language: str) -> None:
    """Answer a forged or outdated button with the current text and fresh buttons."""
    current = consent_for(language, res.settings.retention_days, res.settings.reviewers)
    stale = t(texts.CONSENT_STALE, language)
    await query.answer(stale)
    await query.edit_message_text(
        f"{stale}\n\n{current.text}", reply_markup=consent_keyboard(current.version, language)
    )


def _new_value(was_granted: bool, wanted: str) -> str:
    """``withdrawn`` when a granted consent is taken back, else the value chosen."""
    return "withdrawn" if was_granted and wanted != "granted" else wanted


async def _record(
    session: AsyncSession, user: User, text: ConsentText, choice: ConsentChoice, language: str
) -> int:
    """One consent event per scope whose value or text changes; return how many questions were erased."""
    service, research, _ = _VALUES[choice.choice]
    current = {"service": user.service_consent, "research": user.research_consent}
    had_research, same_text = user.research_consent, user.consent_text_version == text.version
    for scope, value in (("service", service), ("research", research)):
        if current[scope] == (value == "granted") and same_text:
            continue
        await record_consent(
            session, user, scope=scope, new_value=_new_value(current[scope], value),
            text_version=text.version, text_sha256=text.sha256, language=language, source="button",
        )  # fmt: skip
    user.consent_text_version = text.version
    if had_research and research != "granted":
        return (await erase_research_text(session, user)).questions
    return 0
