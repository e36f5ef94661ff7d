"""Backups of a live store and restores into a fresh one, each checked against a manifest.

A backup is a consistent snapshot taken while ingest and the server keep writing: SQLite's
online backup API copies the database in one step under a read transaction (WAL readers never
block writers); PostgreSQL's `pg_dump` dumps inside a snapshot that the manifest was computed
in too (`pg_export_snapshot`), so the counts describe exactly what the dump holds. The manifest
(`FILE.manifest.json`) lists every table's row count and a checksum of the trace data
(`steps` and `trace_arrays`); `restore` recomputes both on the restored store and refuses to
call it verified unless they match. A restore only goes into an empty store: it never
overwrites data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from beliefscope.errors import BadInputError, NotFoundError, StoreUnavailableError
from beliefscope.store.engine import (
    Store,
    create_engine,
    head_revision,
    hidden_password,
    sqlite_file,
)

TRACE_TABLES = ("steps", "trace_arrays")
"""Tables whose contents the checksum covers, in primary-key order."""
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PGDUMP_MAGIC = b"PGDMP"


@dataclass(frozen=True)
class Manifest:
    """What a backup holds: checked again on the restored store."""

    backend: str
    revision: str | None
    tables: dict[str, int]
    trace_checksum: str
    created: str

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def describe(self) -> str:
        return (
            f"{len(self.tables)} tables, {self.rows:,} rows, schema {self.revision or 'empty'}, "
            f"trace data sha256 {self.trace_checksum[:16]}"
        )


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + ".manifest.json")


def summarize(conn: sa.Connection) -> Manifest:
    """Row counts of every table and a checksum of the trace data, read in `conn`'s
    transaction (so in one snapshot)."""
    names = sorted(sa.inspect(conn).get_table_names())
    tables = {
        n: int(conn.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one()) for n in names
    }
    digest = hashlib.sha256()
    metadata = sa.MetaData()
    for name in TRACE_TABLES:
        if name not in tables:
            continue
        table = sa.Table(name, metadata, autoload_with=conn)
        key = list(table.primary_key.columns) or list(table.columns)
        query = sa.select(*table.columns).order_by(*key)
        for row in conn.execution_options(stream_results=True, yield_per=5000).execute(query):
            digest.update(repr(tuple(row)).encode())
    version = None
    if "alembic_version" in tables:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return Manifest(
        backend=conn.dialect.name,
        revision=version,
        tables=tables,
        trace_checksum=digest.hexdigest(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def backup(store: Store, out: Path) -> Manifest:
    """Write a consistent snapshot of `store` to `out` and its manifest beside it."""
    out = out.expanduser()
    if out.exists():
        raise BadInputError("backup file exists already: choose a new name", path=out)
    if not out.parent.is_dir():
        raise NotFoundError("backup folder does not exist", path=out.parent)
    with _staged(out) as staging:
        if store.backend == "sqlite":
            manifest = _backup_sqlite(store, staging)
        else:
            manifest = _backup_postgresql(store, staging)
        manifest_path(out).write_text(json.dumps(asdict(manifest), indent=1) + "\n")
    return manifest


def restore(backup_file: Path, url: str) -> tuple[Manifest, Manifest | None]:
    """Restore `backup_file` into the empty store at `url`; returns what the restored store
    holds and the backup's manifest (None when the file has none)."""
    backup_file = backup_file.expanduser()
    if not backup_file.is_file():
        raise NotFoundError("no backup file here", path=backup_file)
    kind = _kind(backup_file)
    expected = _read_manifest(backup_file)
    target = create_engine(url)
    try:
        if target.dialect.name != kind:
            raise BadInputError(
                f"a {kind} backup restores into a {kind} store, not {target.dialect.name}",
                path=backup_file,
            )
        _require_empty(target, url)
        if kind == "sqlite":
            target.dispose()
            _restore_sqlite(backup_file, url)
        else:
            _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                  "--single-transaction", "--dbname", _libpq_url(target.url), str(backup_file)],
                 target.url)  # fmt: skip
        with target.connect() as conn:
            got = summarize(conn)
    finally:
        target.dispose()
    return got, expected


