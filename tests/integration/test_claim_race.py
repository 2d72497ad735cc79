"""A claim never takes an execution that stopped being claimable while the claim was choosing.

On Postgres a claim reads its candidates without locking them, then updates the chosen rows. A
pause or stop of a queued execution (domain/control.py) commits in between: the update must see
the row as it is then, or a paused execution runs and a stopped one starts again.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from tests.integration.test_store_contract import queued
from tests.support import postgres

from runwire.core import Stores
from runwire.db.engine import Database
from runwire.domain.models import ExecutionStatus


@pytest.mark.parametrize("status", [ExecutionStatus.PAUSED, ExecutionStatus.CANCELLED])
async def test_an_execution_paused_or_stopped_while_a_claim_chooses_is_not_taken(
    status: ExecutionStatus,
) -> None:
    async with (
        postgres.fresh_database() as url,
        Database.open(url, migrate=True) as database,
    ):
        stores = Stores.on(database)
        execution, first = queued("e1")
        await stores.executions.create_execution(execution, first)
        # The pause's transaction holds the row (as ExecutionStore.transition does) until the
        # claim has chosen it and waits for it.
        steering = await asyncpg.connect(url)
        watching = await asyncpg.connect(url)
        try:
            transaction = steering.transaction()
            await transaction.start()
            await steering.execute("SELECT 1 FROM runwire_execution WHERE id = 'e1' FOR UPDATE")
            claim = asyncio.create_task(stores.queue.claim("runner-1", 1, 60))
            # Another connection looks: inside a transaction pg_stat_activity is a snapshot.
            async with asyncio.timeout(10):
                while not await watching.fetchval(
                    # This test's database only: other tests' claims may run beside it.
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                    " AND query LIKE 'UPDATE runwire_execution SET owner%'"
                ):
                    await asyncio.sleep(0.01)
            await steering.execute(
                "UPDATE runwire_execution SET status = $1 WHERE id = 'e1'", status.value
            )
            await transaction.commit()
            assert await claim == []
            found = await stores.executions.execution("e1", workspace=execution.workspace_id)
            assert found is not None
            assert (found.status, found.owner) == (status, None)
        finally:
            await steering.close()
            await watching.close()
