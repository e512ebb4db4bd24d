"""Where the registry lives and how to open it.

The embedded default is one SQLite file in the data home (``DATA_HOME/registry.sqlite``,
write-ahead logging so that readers never block the writer, foreign keys enforced);
``$REID_DATABASE_URL`` (or an explicit URL) points at PostgreSQL for multi-user
deployments, e.g. ``postgresql+psycopg://user:pass@host/db``. Every open runs the Alembic
migrations shipped inside this package up to the newest revision, so a wheel install
needs nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from reid.errors import ReidError
from reid.paths import data_home

MIGRATIONS = Path(__file__).parent / "migrations"


def database_url() -> str:
    """``$REID_DATABASE_URL`` when set, else the SQLite file in the data home."""
    if url := os.environ.get("REID_DATABASE_URL"):
        return url
    return f"sqlite:///{data_home() / 'registry.sqlite'}"


def model_metadata():
    """The metadata of every table declared in ``reid.registry``'s modules.

    What the migrations must build: the registry's own models plus tables other modules
    declare on the same :class:`~reid.registry.models.Base` (e.g. API access).
    """
    import importlib
    import pkgutil

    import reid.registry as package
    from reid.registry.models import Base

    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            importlib.import_module(f"reid.registry.{info.name}")
    return Base.metadata


def hidden_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def utc(moment: datetime) -> datetime:
    """A naive UTC datetime as stored: aware values are converted, naive ones taken as UTC."""
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except (OverflowError, ValueError):
            raise ReidError(f"time {moment.isoformat()} is outside the UTC range") from None
    return moment


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """An engine for ``url`` (default :func:`database_url`); SQLite gets WAL and foreign keys."""
    url = url or database_url()
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, **kwargs)
    except Exception as e:  # a malformed URL or a missing driver
        raise ReidError(f"cannot use database {url!r}: {e}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` with the migrations shipped in this package."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except Exception as e:
        if isinstance(e, ReidError):
            raise
        raise ReidError(
            f"cannot open the registry at {engine.url.render_as_string(hide_password=True)}: "
            f"{str(e).splitlines()[0]}"
        ) from None


class Registry:
    """An opened registry: ``with Registry().session() as s:`` commits or rolls back."""

    def __init__(self, url: str | None = None, *, upgrade: bool = True, **engine_kwargs) -> None:
        self.engine = make_engine(url, **engine_kwargs)
        if upgrade:
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        """Where it is, password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()
