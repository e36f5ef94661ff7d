"""`beliefscope probe ...` end to end: world episodes, a briefly trained model, a real store."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from beliefscope.cli import main
from beliefscope.store.engine import open_store
from ingest.probes_cli import decode_split
from ingest.stored import load_episode
from tests.builders import make_run, make_world


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    world = make_world(root / "run" / "replay", episodes=4, length=30, seed=6)
    make_run(root / "run", world, steps=2, save_every=2)
    return root / "run"


def test_probe_dropout_openloop_and_decode(run_dir: Path, sqlite_url: str, capsys) -> None:
    base = [str(run_dir), "--store", sqlite_url, "--run-name", "r", "--threads", "1"]
    assert main(["probe", "dropout", *base, "--window", "5-15", "--control"]) == 0
    out = capsys.readouterr().out
    assert "dropout:5-15" in out and "ablated memory" in out
    store = open_store(sqlite_url)
    (ckpt,) = store.queries.list_checkpoints(run_id=store.queries.find_run(name="r").id).items
    variants = {t.variant for t in store.queries.list_traces(checkpoint_id=ckpt.id).items}
    assert variants == {"filter", "dropout:5-15"}
    summary = store.reviews.get_probe_summary(checkpoint_id=ckpt.id, probe="dropout:5-15")
    assert summary["episodes"] == 4 and summary["gap_steps"] == 10
    assert np.isfinite(summary["resume_correction"]) and "control" in summary

    assert main(["probe", "openloop", *base, "--horizon", "4", "--stride", "3"]) == 0
    curve = store.reviews.get_probe_summary(checkpoint_id=ckpt.id, probe="openloop")
    assert curve["horizon"] == [1, 2, 3, 4] and min(curve["count"]) > 0

    assert main(["probe", "decode", *base, "--samples", "3", "--future", "4"]) == 0
    decode = store.reviews.get_probe_summary(checkpoint_id=ckpt.id, probe="decode")
    assert len(decode["train_episodes"]) == 2 and np.isfinite(decode["visible_error"])
    trace = store.queries.list_traces(checkpoint_id=ckpt.id, variant="decode").items[0]
    extras = {"extra:decoded_pos", "extra:decoded_prior_pos", "extra:futures_mean"}
    assert extras | {"extra:futures_spread"} <= set(trace.arrays)
    assert "belief_jump" in trace.metrics
    pos = store.queries.read_array(trace_id=trace.id, name="extra:decoded_pos")
    prior = store.queries.read_array(trace_id=trace.id, name="extra:decoded_prior_pos")
    jump = store.queries.read_trace(trace_id=trace.id, metrics=["belief_jump"]).series
    np.testing.assert_allclose(
        jump["belief_jump"].values, np.linalg.norm(pos.values - prior.values, axis=1), atol=1e-5
    )
    assert pos.values.shape == (30, 2)
    for key in ("plain_error", "slip_error", "last_seen_slip_error"):
        assert len(decode[key]) == len(decode["since_occlusion"])
    assert decode["mean_baseline_error"] > 0 and decode["fit"] == "known"

    assert main(["probe", "dropout", *base, "--window", "9-3"]) == 2
    assert "A < B" in capsys.readouterr().err
    store.close()


def test_a_fraction_split_tests_on_occlusions_whatever_the_episode_order(
    run_dir: Path, sqlite_url: str
) -> None:
    """Where the checkpoint trained on every episode, the --train-frac split takes its share
    of the episodes with hidden steps, so the held-out side has occlusions to report on in
    any store order (fingerprints, and so orders, follow the renderer's pixels)."""
    assert main(["ingest", str(run_dir), "--store", sqlite_url, "--threads", "1"]) == 0
    store = open_store(sqlite_url)
    (run,) = store.queries.list_runs().items
    (ckpt,) = store.queries.list_checkpoints(run_id=run.id).items
    infos = store.queries.list_episodes(run_id=run.id).items
    episodes = [load_episode(e) for e in infos]
    hidden = {e.key for e, ep in zip(infos, episodes, strict=True) if ep.truth["occluded"].any()}
    assert len(hidden) >= 2 and len(infos) - len(hidden) >= 2
    splits = set()
    for order in itertools.permutations(range(len(infos))):
        fit, test = decode_split(ckpt, [infos[i] for i in order], [episodes[i] for i in order], 0.5)
        fit_keys = {infos[order[i]].key for i in fit}
        test_keys = {infos[order[i]].key for i in test}
        assert len(fit_keys) == len(test_keys) == len(infos) // 2
        assert fit_keys & hidden and test_keys & hidden
        splits.add(frozenset(test_keys))
    assert len(splits) == 1  # the same split in every order
    store.close()


def test_decode_fits_on_the_episodes_the_checkpoint_trained_on(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A checkpoint that records its training episodes gets its probe fit on exactly those
    and tested on the rest, whatever --train-frac says."""
    trained_on = make_world(tmp_path / "train", episodes=3, length=30, seed=8)
    make_run(tmp_path / "run", trained_on, steps=2, save_every=2)
    replay = make_world(tmp_path / "run" / "replay", episodes=6, length=30, seed=8)  # 3 more
    args = [str(tmp_path / "run"), "--store", sqlite_url, "--run-name", "t", "--threads", "1"]
    assert main(["probe", "decode", *args, "--replay", str(replay), "--samples", "2",
                 "--future", "2", "--train-frac", "0.5"]) == 0  # fmt: skip
    store = open_store(sqlite_url)
    run_id = store.queries.find_run(name="t").id
    (ckpt,) = store.queries.list_checkpoints(run_id=run_id).items
    decode = store.reviews.get_probe_summary(checkpoint_id=ckpt.id, probe="decode")
    trained = set(ckpt.config["train_episodes"])
    episodes = store.queries.list_episodes(run_id=run_id).items
    fit = {e.key for e in episodes if e.fingerprint in trained}
    assert len(trained) == 3 and len(fit) == 3
    assert set(decode["train_episodes"]) == fit
    assert set(decode["test_episodes"]) == {e.key for e in episodes} - fit
    store.close()
