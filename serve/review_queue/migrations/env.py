"""Alembic environment for the review queue's migrations.

Only online migrations through a connection that `serve.review_queue.engine.migrate()` has already opened
(and locked) are supported: the store runs them itself at start-up, so no alembic.ini exists. To write a new
migration: `alembic.command.revision(serve.review_queue.engine.alembic_config(), "message")`, then edit the
file and mirror the change in `schema.py` (a test compares the two).
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("review-queue migrations run through serve.review_queue.engine.migrate(engine)")

context.configure(
    connection=connection,
    version_table=context.config.attributes["version_table"],
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead, for future migrations.
    render_as_batch=connection.dialect.name == "sqlite",
)
# migrate() has begun the transaction, so this does not open another: all migrations commit together.
with context.begin_transaction():
    context.run_migrations()
