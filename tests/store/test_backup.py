"""`beliefscope db backup` / `db restore` on both backends, taken while a writer keeps writing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from beliefscope.cli import main
from beliefscope.errors import BadInputError, StoreUnavailableError
from beliefscope.store import backup
from beliefscope.store.engine import Store, open_store
from tests import pgserver
from tests.store.conftest import Seeded, make_trace

LENGTH = 200


@pytest.fixture
def second_pg_url(pg_server: str) -> Iterator[str]:
    """Another fresh, empty PostgreSQL database (the store under test has the first)."""
    with pgserver.fresh_database(pg_server) as url:
        yield url


def _keep_writing(seeded: Seeded, stop: threading.Event, written: list[int]) -> None:
    """Write one new episode's trace after another until told to stop."""
    w = seeded.store.writer
    while not stop.is_set():
        n = len(written)
        episode = w.ensure_episode(
            seeded.run_id, key=f"live-{n}", format="native", source_path=f"/l/{n}", length=LENGTH
        )
        trace = make_trace(LENGTH, seed=n)
        trace.metrics["kl"][::7] = np.nan  # NaN must survive the round trip
        w.write_trace(seeded.checkpoint_id, episode, "filter", "mode", trace)
        written.append(n)


def test_a_backup_taken_during_writes_restores_verified(
    seeded: Seeded, store_url: str, tmp_path: Path, request: pytest.FixtureRequest, capsys
) -> None:
    stop, written = threading.Event(), []
    writer = threading.Thread(target=_keep_writing, args=(seeded, stop, written))
    writer.start()
    try:
        while len(written) < 3:  # the backup lands in the middle of a stream of writes
            threading.Event().wait(0.05)
        out = tmp_path / "store.backup"
        assert main(["db", "backup", "--store", store_url, "--out", str(out)]) == 0
    finally:
        stop.set()
        writer.join()
    taken = json.loads(backup.manifest_path(out).read_text())
    assert 3 <= taken["tables"]["traces"] <= len(written)
    assert taken["tables"]["steps"] == LENGTH * taken["tables"]["traces"]  # no partial trace

    if seeded.store.backend == "sqlite":
        target = f"sqlite:///{tmp_path / 'new-folder' / 'restored.db'}"
        assert out.read_bytes()[:16] == b"SQLite format 3\x00"
    else:
        target = request.getfixturevalue("second_pg_url")
    capsys.readouterr()
    assert main(["db", "restore", str(out), "--store", target]) == 0
    said = capsys.readouterr().out
    assert "verified: every table's row count and the trace data checksum match" in said
    assert "up to date" in said

    restored = open_store(target)
    try:
        original, copy = _trace_rows(seeded.store), _trace_rows(restored)
        assert copy == original[: len(copy)] and len(copy) == taken["tables"]["traces"]
        trace = restored.queries.list_traces(checkpoint_id=seeded.checkpoint_id).items[0]
        kl = restored.queries.read_trace(trace_id=trace.id, metrics=["kl"]).series["kl"].values
        np.testing.assert_array_equal(np.isnan(kl), np.arange(LENGTH) % 7 == 0)
    finally:
        restored.close()


def _trace_rows(store: Store) -> list[tuple]:
    with store.connect() as conn:
        return [
            tuple(r) for r in conn.execute(sa.text("SELECT id, episode_id FROM traces ORDER BY id"))
        ]


def _summary(store: Store) -> backup.Manifest:
    with store.connect() as conn:
        return backup.summarize(conn)


def test_restore_never_writes_into_a_store_that_holds_data(
    seeded: Seeded, store_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "b"
    backup.backup(seeded.store, out)
    before = _summary(seeded.store)
    with pytest.raises(BadInputError, match="restore into a new, empty store"):
        backup.restore(out, store_url)
    after = _summary(seeded.store)
    assert (after.tables, after.trace_checksum) == (before.tables, before.trace_checksum)
    with pytest.raises(BadInputError, match="backup file exists already"):
        backup.backup(seeded.store, out)


def test_a_manifest_that_disagrees_is_reported_not_verified(
    sqlite_url: str, tmp_path: Path, capsys
) -> None:
    store = open_store(sqlite_url)
    out = tmp_path / "b"
    backup.backup(store, out)
    store.close()
    manifest = json.loads(backup.manifest_path(out).read_text())
    manifest["tables"]["runs"] += 1
    manifest["trace_checksum"] = "0" * 64
    backup.manifest_path(out).write_text(json.dumps(manifest))
    assert main(["db", "restore", str(out), "--store", f"sqlite:///{tmp_path / 'r.db'}"]) == 1
    said = capsys.readouterr().out
    assert "NOT verified" in said and "runs: 0 rows, the backup says 1" in said
    assert "trace data checksum differs" in said


def test_bad_backup_files_are_named_and_wrong_backends_refused(
    sqlite_url: str, second_pg_url: str, tmp_path: Path
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(BadInputError, match="not a Beliefscope backup") as err:
        backup.restore(junk, f"sqlite:///{tmp_path / 'r.db'}")
    assert str(junk) in str(err.value)
    store = open_store(sqlite_url)
    out = tmp_path / "b"
    backup.backup(store, out)
    store.close()
    with pytest.raises(BadInputError, match="a sqlite backup restores into a sqlite store"):
        backup.restore(out, second_pg_url)


def test_postgresql_backup_without_pg_dump_says_what_to_install(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without the client tools
    store = open_store(pg_url)
    try:
        with pytest.raises(
            StoreUnavailableError, match="pg_dump is not installed.*postgresql-client"
        ):
            backup.backup(store, tmp_path / "b")
    finally:
        store.close()
    assert not (tmp_path / "b").exists() and not backup.manifest_path(tmp_path / "b").exists()
