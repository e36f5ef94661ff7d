"""The audit finds real replay bugs and does not cry wolf.

Corrupted copies of real replays (the MuJoCo world, and the same episodes as dreamerv3-torch
writes them) are read back through the product's readers and audited with the newest demo
checkpoint: each corruption must fail its own check and name it, and the clean replay must fail
no check. The reward tests need a trained reward head (the demo checkpoints of
`scripts/make-demo-checkpoints.sh`, `--reward-scale 30`); with a head that predicts nothing the
reward check says inconclusive, never pass (see `test_a_weak_model_says_inconclusive`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from beliefscope.rssm.native import NativeWorldModel
from ingest.audit import audit
from tests.audit.conftest import read
from tests.audit.corrupt import CORRUPTIONS, EXPECTED, corrupted_copy

JUDGED = (
    "action_alignment",
    "reset_alignment",
    "reward_alignment",
    "observation_convention",
    "posterior_collapse",
    "latent_groups",
    "no_memory",
    "kl_semantics",
)
"""The checks a trained demo model can judge on a clean replay: each must pass there."""


def test_clean_replay_passes_every_check(world: Path, demo_model: NativeWorldModel) -> None:
    report = audit(demo_model, read(world))
    verdicts = {c.name: (c.status, c.finding) for c in report.checks}
    assert {n: v for n, v in verdicts.items() if v[0] != "pass"} == {}, verdicts
    assert [c.name for c in report.checks] == list(JUDGED)
    assert report.status == "pass" and report.steps == sum(e.length for e in read(world))


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_each_corruption_fails_its_check_and_names_it(
    case: str, world: Path, demo_model: NativeWorldModel, tmp_path: Path
) -> None:
    copy = corrupted_copy(world, tmp_path / "replay", CORRUPTIONS[case])
    report = audit(demo_model, read(copy))
    name, words = EXPECTED[case]
    check = report.check(name)
    assert check.status == "fail", check.finding
    assert words in (check.corruption or ""), check.corruption
    assert check.where, "a failing check points at the steps that show it"
    assert report.status == "fail"


@pytest.mark.parametrize("case", ["actions shifted by one", "is_first dropped"])
def test_corruptions_are_found_through_the_dreamerv3_torch_reader(
    case: str, torch_replay: Path, demo_model: NativeWorldModel, tmp_path: Path
) -> None:
    copy = corrupted_copy(torch_replay, tmp_path / "replay", CORRUPTIONS[case])
    episodes = read(copy)
    assert {e.ref.format for e in episodes} == {"dreamerv3-torch"}
    name, words = EXPECTED[case]
    check = audit(demo_model, episodes).check(name)
    assert check.status == "fail" and words in (check.corruption or ""), check.finding


def test_root_causes_are_repaired_before_the_other_checks(
    world: Path, demo_model: NativeWorldModel, tmp_path: Path
) -> None:
    """Reversed channels make every frame look strange; the other checks read them repaired
    and say so, instead of failing for the same cause."""
    copy = corrupted_copy(world, tmp_path / "replay", CORRUPTIONS["channels reversed"])
    report = audit(demo_model, read(copy))
    others = [c for c in report.checks if c.name not in ("observation_convention",)]
    assert [c.name for c in others if c.status == "fail"] == []
    assert all(
        c.finding.startswith("With the frames read as channels reversed")
        for c in others
        if c.name != "kl_semantics"
    )
