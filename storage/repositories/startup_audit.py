"""Audit events for configuration and model changes, written when a process starts.

Each component ("bot", "worker", ...) calls ``audit_startup`` once at start-up with a snapshot of
its settings (``settings_snapshot``) and, for workers, the model file's sha256 and the prompt
version. An event is appended only when something differs from the component's last recorded
snapshot: ``config.changed`` (which settings changed, and the whole new snapshot) and
``model.changed`` (old and new model sha256 / prompt version). Secrets, URLs and Telegram ids
are never written: such settings appear only as ``<set>`` or ``<unset>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEvent
from storage.repositories.audit import append_audit, lock_chain

CONFIG_EVENT = "config.changed"
MODEL_EVENT = "model.changed"
_HIDDEN = re.compile(r"token|key|password|secret|url|_id$|_ids$|allowed", re.IGNORECASE)
Scalar = str | int | float | bool | None


def _shown(name: str, value: Any) -> Scalar:
    """The value as it may appear in the audit log."""
    if isinstance(value, SecretStr) or _HIDDEN.search(name):
        return "<unset>" if value in (None, "") else "<set>"
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value) if isinstance(value, str | Path) else repr(value)


def settings_snapshot(*models: BaseModel, exclude: tuple[str, ...] = ()) -> dict[str, Scalar]:
    """The settings of ``models`` as loggable values, secrets and ids hidden."""
    snapshot: dict[str, Scalar] = {}
    for model in models:
        for name in type(model).model_fields:
            if name not in exclude:
                snapshot[name] = _shown(name, getattr(model, name))
    return snapshot


async def _last_payload(session: AsyncSession, event: str, component: str) -> dict[str, Any] | None:
    """The payload of the component's newest ``event``, or None."""
    query = (
        select(AuditEvent.payload)
        .where(AuditEvent.event == event, AuditEvent.subject == component)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    payload = (await session.execute(query)).scalar_one_or_none()
    return json.loads(payload) if payload is not None else None


async def _config_change(session: AsyncSession, component: str, config: Mapping[str, Scalar]) -> bool:
    """Append ``config.changed`` if the snapshot differs from the last one; True if appended."""
    previous = await _last_payload(session, CONFIG_EVENT, component)
    old: dict[str, Any] = previous["config"] if previous else {}
    keys = set(old) | set(config)
    changed = sorted(k for k in keys if (k in old, old.get(k)) != (k in config, config.get(k)))
    if previous is not None and not changed:
        return False
    payload = {"changed": changed, "component": component, "config": dict(config), "first": previous is None}
    await append_audit(session, CONFIG_EVENT, component, payload)
    return True


async def _model_change(session: AsyncSession, component: str, model: Mapping[str, Scalar]) -> bool:
    """Append ``model.changed`` if the model or prompt differs from the last record; True if appended."""
    previous = await _last_payload(session, MODEL_EVENT, component)
    old = previous["model"] if previous else None
    if old == dict(model):
        return False
    await append_audit(
        session, MODEL_EVENT, component, {"component": component, "model": dict(model), "previous": old}
    )
    return True


async def audit_startup(
    session: AsyncSession,
    component: str,
    config: Mapping[str, Scalar],
    *,
    model_sha256: str | None = None,
    prompt_version: str | None = None,
) -> list[str]:
    """Record configuration (and model) changes of ``component`` since its last start; return the events."""
    await lock_chain(session)  # serialise with other starting processes
    events = [CONFIG_EVENT] if await _config_change(session, component, config) else []
    if model_sha256 is not None or prompt_version is not None:
        model = {"model_sha256": model_sha256, "prompt_version": prompt_version}
        if await _model_change(session, component, model):
            events.append(MODEL_EVENT)
    return events
