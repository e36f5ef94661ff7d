"""A full disk during ingest, on SQLite and PostgreSQL: a real filesystem that runs out.

The store lives on a small tmpfs the test mounts (SQLite: the database and its WAL;
PostgreSQL: a tablespace holding the test database), sized to a little more than the empty
store, so ingest hits ENOSPC part-way. Expected: the ingest stops with a clear
`StoreFullError`, the store stays readable and consistent (whole traces only, integrity check
ok), and the same ingest completes once the filesystem is grown again ("space returns").
Mounting needs root (CI and the development machines run the suite as root): without it the
test fails with the reason, it is never skipped.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from beliefscope.errors import StoreFullError
from beliefscope.store.engine import open_store, upgrade
from ingest.request import IngestRequest
from ingest.watch import watch
from tests.builders import ingest_run
from tests.faults.integrity import assert_complete_once, census

VARIANTS = ("filter", "delay:1", "delay:2", "dropout:5-15")
EXPECTED = 2 * 4 * len(VARIANTS)  # checkpoints x episodes x variants
ROOM = 160 * 1024
"""Free space left after the empty store: a few traces' worth, far from all of them."""


class Tmpfs:
    """A tmpfs mounted at `path` that can be resized while in use."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: int) -> None:
        _mount("-o", f"remount,size={size}", "tmpfs", str(self.path))

    def used(self) -> int:
        stat = os.statvfs(self.path)
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"this test mounts a small tmpfs (needs root): mount {' '.join(args)}: "
                    f"{done.stderr.strip()}")  # fmt: skip


@contextmanager
def tmpfs(path: Path, *, owner: int | None = None) -> Iterator[Tmpfs]:
    path.mkdir(parents=True, exist_ok=True)
    options = "size=64m,mode=0700" + (f",uid={owner},gid={owner}" if owner is not None else "")
    _mount("-t", "tmpfs", "-o", options, "tmpfs", str(path))
    try:
        yield Tmpfs(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


def _ingest_until_full(url: str, fs: Tmpfs, run_dir: Path, world: Path) -> None:
    fs.resize(fs.used() + ROOM)
    with pytest.raises(StoreFullError, match="out of space.*run the command again") as err:
        ingest_run(url, run_dir, world, variants=VARIANTS)
    assert "Traceback" not in str(err.value)
    partway = census(url)  # readable, whole traces only
    assert 0 < len(partway.keys) < EXPECTED and not partway.partial and not partway.duplicates
    fs.resize(64 << 20)  # space returns
    report = ingest_run(url, run_dir, world, variants=VARIANTS)
    assert not report.errors and report.skipped == len(partway.keys)
    assert_complete_once(url, EXPECTED)


def test_sqlite_on_a_full_disk(tmp_path: Path, run_dir: Path, world: Path) -> None:
    with tmpfs(tmp_path / "small") as fs:
        url = f"sqlite:///{fs.path / 'store.db'}"
        upgrade(url)
        _ingest_until_full(url, fs, run_dir, world)
        store = open_store(url)
        try:
            with store.connect() as conn:
                assert conn.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
        finally:
            store.close()


def test_a_watcher_waits_out_a_full_disk(
    tmp_path: Path, run_dir: Path, world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tmpfs(tmp_path / "small") as fs:
        url = f"sqlite:///{fs.path / 'store.db'}"
        upgrade(url)
        fs.resize(fs.used() + ROOM)
        stop = threading.Event()
        request = IngestRequest(logdir=run_dir, replay=(world,), variants=VARIANTS)
        watcher = threading.Thread(
            target=watch, args=(request, url), kwargs={"interval": 0.2, "stop": stop}
        )
        watcher.start()
        try:
            said = ""
            deadline = time.monotonic() + 120
            while "is out of space" not in said and time.monotonic() < deadline:
                said += capsys.readouterr().out
                time.sleep(0.1)
            assert "trying again in 0.2 s" in said and watcher.is_alive()
            fs.resize(64 << 20)  # space returns: the running watcher completes the run
            while len(census(url).keys) < EXPECTED and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop.set()
            watcher.join()
        assert_complete_once(url, EXPECTED)


def test_postgresql_on_a_full_disk(
    tmp_path: Path, pg_server: str, run_dir: Path, world: Path
) -> None:
    admin = sa.make_url(pg_server).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        owner = os.stat(data_dir).st_uid  # the server's own user must own its tablespace
        name = f"bs_full_{os.getpid()}"
        # outside pytest's private tmp folder: the server's user must reach the mount point
        with tmpfs(Path(tempfile.mkdtemp(prefix="bs-full-")), owner=owner) as fs:
            conn.execute(f"CREATE TABLESPACE {name} LOCATION '{fs.path}'")
            try:
                conn.execute(f"CREATE DATABASE {name} TABLESPACE {name}")
                try:
                    url = str(sa.make_url(pg_server).set(database=name).render_as_string(False))
                    upgrade(url)
                    _ingest_until_full(url, fs, run_dir, world)
                finally:
                    conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            finally:
                conn.execute(f"DROP TABLESPACE {name}")
