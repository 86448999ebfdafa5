"""The audit trail cannot be changed by the application: a PostgreSQL role without UPDATE/DELETE."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async
from storage.models import User
from storage.repositories.audit import append_audit, verify_chain
from storage.repositories.erasure import erase_research_text
from tests.test_consent_storage import seed

APP_ROLE = "meditron_app"


@pytest.fixture
async def app_engine(fresh_postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated PostgreSQL database whose connections act as the application role."""
    await upgrade_async(fresh_postgres_url)
    engine = make_engine(fresh_postgres_url)

    def become_app(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.run_async(lambda conn: conn.execute(f"SET ROLE {APP_ROLE}"))  # type: ignore[attr-defined]

    event.listen(engine.sync_engine, "connect", become_app)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _refused(sessionmaker: async_sessionmaker[AsyncSession], sql: str) -> str:
    """Run ``sql``; return the database's refusal message."""
    with pytest.raises(DBAPIError) as caught:
        async with sessionmaker.begin() as session:
            await session.execute(text(sql))
    return str(caught.value.orig)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_events SET payload = '{}'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE consent_events SET new_value = 'granted'",
        "DELETE FROM erasures",
    ],
)
async def test_application_role_cannot_change_the_audit_trail(app_engine: AsyncEngine, sql: str) -> None:
    """As the application role, changing or removing audit, consent or tombstone rows is refused."""
    sessionmaker = make_sessionmaker(app_engine)
    await seed(sessionmaker, questions=1)
    assert "permission denied" in await _refused(sessionmaker, sql)
    async with sessionmaker.begin() as session:
        assert await verify_chain(session) > 0


@pytest.mark.postgres
async def test_application_role_can_do_its_work(app_engine: AsyncEngine) -> None:
    """The same role appends audit rows, records consent, questions and erasures as usual."""
    sessionmaker = make_sessionmaker(app_engine)
    user_id = await seed(sessionmaker, questions=2)
    async with sessionmaker.begin() as session:
        role = (await session.execute(text("SELECT current_user"))).scalar_one()
        user = await session.get(User, user_id)
        assert user is not None
        await append_audit(session, "test.event", None, {"n": 1})
        erased = await erase_research_text(session, user)
    async with sessionmaker.begin() as session:
        assert await verify_chain(session) > 0
    assert role == APP_ROLE and erased.questions == 2
