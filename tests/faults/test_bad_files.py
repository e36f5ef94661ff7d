"""A corpus of 20+ hostile and broken files: each is refused with a clear one-line error that
names it, no code it carries runs, and the store is left exactly as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

from beliefscope.store.engine import open_store
from tests.builders import ingest_run
from tests.faults.corpus import build_checkpoints, build_episodes, count_pickle_payloads
from tests.faults.integrity import assert_complete_once, row_counts


def test_each_bad_file_is_refused_clearly_and_changes_nothing(
    store_url: str, world: Path, run_dir: Path, tmp_path: Path
) -> None:
    assert count_pickle_payloads() == 1, "the payload must really run code when unpickled"
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    good = ingest_run(store_url, run, world, run_name="corpus")
    assert good.errors == [] and good.written == 8
    before = row_counts(store_url)

    marker = tmp_path / "marker"
    outside = tmp_path / "outside"
    bad = build_episodes(tmp_path / "bad", world, outside, marker)
    bad += build_checkpoints(run, outside, marker)
    assert len(bad) >= 20

    report = ingest_run(store_url, run, tmp_path / "bad", run_name="corpus")
    assert not marker.exists(), "a pickle payload ran"
    assert report.written == 0
    assert row_counts(store_url) == before
    assert_complete_once(store_url, 8)

    errors = open_store(store_url).queries.list_job_errors(job_id=report.job_id, limit=1000).items
    missing = []
    for entry in bad:
        name = entry.path.name.encode("utf-8", "surrogateescape").decode(
            "utf-8", "backslashreplace"
        )
        found = [e for e in errors if name in f"{e.file} {e.reason}"]
        if not found:
            missing.append(entry.name)
            continue
        reason = found[0].reason
        assert "\n" not in reason, f"{entry.name}: not one line: {reason!r}"
        assert entry.expect.lower() in reason.lower(), f"{entry.name}: {reason!r}"
    assert not missing, f"no error for {missing}; errors: {[e.reason for e in errors]}"
