"""Alembic environment: always runs on the connection `beliefscope.store.engine` hands over."""

from __future__ import annotations

from alembic import context

from beliefscope.store.tables import all_metadata

connection = context.config.attributes.get("connection")
assert connection is not None, "run migrations through `beliefscope db upgrade`"
context.configure(
    connection=connection,
    target_metadata=all_metadata(),
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER goes through table copies
)
with context.begin_transaction():
    context.run_migrations()
