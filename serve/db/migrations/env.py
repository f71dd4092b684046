"""Alembic environment for the database's migrations (review queue and prediction log).

Only online migrations through a connection that `serve.db.engine.migrate()` has already opened (and locked)
are supported: the store runs them itself at start-up, so no alembic.ini exists. To write a new migration:
`alembic.command.revision(serve.db.engine.alembic_config(), "message")`, then edit the file and mirror the
change in `schema.py` (a test compares the two).
"""

from alembic import context


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None or context.is_offline_mode():
        raise RuntimeError("the database's migrations run through serve.db.engine.migrate(engine)")
    context.configure(
        connection=connection,
        version_table=context.config.attributes["version_table"],
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead, for future migrations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    # migrate() has begun the transaction, so this does not open another: all migrations commit together.
    with context.begin_transaction():
        context.run_migrations()


if hasattr(context, "config"):  # run by Alembic; imported any other way (doctest collection) it does nothing
    run_migrations()
