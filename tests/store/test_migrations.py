from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from beliefscope.cli import main
from beliefscope.errors import SchemaOutOfDateError, StoreUnavailableError
from beliefscope.store.engine import (
    Store,
    alembic_config,
    create_engine,
    head_revision,
    open_store,
    sqlite_file,
    upgrade,
)
from beliefscope.store.tables import all_metadata


def test_migration_chain_is_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()
    for revision in script.walk_revisions():
        assert not revision.is_merge_point, revision.revision


def test_upgrade_from_empty_matches_the_models(empty_store_url: str) -> None:
    assert upgrade(empty_store_url) == head_revision()
    store = open_store(empty_store_url)
    try:
        with store.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, all_metadata()) == []
    finally:
        store.close()
    assert upgrade(empty_store_url) == head_revision()  # a second upgrade is a no-op


def test_out_of_date_schema_is_refused_with_the_fix(empty_store_url: str) -> None:
    if (path := sqlite_file(empty_store_url)) is not None:
        path.touch()  # an existing database without a schema, as on PostgreSQL
    with pytest.raises(SchemaOutOfDateError, match="run `beliefscope db upgrade --store") as err:
        open_store(empty_store_url)
    assert f"code expects {head_revision()}" in str(err.value)
    assert err.value.status == 503


def test_newer_schema_is_refused(sqlite_url: str) -> None:
    store = Store(create_engine(sqlite_url))
    with store.connect(write=True) as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(SchemaOutOfDateError, match="9999, newer than this code"):
        open_store(sqlite_url)


def test_unreachable_database_is_a_clear_503() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1
    with pytest.raises(StoreUnavailableError, match="127.0.0.1:1.* is unavailable") as err:
        open_store(url)
    assert err.value.status == 503


def test_db_cli_upgrades_and_reports(
    sqlite_empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "current", "--store", sqlite_empty_url]) == 1
    assert "out of date" in capsys.readouterr().out
    assert main(["db", "upgrade", "--store", sqlite_empty_url]) == 0
    assert f"empty -> {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", "--store", sqlite_empty_url]) == 0
    assert "up to date" in capsys.readouterr().out


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    try:
        with store.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            assert pragma("journal_mode") == "wal"
            assert pragma("busy_timeout") == 30_000
            assert pragma("foreign_keys") == 1
            assert pragma("synchronous") == 1  # NORMAL
    finally:
        store.close()


def test_locked_sqlite_is_unavailable_but_a_bad_statement_is_a_bug(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    with (
        pytest.raises(sa.exc.OperationalError, match="no such table"),  # a bug, not a 503
        store.connect() as conn,
    ):
        conn.execute(sa.text("SELECT * FROM nowhere"))
    store.close()
    blocked = f"sqlite:///{sqlite_url.split('///')[1]}/nested/store.db"  # its folder is a file
    with pytest.raises(StoreUnavailableError, match="cannot create the store's folder"):
        open_store(blocked, create=True)
