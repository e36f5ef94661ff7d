"""Real replays for the audit tests, and the demo model that audits them.

The MuJoCo world is generated with a seed the demo model never trained on (it trained on seed
0); the same episodes are also written as NM512/dreamerv3-torch saves episodes, so the
corruptions go through that format's reader too. The model is the newest shipped demo
checkpoint (`server/demo_checkpoints/`), as a user's `beliefscope demo` has it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from beliefscope.replay.base import Episode, detect_format
from beliefscope.rssm.checkpoint import load_checkpoint
from beliefscope.rssm.native import NativeWorldModel
from tests.audit.corrupt import as_dreamerv3_torch
from tests.builders import make_world

DEMO = Path(__file__).resolve().parents[2] / "server" / "demo_checkpoints"
SEED = 1
EPISODES = 16
"""As `beliefscope audit`'s default; the reward check needs that much data to see a lag."""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    found = sorted(DEMO.glob("ckpt-*.safetensors"))
    assert found, f"no demo checkpoints in {DEMO}"
    return found[-1]


@pytest.fixture(scope="session")
def demo_model(demo_checkpoint: Path) -> NativeWorldModel:
    return load_checkpoint(demo_checkpoint)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit") / "world"
    return make_world(out, episodes=EPISODES, length=150, seed=SEED)


@pytest.fixture(scope="session")
def torch_replay(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return as_dreamerv3_torch(world, tmp_path_factory.mktemp("audit") / "dreamerv3-torch")


def read(root: Path) -> list[Episode]:
    """Every episode under a replay directory, through its format's reader."""
    fmt = detect_format(root)
    return [fmt.load(ref) for ref in fmt.list(root)]
