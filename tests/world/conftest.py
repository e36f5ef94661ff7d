"""A small generated world shared by the world tests (three episodes: one of each kind)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from beliefscope.world.generate import Generator, WorldConfig


@dataclass
class GeneratedWorld:
    root: Path
    episodes: list[tuple[Path, dict[str, np.ndarray], str]]  # (file, arrays, kind)

    def of_kind(self, kind: str) -> list[dict[str, np.ndarray]]:
        return [arrays for _, arrays, k in self.episodes if k == kind]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> GeneratedWorld:
    root = tmp_path_factory.mktemp("world")
    generator = Generator(root, WorldConfig(seed=5, length=100))
    try:
        episodes = list(generator.episodes(3))
    finally:
        generator.close()
    return GeneratedWorld(root, episodes)
