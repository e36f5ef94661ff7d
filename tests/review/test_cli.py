"""`beliefscope rules` and `beliefscope score` end to end on real occlusion-world episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beliefscope.cli import main
from beliefscope.replay.base import detect_format
from beliefscope.review.rules import DEFAULT_RULES
from beliefscope.review.scoring import reappearances
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
    for rule in DEFAULT_RULES[2:]:
        assert main(["rules", "set", rule.name, "--store", sqlite_url, "--enabled", "no"]) == 0
    assert (
        main(
            ["rules", "set", "bad", "--store", sqlite_url, "--metric", "kl", "--threshold", "lots"]
        )
        == 2
    )
    assert "threshold: 'lots' is not a number" in capsys.readouterr().err
    shipped = [r.name for r in DEFAULT_RULES]
    assert [i.rule.name for i in store.reviews.list_rules()] == sorted([*shipped, "spike"])

    assert main(["rules", "apply", "--store", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert f"spike@1: 6 traces, 480 steps -> {n_slip + n_false} new" in out
    assert main(["rules", "list", "--store", sqlite_url]) == 0
    assert "kl-spike@1 (disabled)" in capsys.readouterr().out

    assert main(["score", "--store", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert "run demo" in out
    (scored,) = store.reviews.list_scores(run_id=run)
    s = scored.score
    assert scored.rules == ("spike@1",) and scored.step == 500
    assert (s.slip_events, s.plain_events, s.flags) == (n_slip, n_events - n_slip, n_slip + n_false)
    assert s.slip_recall == 1.0
    assert s.precision == pytest.approx(n_slip / (n_slip + n_false))
    assert s.slip_auc == 1.0  # 12 after every slip, 4 after every plain reappearance
    assert s.reappearance_recall == pytest.approx(n_slip / n_events)
    store.close()


def test_score_splits_training_and_held_out_episodes_and_unions_every_rules_flags(
    world: Path, sqlite_url: str, capsys
) -> None:
    """The checkpoint says which episodes it trained on (fingerprints); a rule on `decode`
    traces and one on `filter` traces both send the reviewer somewhere: scored as a union."""
    store = open_store(sqlite_url)
    w = store.writer
    fmt = detect_format(world)
    eps = [fmt.load(ref) for ref in fmt.list(world)]
    trained = [ep.fingerprint for ep in eps[:2]]
    run = w.ensure_run("split", logdir=str(world))
    ckpt = w.ensure_checkpoint(
        run, content_hash="c2", format="native", source_path="/c", step=9,
        config={"train_episodes": trained},
    )  # fmt: skip
    slips = []
    for ep in eps:
        events = reappearances(ep.truth["occluded"], ep.truth["slip"])
        kl, jump = np.ones(ep.length), np.zeros(ep.length)
        for event in events:  # kl finds the plain reappearances, the jump the slips
            target = jump if event.slip else kl
            target[event.t : event.t + 2] = 12.0
        slips.append(sum(e.slip for e in events))
        episode = w.ensure_episode(
            run, key=ep.ref.key, format=ep.ref.format, source_path=str(ep.ref.path),
            length=ep.length, has_truth=True, fingerprint=ep.fingerprint,
        )  # fmt: skip
        w.write_trace(ckpt, episode, "filter", "mode", trace_data(kl))
        w.write_trace(ckpt, episode, "decode", "mode", trace_data(kl, belief_jump=jump))
    for name, metric, variant in (("k", "kl", "filter"), ("j", "belief_jump", "decode")):
        args = ["rules", "set", name, "--store", sqlite_url, "--metric", metric, "--mode"]
        assert main([*args, "absolute", "--threshold", "8", "--variant", variant]) == 0
    for rule in DEFAULT_RULES:
        assert main(["rules", "set", rule.name, "--store", sqlite_url, "--enabled", "false"]) == 0
    assert main(["rules", "apply", "--store", sqlite_url]) == 0
    assert main(["score", "--store", sqlite_url, "--run", "split", "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "held-out" in out and " train " in out
    scores = {s.split: s.score for s in store.reviews.list_scores(run_id=run, split=None)}
    assert sorted(scores) == ["all", "held-out", "train"]
    assert (scores["train"].episodes, scores["held-out"].episodes, scores["all"].episodes) == (
        2, len(eps) - 2, len(eps),
    )  # fmt: skip
    assert scores["all"].slip_events == sum(slips)
    assert scores["all"].slip_recall == 1.0 and scores["all"].plain_flagged == 1.0  # the union
    assert scores["all"].slip_precision < 1.0 and "slip_recall" in scores["all"].intervals
    assert main(["score", "--store", sqlite_url, "--run", "split", "--metric", "belief_jump"]) == 0
    (held,) = [s for s in store.reviews.list_scores(run_id=run, split="held-out")]
    assert held.score.slip_auc == 1.0  # the jump, read from the decode traces
    store.close()
