"""Open the store: engines configured per backend, schema revision checks, upgrades.

SQLite (the embedded default) is created readable by its owner only (0600; SQLite gives the
`-wal` and `-shm` files the same permissions) and runs in WAL mode so readers never block the
writer, with a busy timeout, foreign keys on and `synchronous=NORMAL`. The driver's own
transaction handling is switched off and transactions begin explicitly: `BEGIN IMMEDIATE` for
writes (taking the write lock up front, so two writers queue on the busy timeout instead of
failing when a read lock cannot be upgraded), plain `BEGIN` for reads. PostgreSQL goes through
`postgresql+psycopg://`.

Every database error that means "cannot reach or lock the database" surfaces as
`StoreUnavailableError` (HTTP 503), and "no space left" as its `StoreFullError`, raised
from one place: `Store.connection` (which `Store.connect` opens).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from beliefscope.errors import (
    BadInputError,
    NotFoundError,
    SchemaOutOfDateError,
    StoreFullError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from beliefscope.store.access import AccessStore
    from beliefscope.store.activity import ActivityLog
    from beliefscope.store.queries import Queries
    from beliefscope.store.reviews import ReviewStore
    from beliefscope.store.writer import StoreWriter

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE = "beliefscope_write"


def _parse(url: str) -> sa.URL:
    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError as err:
        raise BadInputError(f"not a database URL: {url!r} ({err})") from None


def hidden_password(url: str) -> str:
    """`url` as it may be printed or logged."""
    return _parse(url).render_as_string(hide_password=True)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory databases."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def create_engine(url: str) -> sa.Engine:
    """An engine for `url` with the per-backend settings above (no schema check)."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        _create_private(parsed.database or "")
        engine = sa.create_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_pre_ping=False
        )
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True)
    raise BadInputError(
        f"unsupported store backend {parsed.get_backend_name()!r}: use sqlite or postgresql+psycopg"
    )


