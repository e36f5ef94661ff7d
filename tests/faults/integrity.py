"""What "nothing lost, nothing doubled" means for a store, checked straight in SQL."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from beliefscope.store.engine import open_store

_TRACES = sa.text(
    """
    SELECT tr.checkpoint_id, tr.episode_id, tr.probe, tr.posterior, tr.length,
           COUNT(s.t) AS step_rows, COUNT(DISTINCT s.t) AS distinct_t,
           COALESCE(MIN(s.t), 0) AS first_t, COALESCE(MAX(s.t), -1) AS last_t
    FROM traces tr LEFT JOIN steps s ON s.trace_id = tr.id
    GROUP BY tr.id, tr.checkpoint_id, tr.episode_id, tr.probe, tr.posterior, tr.length
    """
)
_ORPHAN_STEPS = sa.text("SELECT COUNT(*) FROM steps WHERE trace_id NOT IN (SELECT id FROM traces)")
_ARRAYLESS = sa.text(
    "SELECT COUNT(*) FROM traces WHERE id NOT IN (SELECT trace_id FROM trace_arrays)"
)
_ROWS = ("runs", "checkpoints", "episodes", "traces", "steps", "trace_arrays")


@dataclass(frozen=True)
class Census:
    keys: list[tuple[int, int, str, str]]
    """(checkpoint, episode, probe, posterior) of every trace."""
    partial: list[tuple[int, int, str, str]]
    """Traces whose step rows are not exactly t = 0..length-1."""
    orphan_steps: int
    arrayless: int

    @property
    def duplicates(self) -> int:
        return len(self.keys) - len(set(self.keys))


def census(url: str) -> Census:
    store = open_store(url)
    try:
        with store.connect() as conn:
            rows = conn.execute(_TRACES).all()
            orphans = int(conn.execute(_ORPHAN_STEPS).scalar_one())
            arrayless = int(conn.execute(_ARRAYLESS).scalar_one())
    finally:
        store.close()
    keys = [(r.checkpoint_id, r.episode_id, r.probe, r.posterior) for r in rows]
    partial = [
        (r.checkpoint_id, r.episode_id, r.probe, r.posterior)
        for r in rows
        if not (
            r.step_rows == r.distinct_t == r.length and (r.first_t, r.last_t) == (0, r.length - 1)
        )
    ]
    return Census(keys, partial, orphans, arrayless)


def assert_complete_once(url: str, expected: int) -> Census:
    """Exactly `expected` traces, each stored once and whole (every step row, its arrays)."""
    found = census(url)
    assert found.duplicates == 0, f"{found.duplicates} duplicate traces"
    assert not found.partial, f"partial traces: {found.partial[:5]}"
    assert found.orphan_steps == 0, f"{found.orphan_steps} step rows without a trace"
    assert found.arrayless == 0, f"{found.arrayless} traces without their arrays"
    assert len(found.keys) == expected, f"{len(found.keys)} traces, expected {expected}"
    return found


def row_counts(url: str) -> dict[str, int]:
    """Rows of every data table (not jobs: a failed ingest rightly records its errors)."""
    store = open_store(url)
    try:
        with store.connect() as conn:
            return {
                table: int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
                for table in _ROWS
            }
    finally:
        store.close()
