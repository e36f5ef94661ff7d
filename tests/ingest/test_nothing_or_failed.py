"""Ingests that find nothing or fail, as a user meets them through `beliefscope ingest`:
nothing stored for a log dir without checkpoints or episodes, a failed one stored as failed with
the user's own path in its error and removable, flags per checkpoint as it lands, progress in
the plan's terms."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from beliefscope.cli import main
from beliefscope.review.service import ReviewService
from beliefscope.store.engine import open_store
from ingest.request import IngestRequest
from ingest.service import Ingestor
from tests.families.conftest import TORCH_DIR


def _nothing_stored(url: str) -> None:
    store = open_store(url)
    try:
        assert store.queries.list_runs().total == 0
        assert store.queries.list_jobs().total == 0
    finally:
        store.close()


def test_a_log_dir_without_checkpoints_stores_nothing_and_says_what_was_searched(
    sqlite_url: str, world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logdir = tmp_path / "eponly"
    shutil.copytree(world, logdir / "replay")
    assert main(["ingest", str(logdir), "--store", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert f"{logdir}: no checkpoints found; searched every folder below it for" in err
    for pattern in ("native: ckpt-<step>.safetensors", "dreamerv3-torch: latest.pt", "torchrl:"):
        assert pattern in err
    _nothing_stored(sqlite_url)


def test_a_log_dir_without_episodes_stores_nothing_and_says_what_was_searched(
    sqlite_url: str, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(run_dir), "--store", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir}: no episodes found; looked up to 4 folders deep for" in err
    assert "beliefscope: world.json" in err and "dreamerv3-chunks: <time>-<uuid>-<succ>" in err
    _nothing_stored(sqlite_url)


def test_an_empty_replay_dir_names_its_format_and_patterns(
    sqlite_url: str, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = tmp_path / "train_eps"
    replay.mkdir()
    assert main(["ingest", str(run_dir), "--replay", str(replay), "--store", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert f"{replay}: no known replay format recognised (looked for beliefscope:" in err
    assert "torchrl-rollouts: TensorDict memmap folders" in err
    _nothing_stored(sqlite_url)


def test_a_wrong_format_stores_nothing(
    sqlite_url: str, world: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(run_dir), "--replay", str(world), "--store", sqlite_url]
    assert main(["ingest", *args, "--format", "dreamerv3-torch"]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir}: no checkpoints found; searched every folder below it for " in err
    assert "for dreamerv3-torch: latest.pt (--format" in err and "native:" not in err
    assert "(--format dreamerv3-torch given: only that format)" in err
    assert main(["ingest", *args, "--format", "warp"]) == 2
    assert "unknown checkpoint format 'warp'" in capsys.readouterr().err
    _nothing_stored(sqlite_url)


def test_a_truncated_latest_pt_fails_under_the_users_path_and_can_be_deleted(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logdir = tmp_path / "wrongly-copied"
    (logdir / "train_eps").mkdir(parents=True)
    (logdir / "latest.pt").write_bytes((TORCH_DIR / "latest.pt").read_bytes()[:4096])
    for episode in (TORCH_DIR / "episodes").glob("*.npz"):
        shutil.copy(episode, logdir / "train_eps")
    assert main(["ingest", str(logdir), "--store", sqlite_url]) == 1
    out = capsys.readouterr().out
    assert f"error: {logdir / 'latest.pt'}: cannot load with torch.load" in out
    assert "snapshots" not in out
    assert "runs delete wrongly-copied" in out

    store = open_store(sqlite_url)
    try:
        run = store.queries.find_run(name="wrongly-copied")
        (job,) = store.queries.list_jobs(run_id=run.id).items
        assert job.state == "failed" and run.latest_job_state == "failed"
        assert job.message.startswith(f"nothing ingested: {logdir / 'latest.pt'}: cannot load")
        assert all(
            "snapshots" not in e.reason for e in store.queries.list_job_errors(job_id=job.id).items
        )
    finally:
        store.close()
    assert main(["runs", "list", "--store", sqlite_url]) == 0
    listed = capsys.readouterr().out
    assert (
        "wrongly-copied\t0 checkpoints\t0 episodes\t0 traces\tfailed: nothing ingested:" in listed
    )
    assert main(["runs", "delete", "wrongly-copied", "--store", sqlite_url]) == 0
    assert "run 'wrongly-copied' deleted" in capsys.readouterr().out
    _nothing_stored(sqlite_url)
    assert main(["runs", "delete", "wrongly-copied", "--store", sqlite_url]) == 2
    assert "no run named 'wrongly-copied'" in capsys.readouterr().err


class Watching:
    """A progress sink that looks at the store each time a unit is reported, as the Runs page
    would: flags of each checkpoint, and the job's progress in the plan's terms."""

    def __init__(self, url: str) -> None:
        self.store = open_store(url)
        self.seen: list[tuple[dict[int, int], dict[int, int], tuple[int, int, int]]] = []
        self.job_id = 0

    def start(self, total: int) -> None:
        assert total == 2 * 4

    def advance(self, units: int, description: str) -> None:
        q, reviews = self.store.queries, self.store.reviews
        (run,) = q.list_runs().items
        ckpts = q.list_checkpoints(run_id=run.id).items
        traces = {c.id: c.n_traces for c in ckpts}
        flags = {c.id: reviews.list_flags(checkpoint_id=c.id, limit=1).total for c in ckpts}
        job = q.get_job(job_id=self.job_id)
        self.seen.append(
            (traces, flags, (job.checkpoints_done, job.checkpoints_total, job.episodes_total))
        )


def test_flags_appear_as_each_checkpoint_lands_and_progress_counts_checkpoints(
    sqlite_url: str, world: Path, run_dir: Path
) -> None:
    store = open_store(sqlite_url)
    service = ReviewService(store)
    service.ensure_default_rules()
    # a rule that flags every trace, so "this checkpoint has flags" is a certain signal
    service.set_rule(
        name="all", changes={"metric": "kl", "mode": "absolute", "threshold": "-1"}, who="tests"
    )
    request = IngestRequest(logdir=run_dir, replay=(world,), batch_size=2)  # 2 units/checkpoint
    ingestor = Ingestor(store, request)
    watching = Watching(sqlite_url)
    watching.job_id = ingestor.submit(started_by="tests").id
    report = ingestor.run(watching.job_id, watching)
    assert report.written == 8 and not report.failed
    # newest checkpoint first: when the older one's first unit is reported, the newer one is
    # complete and flagged, the older one has traces and no flags yet
    traces, flags, progress = watching.seen[2]
    newer, older = sorted(traces, key=lambda c: -traces[c])
    assert traces[newer] == 4 and traces[older] == 2
    assert flags[newer] >= 4 and flags[older] == 0
    assert progress == (1, 2, 4)
    job = store.queries.get_job(job_id=watching.job_id)
    assert (job.checkpoints_done, job.checkpoints_total, job.episodes_total) == (2, 2, 4)
    assert job.progress() == "done"
    # applying every rule again over the whole run changes nothing: per checkpoint is complete
    for result in service.apply_rules(who="tests"):
        assert (result.created, result.deleted, result.stale) == (0, 0, 0), result
    watching.store.close()
    store.close()
