"""Reviews: the requests of `review` steps, and their decisions."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-05T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "reviews of review steps"

# A projection of the review steps' status events, written in their transaction
# (db/projection.py): one row per attempt that asked for a review.
STATEMENTS = (
    "CREATE TABLE runwire_review (execution_id VARCHAR(36) NOT NULL,"
    " step_key VARCHAR(100) NOT NULL,"
    " attempt INTEGER NOT NULL,"
    " workspace_id VARCHAR(36) NOT NULL,"
    # PENDING, then DECIDED, TIMED_OUT or CANCELLED (domain/reviews.ReviewStatus).
    " status VARCHAR(20) NOT NULL,"
    " title VARCHAR(200) NOT NULL,"
    # The rendered `with` mapping reviewers were shown; a submission is checked against it.
    " request TEXT NOT NULL,"
    " requested_at TIMESTAMPTZ NOT NULL,"
    " expires_at TIMESTAMPTZ,"
    " decision VARCHAR(50),"
    # The form's values (`values` is a reserved word).
    " answer TEXT,"
    " comment TEXT,"
    " decided_by VARCHAR(200),"
    " decided_at TIMESTAMPTZ,"
    " PRIMARY KEY (execution_id, step_key, attempt))",
    # The review queue of a workspace, oldest first.
    "CREATE INDEX runwire_review_queue ON runwire_review (workspace_id, status, requested_at)",
    # What every process's timeout sweep polls.
    "CREATE INDEX runwire_review_due ON runwire_review (expires_at) WHERE status = 'PENDING'",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="runwire", description=DESCRIPTION)

    async def create_reviews() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(create_reviews)
    return manager
