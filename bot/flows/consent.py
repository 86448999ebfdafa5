"""Consent decisions: who has agreed, recording a choice as immutable events, withdrawing a scope.

A choice is recorded under the exact text it was shown with (version and sha256); only a text of the
current revision is accepted. Turning research review off erases what was kept.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.consent_texts import ConsentText, available, consent_for, is_current, load_consent_text
from bot.resources import Resources
from storage.models import User
from storage.repositories.consent import record_consent
from storage.repositories.erasure import erase_research_text
from storage.repositories.users import get_or_create_user, get_user

# A button's choice -> (service value, research value).
VALUES = {
    "both": ("granted", "granted"),
    "service": ("granted", "declined"),
    "decline": ("declined", "declined"),
}
CHOICES = tuple(VALUES)


def has_consent(user: User | None) -> bool:
    """Whether the user (None: no consent choice ever made) agreed to the service under a current text."""
    return user is not None and user.service_consent and is_current(user.consent_text_version)


async def consented(res: Resources, pseudonym: str) -> bool:
    """Whether the person agreed to the service under a current text."""
    return await consented_user(res, pseudonym) is not None


async def consented_user(res: Resources, pseudonym: str) -> User | None:
    """The user row of someone who agreed to the service under a current text, else None."""
    async with res.sessionmaker.begin() as session:
        user = await get_user(session, pseudonym)
    return user if has_consent(user) else None


def shown_text(res: Resources, version: str) -> ConsentText:
    """The consent text of ``version`` rendered as users see it."""
    return load_consent_text(
        res.settings.retention_days, res.settings.reviewers, version,
        conversation_minutes=res.settings.conversation_idle_min,
    )  # fmt: skip


def current_text(res: Resources, language: str | None) -> ConsentText:
    """The current consent text in ``language`` (English when there is no translation)."""
    return consent_for(
        language, res.settings.retention_days, res.settings.reviewers,
        conversation_minutes=res.settings.conversation_idle_min,
    )  # fmt: skip


async def choose(res: Resources, pseudonym: str, choice: str, version: str, language_code: str) -> int | None:
    """Store a consent choice (the first one creates the user row); returns how many questions were erased.

    None: the button's text ``version`` is not of the current revision (nothing stored).
    ``language_code`` is the person's Telegram language (stored on the events).
    """
    if not is_current(version):
        return None
    async with res.sessionmaker.begin() as session:
        user = await get_or_create_user(
            session, pseudonym, await res.pending_languages.chosen_language(pseudonym)
        )
        erased = await _record(session, user, shown_text(res, version), choice, language_code)
    await res.pending_languages.forget_language(pseudonym)  # now on the user row
    return erased


def _new_value(was_granted: bool, wanted: str) -> str:
    """``withdrawn`` when a granted consent is taken back, else the value chosen."""
    return "withdrawn" if was_granted and wanted != "granted" else wanted


async def _record(session: AsyncSession, user: User, text: ConsentText, choice: str, language: str) -> int:
    """One consent event per scope whose value or text changes; return how many questions were erased."""
    service, research = VALUES[choice]
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


async def withdraw_scope(
    session: AsyncSession, res: Resources, user: User, scope: str, language_code: str
) -> None:
    """Record ``scope`` as withdrawn by command, under the text the user had agreed to."""
    version = user.consent_text_version
    text = shown_text(res, version) if version in available() else current_text(res, language_code)
    await record_consent(
        session, user, scope=scope, new_value="withdrawn", text_version=text.version,
        text_sha256=text.sha256, language=language_code, source="command",
    )  # fmt: skip
