"""`beliefscope demo --quick`: the whole pipeline on a small world, then it exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from beliefscope.access import Authorizer
from beliefscope.access.policy import Presented
from beliefscope.cli import main
from beliefscope.cli.demo import ASSETS, DROPOUT, DROPOUT_EPISODES, LIVE_RUN, PRETRAINED_RUN
from beliefscope.config import Settings
from beliefscope.store.engine import open_store


def test_shipped_checkpoints_load() -> None:
    from beliefscope.rssm import formats

    refs = formats.discover(ASSETS)
    assert len(refs) >= 2
    for ref in refs:
        model = formats.load(ref)
        assert model.spec.family == "native" and model.spec.image_shape == (64, 64, 3)


def test_quick_demo_ingests_flags_and_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "beliefscope.cli", "demo", "--quick", "--home", str(home)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    store = open_store(f"sqlite:///{home / 'beliefscope.db'}")
    runs = {r.name: r for r in store.queries.list_runs().items}
    assert set(runs) == {PRETRAINED_RUN, LIVE_RUN}
    for run in runs.values():
        assert run.n_checkpoints == 2 and run.n_episodes == 4
        variants = 2 if run.name == PRETRAINED_RUN else 1  # filter, and decode where probed
        dropout = DROPOUT_EPISODES * run.n_checkpoints if run.name == PRETRAINED_RUN else 0
        assert run.n_traces == variants * run.n_checkpoints * run.n_episodes + dropout
        scores = store.reviews.list_scores(run_id=run.id)
        assert len(scores) == 2 and all(s.score.episodes == 4 for s in scores)
    pretrained = store.queries.list_checkpoints(run_id=runs[PRETRAINED_RUN].id).items
    for ckpt in pretrained:
        decode = store.reviews.get_probe_summary(checkpoint_id=ckpt.id, probe="decode")
        assert len(decode["plain_error"]) == len(decode["since_occlusion"]) > 0
        held = store.queries.list_traces(checkpoint_id=ckpt.id, variant=DROPOUT).items
        assert len(held) == DROPOUT_EPISODES  # the variant selector has something to show
    assert {i.rule.metric for i in store.reviews.list_rules()} >= {"kl", "correction"}
    assert "slip recall" in proc.stdout and "belief probe" in proc.stdout
    # it says which store it uses and the exact command for a token the dashboard accepts
    url = store.url
    command = f"beliefscope token create NAME --store {url}"
    assert f"demo: store {url};" in proc.stdout and command in proc.stdout
    assert main(command.replace("NAME", "alice").split()[1:]) == 0
    secret = capsys.readouterr().out.splitlines()[0]
    access = Authorizer(store, Settings(store=url, home=home))
    who = access.identify(Presented(f"Bearer {secret}", None, None, "127.0.0.1"))
    assert who is not None and who.name == "alice"
    # a second run reuses the world and the trained live run, and ingests nothing new
    again = subprocess.run(
        [sys.executable, "-m", "beliefscope.cli", "demo", "--quick", "--home", str(home)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "already holds a live run" in again.stdout
    assert sum(r.n_traces for r in store.queries.list_runs().items) == 16 + 8 + 8