def _create_private(database: str) -> None:
    """Create a new SQLite file as 0600 before SQLite would create it with the umask's
    permissions (usually world-readable); an existing file or a missing folder is left alone."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    if os.path.exists(database) or not os.path.isdir(os.path.dirname(database) or "."):
        return
    with contextlib.suppress(FileExistsError):  # another process created it meanwhile
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see _sqlite_on_begin
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        "foreign_keys=ON",
        "synchronous=NORMAL",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic configuration from the installed package (no alembic.ini, no repo paths)."""
    config = Config()
    config.set_main_option("script_location", str(files("beliefscope.store") / "migrations"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found in beliefscope/store/migrations/versions"
    return head


class Store:
    """An open store: the engine plus the ways in, each a surface bound to this store:
    `writer` (ingest), `queries` (the read layer), `reviews` (rules, flags, scores),
    `access` (tokens, sessions, webhooks) and `activity` (the log of state changes)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @cached_property
    def writer(self) -> StoreWriter:
        from beliefscope.store.writer import StoreWriter

        return StoreWriter(self)

    @cached_property
    def queries(self) -> Queries:
        from beliefscope.store.queries import Queries

        return Queries(self)

    @cached_property
    def reviews(self) -> ReviewStore:
        from beliefscope.store.reviews import ReviewStore

        return ReviewStore(self)

    @cached_property
    def access(self) -> AccessStore:
        from beliefscope.store.access import AccessStore

        return AccessStore(self)

    @cached_property
    def activity(self) -> ActivityLog:
        from beliefscope.store.activity import ActivityLog

        return ActivityLog(self)

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """A connection inside one transaction (committed on success, rolled back on error)."""
        with self.connection(write=write) as conn, conn.begin():
            yield conn

    @contextmanager
    def connection(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """A connection for several transactions of the caller's (`with conn.begin():` each):
        one pool checkout (on PostgreSQL, one liveness ping) for a batch of writes."""
        try:
            with self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(**{_WRITE: True})
                yield conn
        except (psycopg.Error, sqlite3.Error) as err:  # from the driver itself (the writer's rows)
            if _full(err):
                raise self._full_error(err) from err
            if not _driver_unavailable(err):
                raise
            raise self._unavailable_error(err) from err
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as err:
            if err.orig is not None and _full(err.orig):
                raise self._full_error(err.orig) from err
            if not _unavailable(err):
                raise
            raise self._unavailable_error(err.orig or err) from err

    def _unavailable_error(self, err: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"store {self.url} is unavailable: {_first_line(err)}")

    def _full_error(self, err: BaseException) -> StoreFullError:
        return StoreFullError(
            f"store {self.url} is out of space ({_first_line(err)}): the write was rolled "
            "back whole; free space and run the command again"
        )

    def revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        with self.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def check_schema(self) -> None:
        current, head = self.revision(), head_revision()
        if current == head:
            return
        known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        if current is not None and current not in known:
            raise SchemaOutOfDateError(
                f"store schema is at {current}, newer than this code ({head}): upgrade beliefscope"
            )
        if current is None:
            raise SchemaOutOfDateError(
                f"store {self.url} is empty (no schema yet, code expects {head}): a command "
                f"that writes creates it, or run `beliefscope db upgrade --store {self.url}`"
            )
        raise SchemaOutOfDateError(
            f"store schema is at {current}, code expects {head}: "
            f"run `beliefscope db upgrade --store {self.url}`"
        )

    def close(self) -> None:
        self.engine.dispose()


class Surface:
    """A way into one `Store`. Every call uses its own connection and transaction, so a
    surface is safe to share between threads and requests; values come back frozen."""

    def __init__(self, store: Store) -> None:
        self._store = store


_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "malformed")


_PG_DISK_FULL = "53100"


def _full(err: BaseException) -> bool:
    """A driver error saying the disk is full: SQLite's SQLITE_FULL (a full disk or
    `max_page_count`) or PostgreSQL's disk_full."""
    if isinstance(err, sqlite3.Error):
        return getattr(err, "sqlite_errorname", "") == "SQLITE_FULL"
    return isinstance(err, psycopg.Error) and err.sqlstate == _PG_DISK_FULL


def _unavailable(err: sa.exc.DBAPIError) -> bool:
    """Whether the error means the database cannot be used right now (as opposed to a bug in a
    statement, which SQLite also reports as an OperationalError, e.g. "no such column")."""
    if err.connection_invalidated or isinstance(err, sa.exc.InterfaceError):
        return True
    return err.orig is None or _driver_unavailable(err.orig)


def _driver_unavailable(err: BaseException) -> bool:
    """The same for an error of the driver itself: any lost or refused PostgreSQL connection;
    on SQLite only the messages above."""
    if isinstance(err, sqlite3.Error):
        return isinstance(err, sqlite3.OperationalError) and any(
            word in str(err).lower() for word in _SQLITE_UNAVAILABLE
        )
    return isinstance(err, psycopg.OperationalError | psycopg.InterfaceError)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def resolve_url(url: str | None) -> str:
    from beliefscope.config import get_settings

    return url or get_settings().store_url()


def open_store(url: str | None = None, *, create: bool = False, check_schema: bool = True) -> Store:
    """Open the store at `url` (default: the `BELIEFSCOPE_STORE` setting, else SQLite under
    `~/.beliefscope`); refuse a schema older or newer than this code.

    `create` is for callers that write: a store that does not exist yet (no SQLite file, or a
    database without a schema) is created and migrated to the newest schema. Without it a
    missing SQLite file is refused, and not created: a failed read leaves nothing behind.
    """
    resolved = resolve_url(url)
    path = sqlite_file(resolved)
    if path is not None and not path.exists():
        if not create:
            raise NotFoundError(
                "no store here yet: commands that write create it (`beliefscope ingest "
                "LOGDIR`, `beliefscope token create NAME`), or `beliefscope db upgrade`",
                path=path,
            )
        _make_parent(path)
    store = Store(create_engine(resolved))
    try:
        if create and store.revision() is None:  # checked again under the write lock
            with store.connect(write=True) as conn:
                if MigrationContext.configure(conn).get_current_revision() is None:
                    _migrate(conn, "head")
        if check_schema:
            store.check_schema()
    except BaseException:
        store.close()
        raise
    return store


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Migrate the store's schema to `revision` (creating the database file for SQLite);
    returns the revision it is at afterwards."""
    resolved = resolve_url(url)
    if (path := sqlite_file(resolved)) is not None:
        _make_parent(path)
    store = Store(create_engine(resolved))
    try:
        with store.connect(write=True) as conn:
            _migrate(conn, revision)
        return store.revision()
    finally:
        store.close()


def _make_parent(path: Path) -> None:
    """The store's folder, private to its owner where it is new (tokens and sessions live in
    the store)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise StoreUnavailableError(f"cannot create the store's folder: {err}", path=path) from None


def _migrate(conn: sa.Connection, revision: str) -> None:
    """Alembic's upgrade inside the caller's write transaction; on PostgreSQL under an
    advisory lock, so two processes creating one store at once take turns (SQLite's
    `BEGIN IMMEDIATE` already does that)."""
    from alembic import command

    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('beliefscope-migrate'))"))
    command.upgrade(alembic_config(conn), revision)
