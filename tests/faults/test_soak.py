"""The soak (issue 17): `beliefscope watch` follows a log dir that receives a new checkpoint every
5 s while 16 readers and 2 reviewers use `beliefscope serve`, for 3 minutes after a warm-up, on
SQLite and on PostgreSQL. Checkpoints are trained before the test and moved into the log dir
one at a time (see `tests/faults/soak.py`). `python bench/soak.py` is the longer version.

Zero failed requests, server RSS growth under 10% from after warm-up to the end, every
checkpoint stored with all its traces and none twice, no ingest errors, no lost notes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.soak import checkpoints_needed, soak, stage

STEADY_S = 180.0
EVERY_S = 5.0
WARMUP_S = 45.0
"""Reads before RSS is first taken: the server's memory settles over about a minute."""
LAG_S = 60.0
"""The longest a checkpoint may wait to be stored whole: the watcher keeps up."""


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, world: Path) -> list[Path]:
    out = tmp_path_factory.mktemp("staged") / "run"
    return stage(out, world, checkpoints_needed(STEADY_S, EVERY_S))


@pytest.mark.slow
@pytest.mark.soak
def test_soak_watch_serve_read_and_review_for_3_minutes(
    store_url: str, world: Path, staged: list[Path], tmp_path: Path
) -> None:
    report = soak(
        store_url,
        world,
        staged,
        tmp_path / "soak",
        steady_s=STEADY_S,
        every_s=EVERY_S,
        warmup_s=WARMUP_S,
    )
    print("\n" + report.summary())
    assert report.steady_s >= STEADY_S, f"ran out of staged checkpoints: {report.summary()}"
    assert report.errors == [], report.errors[:20]
    assert report.requests >= STEADY_S * report.readers / 10, report.summary()
    assert report.reviews > 0 and report.lost_notes == 0, report.summary()
    assert report.rss_growth < 0.10, report.summary()
    assert report.watch_exit == 0, report.watch_log
    assert report.ingest_errors == 0, report.watch_log
    assert (report.duplicate_traces, report.duplicate_checkpoints, report.partial_traces) == (
        0,
        0,
        0,
    ), report.summary()
    assert report.checkpoints_written == checkpoints_needed(STEADY_S, EVERY_S) - 1
    assert report.checkpoints_ingested == report.checkpoints_written, report.summary()
    assert report.traces == report.traces_expected, report.summary()
    assert report.lag_max_s < LAG_S, report.summary()
