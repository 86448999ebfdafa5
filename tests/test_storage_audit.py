"""The hash-chained audit log: verification, tampering, concurrent writers, keyed rows, the anchor."""

from __future__ import annotations

import asyncio
import random
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.audit_anchor import AuditAnchor, Checkpoint
from storage.db import make_sessionmaker
from storage.errors import AuditAnchorError, AuditChainError
from storage.models import AuditEvent, utcnow
from storage.pseudonym import Pseudonymizer
from storage.repositories.audit import GENESIS_HASH, append_audit, row_hash, verify_audit, verify_chain

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


def _second(sessionmaker: Sessions) -> Sessions:
    """Another, unanchored sessionmaker on the same engine (``attach`` changes the one it is given)."""
    return make_sessionmaker(sessionmaker.kw["bind"])


def _anchor(directory: Path, key: bytes = b"k" * 32) -> AuditAnchor:
    """An anchor in ``directory`` keyed from the pseudonym key ``key``."""
    return AuditAnchor.from_pseudonyms(directory, Pseudonymizer.from_key(key))


async def test_anchored_rows_are_keyed_and_the_anchor_follows_each_commit(
    sessionmaker: Sessions, tmp_path: Path
) -> None:
    """Rows carry HMAC hashes; after each commit the 0600 anchor names the newest row; a rollback does not."""
    anchor = _anchor(tmp_path / "data")
    anchored = anchor.attach(sessionmaker)
    ids = await _append_many(anchored, 3)
    async with anchored.begin() as session:
        rows = list((await session.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())
    assert [row.id for row in rows] == ids
    for row in rows:
        fields = (row.prev_hash, row.created_at, row.event, row.subject, row.payload)
        assert row.hash == row_hash(*fields, anchor.chain_key) != row_hash(*fields)
    assert anchor.read() == Checkpoint(ids[-1], rows[-1].hash)
    assert stat.S_IMODE(anchor.path.stat().st_mode) == 0o600

    async def rolled_back() -> None:
        async with anchored.begin() as session:
            await append_audit(session, "rolled.back", None, {})
            raise RuntimeError

    with pytest.raises(RuntimeError):
        await rolled_back()
    assert anchor.read() == Checkpoint(ids[-1], rows[-1].hash)
    async with anchored.begin() as session:
        report = await verify_audit(session)
    assert (report.rows, report.keyed_rows, report.anchored_rows, report.unanchored_rows) == (3, 3, 3, 0)


async def test_a_plain_row_after_keyed_rows_is_named(sessionmaker: Sessions, tmp_path: Path) -> None:
    """A process without the audit key appending after keyed rows is detected at its row."""
    anchored = _anchor(tmp_path).attach(_second(sessionmaker))
    await _append_many(anchored, 2)
    async with sessionmaker.begin() as session:  # a session of a process wired without the anchor
        plain = await append_audit(session, "no.key", None, {})
    with pytest.raises(AuditChainError, match="unkeyed hash after keyed rows") as caught:
        await _verify(anchored)
    assert caught.value.row_id == plain.id


async def test_another_key_cannot_verify_the_anchor(sessionmaker: Sessions, tmp_path: Path) -> None:
    """Verifying with a different pseudonym key fails on the anchor's signature, not silently."""
    await _append_many(_anchor(tmp_path).attach(_second(sessionmaker)), 2)
    with pytest.raises(AuditAnchorError, match="wrong signature"):
        await _verify(_anchor(tmp_path, b"x" * 32).attach(sessionmaker))


async def test_a_bad_anchor_is_left_alone_and_the_commit_stands(
    sessionmaker: Sessions, tmp_path: Path
) -> None:
    """A writer never overwrites an anchor it cannot verify (the evidence stays); its rows are committed."""
    anchor = _anchor(tmp_path)
    anchored = anchor.attach(sessionmaker)
    await _append_many(anchored, 1)
    anchor.path.write_text('{"format":1,"row_id":1,"head_hash":"0","mac":"0"}\n', encoding="ascii")
    ids = await _append_many(anchored, 1)
    assert anchor.path.read_text(encoding="ascii").startswith('{"format":1,"row_id":1,')
    async with sessionmaker.begin() as session:
        assert await session.get(AuditEvent, ids[0]) is not None


def test_the_anchor_only_moves_forward_under_concurrent_writers(tmp_path: Path) -> None:
    """Eight threads advancing 200 checkpoints in random order (each its own lock): the newest wins."""
    anchor = _anchor(tmp_path)
    checkpoints = [Checkpoint(n, f"{n:064x}") for n in range(1, 201)]
    orders = [random.sample(checkpoints, len(checkpoints)) for _ in range(8)]
    errors: list[BaseException] = []

    def work(order: list[Checkpoint]) -> None:
        try:
            for checkpoint in order:
                anchor.advance(checkpoint)
                current = anchor.read()
                assert current is not None and current.row_id >= checkpoint.row_id
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and anchor.read() == checkpoints[-1]
    assert anchor.advance(Checkpoint(5, "5" * 64)) is False and anchor.read() == checkpoints[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.anchor", "audit.anchor.lock"]
