"""The hash-chained audit log: verification, tampering, concurrent writers; both backends."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.errors import AuditChainError
from storage.models import AuditEvent, utcnow
from storage.repository.audit import GENESIS_HASH, append_audit, row_hash, verify_chain

Sessions = async_sessionmaker[AsyncSession]


async def _append_many(sessionmaker: Sessions, count: int) -> list[int]:
    """Append ``count`` events, one transaction each; return their ids."""
    ids = []
    for number in range(count):
        async with sessionmaker.begin() as session:
            row = await append_audit(session, "test.event", f"s{number}", {"n": number, "é": "x"})
            ids.append(row.id)
    return ids


async def _execute(sessionmaker: Sessions, sql: str, **params: object) -> None:
    """Run one raw statement in its own transaction (the tamperer's view)."""
    async with sessionmaker.begin() as session:
        await session.execute(text(sql), params)


async def _verify(sessionmaker: Sessions) -> int:
    """Verify the chain in a fresh transaction."""
    async with sessionmaker.begin() as session:
        return await verify_chain(session)


async def test_chain_verifies_and_links(sessionmaker: Sessions) -> None:
    """A series of events verifies; each row points at the previous row's hash."""
    await _append_many(sessionmaker, 6)
    async with sessionmaker.begin() as session:
        rows = list((await session.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())
    assert await _verify(sessionmaker) == 6
    assert rows[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert rows[0].payload == '{"n":0,"\\u00e9":"x"}'


async def test_empty_chain_verifies(sessionmaker: Sessions) -> None:
    """An empty log has zero rows and is valid."""
    assert await _verify(sessionmaker) == 0


async def test_appends_in_one_transaction_chain_together(sessionmaker: Sessions) -> None:
    """Several appends in one transaction form a chain too."""
    async with sessionmaker.begin() as session:
        first = await append_audit(session, "a", None, {})
        second = await append_audit(session, "b", None, {})
    assert second.prev_hash == first.hash
    assert await _verify(sessionmaker) == 2


async def test_changed_payload_is_detected_at_that_row(sessionmaker: Sessions) -> None:
    """Editing one row's payload breaks the chain at exactly that row."""
    ids = await _append_many(sessionmaker, 5)
    await _execute(sessionmaker, "UPDATE audit_events SET payload = :p WHERE id = :i", p='{"n":99}', i=ids[2])
    with pytest.raises(AuditChainError, match="changed") as caught:
        await _verify(sessionmaker)
    assert caught.value.row_id == ids[2]


async def test_deleted_row_is_detected_at_the_next_row(sessionmaker: Sessions) -> None:
    """Removing a row breaks the link of the row after it."""
    ids = await _append_many(sessionmaker, 5)
    await _execute(sessionmaker, "DELETE FROM audit_events WHERE id = :i", i=ids[2])
    with pytest.raises(AuditChainError, match="removed or inserted") as caught:
        await _verify(sessionmaker)
    assert caught.value.row_id == ids[3]


async def _insert_forged(sessionmaker: Sessions, row_id: int, prev_hash: str) -> str:
    """Insert a self-consistent forged row with ``row_id`` after ``prev_hash``; return its hash."""
    created_at, payload = utcnow(), '{"forged":true}'
    forged_hash = row_hash(prev_hash, created_at, "forged", None, payload)
    async with sessionmaker.begin() as session:
        session.add(
            AuditEvent(
                id=row_id,
                created_at=created_at,
                event="forged",
                subject=None,
                payload=payload,
                prev_hash=prev_hash,
                hash=forged_hash,
            )
        )
    return forged_hash


async def test_inserted_row_with_unknown_link_is_detected_at_that_row(
    sessionmaker: Sessions,
) -> None:
    """A row slipped into a gap in the middle is named as the broken row."""
    ids = await _append_many(sessionmaker, 5)
    await _execute(sessionmaker, "UPDATE audit_events SET id = id + 1000 WHERE id > :i", i=ids[2])
    await _insert_forged(sessionmaker, ids[2] + 1, "f" * 64)
    with pytest.raises(AuditChainError, match="removed or inserted") as caught:
        await _verify(sessionmaker)
    assert caught.value.row_id == ids[2] + 1


async def test_inserted_row_relinked_is_detected_at_the_next_row(sessionmaker: Sessions) -> None:
    """A forged row linked in properly still breaks the following row's hash."""
    ids = await _append_many(sessionmaker, 5)
    async with sessionmaker.begin() as session:
        after = await session.get(AuditEvent, ids[2])
        assert after is not None
        link = after.hash
    await _execute(sessionmaker, "UPDATE audit_events SET id = id + 1000 WHERE id > :i", i=ids[2])
    await _execute(
        sessionmaker,
        "UPDATE audit_events SET prev_hash = :h WHERE id = :i",
        h="0" * 63 + "1",
        i=ids[3] + 1000,
    )
    forged_hash = await _insert_forged(sessionmaker, ids[2] + 1, link)
    await _execute(
        sessionmaker, "UPDATE audit_events SET prev_hash = :h WHERE id = :i", h=forged_hash, i=ids[3] + 1000
    )
    with pytest.raises(AuditChainError, match="changed") as caught:
        await _verify(sessionmaker)
    assert caught.value.row_id == ids[3] + 1000


async def test_concurrent_appends_never_fork(sessionmaker: Sessions) -> None:
    """Twenty writers with their own sessions at once still build one straight chain."""

    async def append(number: int) -> None:
        async with sessionmaker.begin() as session:
            await append_audit(session, "test.concurrent", f"w{number}", {"n": number})

    await asyncio.gather(*(append(n) for n in range(20)))
    async with sessionmaker.begin() as session:
        prev_hashes = list((await session.execute(select(AuditEvent.prev_hash))).scalars())
    assert await _verify(sessionmaker) == 20
    assert len(set(prev_hashes)) == 20
