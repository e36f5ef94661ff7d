"""`--metrics belief`: the filter's statistics alone, and a later `--metrics all` that fills in
the rest of the same traces (real world episodes, a trained run, real SQLite and PostgreSQL
stores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beliefscope.cli import main
from beliefscope.store.engine import open_store
from beliefscope.values.traces import METRICS
from ingest.compute import BELIEF_METRICS, ComputeOptions
from ingest.request import IngestRequest
from ingest.service import Ingestor

HEAD_ONLY = ("recon_error", "pred_error", "openloop_error", "reward_pred", "reward_error")


def _ingest(
    run_dir: Path, world: Path, url: str, metrics: str, capsys: pytest.CaptureFixture
) -> str:
    code = main(
        ["ingest", str(run_dir), "--replay", str(world), "--store", url, "--threads", "1",
         "--run-name", "r", "--metrics", metrics]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def _stored(url: str) -> dict[tuple[int, int], tuple[int, dict[str, np.ndarray]]]:
    """(checkpoint, episode) -> (trace id, every stored metric) of run `r`'s filter traces."""
    q = open_store(url).queries
    run = q.find_run(name="r")
    out = {}
    for ck in q.list_checkpoints(run_id=run.id).items:
        for ep in q.list_episodes(run_id=run.id).items:
            tr = q.find_trace(checkpoint_id=ck.id, episode_id=ep.id)
            series = q.read_trace(trace_id=tr.id, metrics=list(METRICS)).series
            out[ck.id, ep.id] = (tr.id, {k: s.values for k, s in series.items()})
    return out


def _pending(run_dir: Path, world: Path, url: str, metrics: str) -> int:
    options = ComputeOptions(metrics=metrics)  # type: ignore[arg-type]
    request = IngestRequest(logdir=run_dir, replay=(world,), run_name="r", options=options)
    return Ingestor(open_store(url), request).pending()


def test_belief_stores_the_filter_metrics_and_all_fills_in_the_rest(
    store_url: str, world: Path, run_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = _ingest(run_dir, world, store_url, "belief", capsys)
    assert "8 traces written, 0 already stored, 0 errors" in out  # 2 checkpoints x 4 episodes
    belief = _stored(store_url)
    assert len(belief) == 8
    for _, metrics in belief.values():
        assert set(metrics) == set(BELIEF_METRICS)
        assert np.isfinite(metrics["kl"]).all() and len(metrics["kl"]) == 40
    assert "0 traces written, 8 already stored" in _ingest(
        run_dir, world, store_url, "belief", capsys
    )
    assert _pending(run_dir, world, store_url, "belief") == 0
    assert _pending(run_dir, world, store_url, "all") == 8  # what `watch --metrics all` sees

    out = _ingest(run_dir, world, store_url, "all", capsys)
    assert "8 traces written, 0 already stored, 0 errors" in out
    full = _stored(store_url)
    assert full.keys() == belief.keys()
    for unit, (trace_id, metrics) in full.items():
        before_id, before = belief[unit]
        assert trace_id == before_id  # filled in place: flags and reviews stay on it
        assert set(metrics) >= set(BELIEF_METRICS) | set(HEAD_ONLY) | {"cont_pred"}
        for name in BELIEF_METRICS:  # the full computation's against the filter's alone
            np.testing.assert_allclose(metrics[name], before[name], atol=1e-6, err_msg=name)
        assert np.isfinite(metrics["recon_error"]).all()
    assert _pending(run_dir, world, store_url, "all") == 0
    for metrics in ("all", "belief"):  # a full trace covers both
        assert "0 traces written, 8 already stored" in _ingest(
            run_dir, world, store_url, metrics, capsys
        )