def differences(got: Manifest, expected: Manifest) -> list[str]:
    """What the restored store holds that the manifest does not say (empty: verified)."""
    out = [
        f"{name}: {got.tables.get(name, 0)} rows, the backup says {count}"
        for name, count in sorted(expected.tables.items())
        if got.tables.get(name, 0) != count
    ]
    out += [f"{name}: not in the backup" for name in sorted(set(got.tables) - set(expected.tables))]
    if got.trace_checksum != expected.trace_checksum:
        out.append("trace data checksum differs")
    return out


def schema_note(revision: str | None) -> str:
    head = head_revision()
    if revision == head:
        return f"schema {revision}, up to date"
    return f"schema {revision or 'empty'}, code expects {head}: run `beliefscope db upgrade`"


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A private temporary file beside `out`, renamed to it on success and removed on
    failure: a backup that stops half-way leaves nothing that looks like a backup."""
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        os.replace(staging, out)
    except BaseException:
        staging.unlink(missing_ok=True)
        manifest_path(out).unlink(missing_ok=True)
        raise


def _backup_sqlite(store: Store, staging: Path) -> Manifest:
    source = sqlite_file(store.url)
    if source is None:
        raise BadInputError(f"store {store.url} has no database file to back up")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(staging)
    try:
        src.backup(dst)  # one step: a single read snapshot, writers carry on (WAL)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        _check_integrity(dst, staging)
    except sqlite3.Error as err:
        raise StoreUnavailableError(f"backup of {store.url} failed: {err}") from None
    finally:
        src.close()
        dst.close()
    engine = create_engine(f"sqlite:///{staging}")
    try:
        with engine.connect() as conn:
            return summarize(conn)
    finally:
        engine.dispose()


def _backup_postgresql(store: Store, staging: Path) -> Manifest:
    with store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            manifest = summarize(conn)
            _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                  f"--snapshot={snapshot}", "--file", str(staging),
                  "--dbname", _libpq_url(store.engine.url)], store.engine.url)  # fmt: skip
    return manifest


def _restore_sqlite(backup_file: Path, url: str) -> None:
    path = sqlite_file(url)
    assert path is not None
    src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    try:
        _check_integrity(src, backup_file)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_engine(url).dispose()  # creates the file 0600 where it is new
        dst = sqlite3.connect(path)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    finally:
        src.close()


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BadInputError(f"SQLite integrity check failed: {result}", path=path)


def _require_empty(engine: sa.Engine, url: str) -> None:
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
    if tables:
        raise BadInputError(
            f"store {hidden_password(url)} already holds "
            f"{len(tables)} tables: restore into a new, empty store (nothing was changed)"
        )


def _kind(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head == _SQLITE_MAGIC:
        return "sqlite"
    if head.startswith(_PGDUMP_MAGIC):
        return "postgresql"
    raise BadInputError(
        "not a Beliefscope backup (neither a SQLite database nor a pg_dump archive)", path=path
    )


def _read_manifest(backup_file: Path) -> Manifest | None:
    path = manifest_path(backup_file)
    if not path.exists():
        return None
    try:
        return Manifest(**json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise BadInputError(f"unreadable backup manifest: {err}", path=path) from None


def _libpq_url(url: sa.URL) -> str:
    """The URL as libpq reads it: no SQLAlchemy driver suffix, no password (that goes in
    PGPASSWORD, not on a command line other users can see)."""
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)


def _run(command: list[str], url: sa.URL) -> None:
    tool = command[0]
    if shutil.which(tool) is None:
        raise StoreUnavailableError(
            f"{tool} is not installed: PostgreSQL backups use the client tools "
            f"(Debian: apt-get install postgresql-client, matching the server's major version)"
        )
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise StoreUnavailableError(f"{tool} failed: {detail}")
