"""Stores written by earlier releases, upgraded by `db upgrade` without loss, on both backends.

The fixtures (`tests/fixtures/stores/`, made by `make.py` there with each release's own
code) hold a tiny ingested run, rule flags, a reviewed flag, a manual flag and a token.
After the upgrade every row is still there, every stored step reads back as it was written,
and the reviews and the token survive. A new migration is tested by this file as it is; a
release that changes the schema adds its own fixture.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from beliefscope.cli import main
from beliefscope.errors import SchemaOutOfDateError
from beliefscope.store.engine import Store, create_engine, head_revision, open_store
from tests import pgserver

FIXTURES = Path(__file__).parents[1] / "fixtures" / "stores"
RELEASES = ("0004", "0007")
OLD_METRICS = ("kl", "kl_dyn", "correction", "prior_entropy", "recon_error", "deter_norm")
"""Metrics every release stored (checked value by value)."""


@pytest.fixture(params=[(r, b) for r in RELEASES for b in ("sqlite", "postgresql")], ids=str)
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(revision, URL) of a database loaded from that release's fixture."""
    revision, backend = request.param
    if backend == "sqlite":
        db = tmp_path / "old.db"
        shutil.copyfile(FIXTURES / f"store-{revision}.db", db)
        yield revision, f"sqlite:///{db}"
        return
    with pgserver.fresh_database(request.getfixturevalue("pg_server")) as url:
        libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
        dump = FIXTURES / f"store-{revision}.pg.sql"
        done = subprocess.run(
            ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq, "-f", str(dump)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        yield revision, url


def _facts(url: str) -> tuple[dict[str, int], dict[int, dict[str, np.ndarray]], list[tuple]]:
    """Row counts, every trace's old metrics straight from SQL, and the flags' reviews."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            counts = {
                n: int(conn.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one())
                for n in names
                if n != "alembic_version"
            }
            columns = ", ".join(OLD_METRICS)
            steps: dict[int, dict[str, list[float]]] = {}
            for row in conn.execute(
                sa.text(f"SELECT trace_id, {columns} FROM steps ORDER BY trace_id, t")
            ):
                per = steps.setdefault(row[0], {m: [] for m in OLD_METRICS})
                for m, v in zip(OLD_METRICS, row[1:], strict=True):
                    per[m].append(np.nan if v is None else v)
            flags = [
                tuple(r)
                for r in conn.execute(
                    sa.text("SELECT id, state, notes, t0, t1 FROM flags ORDER BY id")
                )
            ]
    finally:
        engine.dispose()
    arrays = {tid: {m: np.asarray(v) for m, v in per.items()} for tid, per in steps.items()}
    return counts, arrays, flags


def test_an_old_store_upgrades_without_loss(old_store: tuple[str, str], capsys) -> None:
    revision, url = old_store
    counts, steps, flags = _facts(url)
    assert counts["traces"] > 0 and counts["flags"] >= 1 and counts["api_tokens"] == 1
    if revision != head_revision():  # refused until upgraded
        with pytest.raises(SchemaOutOfDateError, match="run `beliefscope db upgrade"):
            open_store(url)

    assert main(["db", "upgrade", "--store", url]) == 0
    said = capsys.readouterr().out
    assert f"store schema: {revision} -> {head_revision()}" in said or revision == head_revision()
    after_counts, after_steps, after_flags = _facts(url)
    assert {n: after_counts[n] for n in counts} == counts  # every row kept
    assert after_flags == flags
    for trace_id, per in steps.items():
        for m in OLD_METRICS:
            np.testing.assert_array_equal(after_steps[trace_id][m], per[m])

    store: Store = open_store(url)
    try:
        assert store.revision() == head_revision()
        for trace in store.queries.list_traces().items:  # read through today's read layer
            read = store.queries.read_trace(trace_id=trace.id, metrics=list(OLD_METRICS)).series
            for m in OLD_METRICS:
                np.testing.assert_allclose(read[m].values, steps[trace.id][m], rtol=0, atol=0)
        confirmed = [f for f in store.reviews.list_flags().items if f.state == "confirmed"]
        assert confirmed and "slip" in confirmed[0].notes
        assert [e.who for e in store.reviews.flag_history(flag_id=confirmed[0].id)][-1] == "alice"
        (token,) = store.access.list_tokens()
        assert token.name == "alice" and token.revoked is None
    finally:
        store.close()
