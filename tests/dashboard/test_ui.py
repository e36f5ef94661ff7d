"""Names the pages show: short episode names, checkpoints named with their run, and chronic
findings grouped by kind, each naming its checkpoint."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import dash
import pytest

from beliefscope.access import Authorizer
from beliefscope.config import Settings
from beliefscope.review.diagnostics import Finding
from beliefscope.store.engine import open_store
from beliefscope.values.traces import CheckpointInfo, RunInfo
from dashboard import ui
from dashboard.app import create_dash

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def ckpt(i: int, step: int | None) -> CheckpointInfo:
    return CheckpointInfo(i, 1, step, f"{i:07d}abcdef", "native", None, {}, "/c", NOW, 0)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("beliefscope:20261125T083752-50c4c8e3b250417387d26a06084e1b64-150.npz", "50c4c8e3"),
        ("dreamerv3-torch:train_eps/20230101T000000-0123456789abcdef01234567-501.npz", "01234567"),
        (
            "dreamerv3-chunks:replay/20261125T041309F145923-6iE5O9XoXH67Ey8k-5byV-72.npz:3",
            "6iE5O9Xo:3",
        ),
        ("torchrl:rollouts.pt:0:12", "rollouts:0:12"),
        ("ep0", "ep0"),
    ],
)
def test_episode_names_are_short(key: str, name: str) -> None:
    assert ui.episode_name(key) == name
    assert len(ui.episode_name("npz:" + "x" * 80 + ".npz")) <= ui.SHORT_NAME


def test_checkpoints_are_named_with_their_run() -> None:
    run = RunInfo(1, "pretrained-tiny", "/l", None, None, [], NOW, 1, 1, 1, None)
    assert ui.run_ckpt_label(run, ckpt(1, 2000)) == "pretrained-tiny @ 2,000"
    assert ui.run_ckpt_label(run, ckpt(2, None)) == "pretrained-tiny @ 0000002"
    assert ui.step_label(ckpt(2, None)) == "ckpt 0000002"


def test_findings_say_what_they_mean_once_and_name_each_checkpoint(
    sqlite_url: str, tmp_path: Path
) -> None:
    store = open_store(sqlite_url)
    settings = Settings(store=store.url, home=tmp_path)
    create_dash(store, settings, access=Authorizer(store, settings))
    page = next(p for p in dash.page_registry.values() if p["path"] == "/")
    runs = sys.modules[page["module"]]
    meaning = "the dynamics carry little memory between frames"
    findings = [
        Finding("no_memory", i, f"correction stays large for 20+ steps on {s}% of steps: {meaning}")
        for i, s in ((1, 45), (2, 40))
    ]
    (line,) = runs._findings(findings, {1: ckpt(1, 500), 2: ckpt(2, 1000)})
    text = str(line.to_plotly_json())
    assert text.count(meaning) == 1
    assert "step 500" in text and "step 1,000" in text and "45%" in text and "40%" in text
    store.close()
