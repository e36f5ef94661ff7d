"""`beliefscope rules` and `beliefscope score` end to end on real occlusion-world episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beliefscope.cli import main
from beliefscope.replay.base import detect_format
from beliefscope.review.scoring import reappearances
from beliefscope.store import review_store as rs
from beliefscope.store.engine import open_store
from tests.builders import make_world
from tests.review.conftest import trace_data


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("world"), episodes=6, length=80, seed=3)


def test_rules_and_score_from_the_cli(world: Path, sqlite_url: str, capsys) -> None:
    store = open_store(sqlite_url)
    w = store.writer
    run = w.ensure_run("demo", logdir=str(world))
    ckpt = w.ensure_checkpoint(run, content_hash="c1", format="native", source_path="/c", step=500)
    fmt = detect_format(world)
    n_slip = n_events = n_false = 0
    for i, ref in enumerate(fmt.list(world)):
        ep = fmt.load(ref)
        kl = np.ones(ep.length)
        for event in reappearances(ep.truth["occluded"], ep.truth["slip"]):
            kl[event.t : event.t + 2] = 12.0 if event.slip else 4.0
            n_slip += event.slip
            n_events += 1
        if i % 3 == 0:  # a false alarm far from any reappearance window
            occ = ep.truth["occluded"]
            quiet = [t for t in range(2, ep.length - 8) if not occ[t - 2 : t + 8].any()]
            kl[quiet[0] : quiet[0] + 2] = 9.0
            n_false += 1
        episode = w.ensure_episode(
            run,
            key=ref.key,
            format=ref.format,
            source_path=str(ref.path),
            length=ep.length,
            has_truth=True,
        )
        w.write_trace(ckpt, episode, "filter", "mode", trace_data(kl))
    assert n_slip >= 1 and n_events > n_slip, (n_slip, n_events)

    assert (
        main(
            [
                "rules",
                "set",
                "spike",
                "--store",
                sqlite_url,
                "--metric",
                "kl",
                "--mode",
                "absolute",
                "--threshold",
                "8",
                "--min-duration",
                "2",
            ]
        )
        == 0
    )
    assert main(["rules", "set", "kl-spike", "--store", sqlite_url, "--enabled", "false"]) == 0
    assert main(["rules", "set", "correction-spike", "--store", sqlite_url, "--enabled", "no"]) == 0
    assert (
        main(
            ["rules", "set", "bad", "--store", sqlite_url, "--metric", "kl", "--threshold", "lots"]
        )
        == 2
    )
    assert "threshold: 'lots' is not a number" in capsys.readouterr().err
    assert [i.rule.name for i in rs.list_rules(store)] == ["correction-spike", "kl-spike", "spike"]

    assert main(["rules", "apply", "--store", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert f"spike@1: 6 traces, 480 steps -> {n_slip + n_false} new" in out
    assert main(["rules", "list", "--store", sqlite_url]) == 0
    assert "kl-spike@1 (disabled)" in capsys.readouterr().out

    assert main(["score", "--store", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert "run demo" in out
    (scored,) = rs.list_scores(store, run_id=run)
    s = scored.score
    assert scored.rules == ("spike@1",) and scored.step == 500
    assert (s.slip_events, s.plain_events, s.flags) == (n_slip, n_events - n_slip, n_slip + n_false)
    assert s.slip_recall == 1.0
    assert s.precision == pytest.approx(n_slip / (n_slip + n_false))
    assert s.slip_auc == 1.0  # 12 after every slip, 4 after every plain reappearance
    assert s.reappearance_recall == pytest.approx(n_slip / n_events)
    store.close()
