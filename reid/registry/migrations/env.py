"""Alembic environment: runs on the connection that :func:`reid.registry.db.migrate` passes."""

from alembic import context

from reid.registry.db import model_metadata

config = context.config
target_metadata = model_metadata()


def run() -> None:
    """Run the migrations online on the given connection (there is no offline mode)."""
    connection = config.attributes.get("connection")
    if connection is None:
        from reid.registry.db import make_engine

        with make_engine().begin() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
