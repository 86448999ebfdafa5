"""Consent: one immutable event per change, mirrored in the user's cached booleans, and its history."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import metrics
from storage.models import CONSENT_SCOPES, CONSENT_SOURCES, CONSENT_VALUES, ConsentEvent, User
from storage.models.base import check_one_of
from storage.repositories.audit import append_audit


async def current_consent(
    session: AsyncSession, user: User, scope: str, question_id: str | None = None
) -> str | None:
    """Return the latest value ("granted"/"declined"/"withdrawn") for ``scope``, or None."""
    query = (
        select(ConsentEvent.new_value)
        .where(ConsentEvent.user_id == user.id, ConsentEvent.scope == scope)
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    )
    if question_id is not None:
        query = query.where(ConsentEvent.question_id == question_id)
    return (await session.execute(query)).scalar_one_or_none()


async def record_consent(
    session: AsyncSession,
    user: User,
    *,
    scope: str,
    new_value: str,
    text_version: str,
    text_sha256: str,
    language: str,
    source: str,
    question_id: str | None = None,
) -> ConsentEvent:
    """Append a consent event (old value = the user's current state) and audit it.

    Scope ``clinician`` is an agreement for one question (``question_id``): it changes no flag of
    the user, and its old value is that question's earlier choice.
    """
    check_one_of("scope", scope, CONSENT_SCOPES)
    check_one_of("new_value", new_value, CONSENT_VALUES)
    check_one_of("source", source, CONSENT_SOURCES)
    await session.flush()  # make sure the user has an id
    old_value = await current_consent(session, user, scope, question_id)
    consent = ConsentEvent(
        user_id=user.id,
        scope=scope,
        text_version=text_version,
        text_sha256=text_sha256,
        language=language,
        old_value=old_value,
        new_value=new_value,
        source=source,
        question_id=question_id,
    )
    session.add(consent)
    if scope != "clinician":
        _apply_to_user(user, scope, new_value, text_version)
    await session.flush()
    metrics.CONSENT_CHANGES.labels(scope, new_value).inc()
    await append_audit(
        session,
        "consent.changed",
        user.pseudonym,
        {
            "new": new_value,
            "old": old_value,
            "pseudonym": user.pseudonym,
            **({"question_id": question_id} if question_id else {}),
            "scope": scope,
            "source": source,
            "text_sha256": text_sha256,
            "version": text_version,
        },
    )
    return consent


def _apply_to_user(user: User, scope: str, new_value: str, text_version: str) -> None:
    """Update the user's cached consent flags and consent text version."""
    granted = new_value == "granted"
    if scope == "service":
        user.service_consent = granted
    else:
        user.research_consent = granted
    user.consent_text_version = text_version


async def latest_consents(session: AsyncSession, user_id: int) -> dict[str, ConsentEvent]:
    """The newest consent event per scope ("service", "research") of a user (not per-question ones)."""
    history = await consent_history(session, user_id)
    return {event.scope: event for event in history if event.question_id is None}


async def consent_history(session: AsyncSession, user_id: int) -> list[ConsentEvent]:
    """Every consent event of a user, oldest first."""
    query = select(ConsentEvent).where(ConsentEvent.user_id == user_id).order_by(ConsentEvent.id)
    return list((await session.execute(query)).scalars())
