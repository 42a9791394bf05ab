"""Alembic environment: runs on the connection the app hands over (see bot.storage.db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from bot.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    # Command-line use (autogenerate): LINLI_MIGRATE_URL is a sync URL, e.g. sqlite:///tmp/x.db
    import os

    engine = create_engine(os.environ.get("LINLI_MIGRATE_URL", "sqlite:///data/migrate.sqlite3"))
    with engine.begin() as conn:
        run(conn)
