"""The audit through every family's loader and replay reader, on their fixtures.

The fixtures' own models are barely trained (dreamerv3-torch: 50 updates; official DreamerV3:
316; TorchRL: random weights), so the checks that need a model which predicts something must
say inconclusive, with the reason, and never pass or fail on that model's say-so: not on the
clean replay, and not on a corrupted one either. The KL semantics check reads each family's
recorded config.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from beliefscope.replay.base import get_format
from beliefscope.rssm.formats import CheckpointRef, discover, load
from beliefscope.rssm.native import NativeWorldModel
from ingest.audit import audit
from ingest.audit.semantics import kl_semantics
from ingest.sources import list_episodes, replay_dirs
from tests.audit.conftest import read
from tests.audit.corrupt import CORRUPTIONS, EXPECTED, corrupted_copy
from tests.families.conftest import OFFICIAL_DIR, TORCH_DIR
from tests.families.test_torchrl import make_net, make_rollout, save_log_dir

NEEDS_A_MODEL = (
    "action_alignment",
    "reset_alignment",
    "reward_alignment",
    "observation_convention",
    "no_memory",
)


def _log_dir_audit(logdir: Path, **kwargs: object):  # noqa: ANN202 - AuditReport
    (ref,) = discover(logdir)
    episodes = [get_format(r.format).load(r) for r in list_episodes(replay_dirs(logdir))]
    return audit(load(ref), episodes), episodes


def test_dreamerv3_torch_fixture_says_inconclusive_not_pass(tmp_path: Path) -> None:
    model = load(CheckpointRef("dreamerv3-torch", TORCH_DIR / "latest.pt", None))
    for case in (None, "actions shifted by one", "channels reversed", "rewards shifted by one"):
        corruption = CORRUPTIONS[case] if case else None
        replay = corrupted_copy(TORCH_DIR / "episodes", tmp_path / str(case), corruption)
        report = audit(model, read(replay))
        verdicts = {c.name: c.status for c in report.checks}
        assert "fail" not in verdicts.values(), (case, verdicts)
        assert all(verdicts[n] == "inconclusive" for n in NEEDS_A_MODEL), (case, verdicts)
        if case:
            found = report.check(EXPECTED[case][0])
            assert "explains only" in found.finding or "hardly" in found.finding, found.finding
    semantics = report.check("kl_semantics")
    assert semantics.status == "pass"
    assert semantics.numbers["recorded"] == {
        "kl_free": 1.0,
        "dyn_scale": 0.5,
        "rep_scale": 0.1,
        "unimix_ratio": 0.01,
    }


def test_official_dreamerv3_fixture_through_its_chunk_reader(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    for name in ("ckpt", "replay"):
        shutil.copytree(OFFICIAL_DIR / name, logdir / name)
    shutil.copy(OFFICIAL_DIR / "config.yaml", logdir)
    report, episodes = _log_dir_audit(logdir)
    assert {e.ref.format for e in episodes} == {"dreamerv3-chunks"}
    verdicts = {c.name: c.status for c in report.checks}
    assert report.family == "dreamerv3" and "fail" not in verdicts.values(), verdicts
    semantics = report.check("kl_semantics")
    assert semantics.status == "pass"
    assert semantics.numbers["recorded"]["agent.loss_scales.dyn"] == 1.0


def test_torchrl_world_model_with_short_rollouts(tmp_path: Path) -> None:
    logdir = save_log_dir(tmp_path / "run", make_net("gru"), make_rollout())
    report, episodes = _log_dir_audit(logdir)
    assert report.family == "torchrl" and len(report.checks) == 8
    assert "fewer than the 20" in report.check("action_alignment").finding
    semantics = report.check("kl_semantics")
    assert semantics.numbers["recorded"]["loss.kl_mode"] == "separate"
    assert semantics.status == "warn" and "balanced" in semantics.finding


def test_a_reward_head_that_predicts_nothing_is_inconclusive(
    world: Path, demo_model: NativeWorldModel, tmp_path: Path
) -> None:
    """The demo model with its reward head reset to its initial (zero) output layer: shifted
    rewards cannot show, and the check says why instead of passing."""
    weak = copy.deepcopy(demo_model)
    with torch.no_grad():
        for p in weak.reward_head.net[-1].parameters():
            p.zero_()
    replay = corrupted_copy(world, tmp_path / "replay", CORRUPTIONS["rewards shifted by one"])
    check = audit(weak, read(replay)).check("reward_alignment")
    assert check.status == "inconclusive"
    assert "explains only 0%" in check.finding


def test_kl_semantics_warns_on_a_changed_free_nats(demo_model: NativeWorldModel) -> None:
    changed = copy.deepcopy(demo_model)
    changed.spec = replace(changed.spec, free_nats=3.0)
    check = kl_semantics(changed)
    assert check.status == "warn"
    assert "free_nats = 3.0 where the reference uses 1.0" in check.finding
