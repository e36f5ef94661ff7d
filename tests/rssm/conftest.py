"""Fixtures for the RSSM tests: a micro preset and a small learnable synthetic world."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from beliefscope.replay.base import Episode, EpisodeRef
from beliefscope.rssm.presets import Preset

MICRO = replace(Preset(), name="micro", depth=4, deter=32, hidden=32, groups=4, classes=4, units=32)
"""Every layer of the real model, at sizes that train in well under a second per update."""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the CI machine has 2 cores shared by parallel test workers


def square_world(episodes: int, length: int, seed: int = 0, size: int = 16) -> list[Episode]:
    """A 3x3 bright square pushed around a dark frame by 2-D actions; reward = its x in [0, 1].

    Everything but the start position follows from the actions, so a model can learn it.
    """
    rng = np.random.default_rng(seed)
    out = []
    for e in range(episodes):
        pos = rng.integers(0, size - 3, size=2).astype(np.float64)
        image = np.zeros((length, size, size, 3), np.uint8)
        action = rng.uniform(-1, 1, size=(length, 2)).astype(np.float32)
        action[0] = 0.0
        reward = np.zeros(length, np.float32)
        for t in range(length):
            pos = np.clip(pos + 2 * action[t], 0, size - 3)
            y, x = np.round(pos).astype(int)
            image[t, y : y + 3, x : x + 3] = (250, 200, 40)
            reward[t] = 0.0 if t == 0 else x / (size - 3)
        is_first = np.zeros(length, bool)
        is_first[0] = True
        is_last = np.zeros(length, bool)
        is_last[-1] = True
        ref = EpisodeRef("synthetic", Path(f"synthetic/ep{e}.npz"), f"ep{e}", length)
        out.append(Episode(ref, image, action, reward, is_first, is_last, is_last.copy()))
    return out


def write_replay(root: Path, episodes: list[Episode]) -> Path:
    """Write episodes as a `beliefscope` replay directory (the world's own format), as files.

    That format stores `action[t]` as chosen after obs t, so the canonical actions shift back.
    """
    root.mkdir(parents=True, exist_ok=True)
    for i, ep in enumerate(episodes):
        chosen_after = np.zeros_like(ep.action)
        chosen_after[:-1] = ep.action[1:]
        steps = ep.length
        np.savez(
            root / f"20260101T000000-{i:032x}-{steps}.npz",
            image=ep.image,
            action=chosen_after,
            reward=ep.reward,
            is_first=ep.is_first,
            is_last=ep.is_last,
            is_terminal=ep.is_terminal,
            qpos=np.zeros((steps, 2)),
            qvel=np.zeros((steps, 2)),
            visible_frac=np.ones(steps, np.float32),
            occluded=np.zeros(steps, bool),
            slip=np.zeros(steps, bool),
        )
    return root
