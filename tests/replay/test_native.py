"""The project's own episode format: detection, cheap listing, canonical actions, lazy frames,
and clear errors for episodes with wrong keys or shapes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.replay import native
from beliefscope.replay.base import detect_format, get_format
from beliefscope.world.generate import Generator, WorldConfig


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay")
    generator = Generator(root, WorldConfig(seed=2, length=30))
    try:
        list(generator.episodes(3))
    finally:
        generator.close()
    return root


def _copy(replay: Path, tmp_path: Path, manifest: bool = True) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(replay, root)
    if not manifest:
        (root / native.MANIFEST).unlink()
    return root


def test_detected_with_or_without_manifest(replay: Path, tmp_path: Path) -> None:
    assert detect_format(replay).name == "beliefscope"
    assert get_format("beliefscope").detect(_copy(replay, tmp_path, manifest=False))
    plain = tmp_path / "plain"
    plain.mkdir()
    np.savez(plain / "ep.npz", image=np.zeros((3, 4, 4, 3), np.uint8))
    assert not native.FORMAT.detect(plain)
    assert not native.FORMAT.detect(tmp_path / "empty-missing")


def test_list_and_load(replay: Path) -> None:
    refs = native.FORMAT.list(replay)
    assert len(refs) == 3 and all(r.length == 30 for r in refs)
    assert refs == sorted(refs, key=lambda r: r.path.name)
    assert refs[0].key == f"beliefscope:{refs[0].path.name}"
    for ref in refs:
        episode = native.FORMAT.load(ref)
        with np.load(ref.path, allow_pickle=False) as stored:
            # Stored: chosen after obs t. Canonical: action[t] led to obs t, zeros on resets.
            assert not episode.action[0].any()
            np.testing.assert_array_equal(episode.action[1:], stored["action"][:-1])
            np.testing.assert_array_equal(episode.image, stored["image"])
            for key in native.TRUTH_KEYS:
                np.testing.assert_array_equal(episode.truth[key], stored[key])
        assert episode.action.dtype == np.float32 and episode.reward.dtype == np.float32
        for t in (0, 13, 29):
            np.testing.assert_array_equal(native.FORMAT.frame(ref, t), episode.image[t])
        with pytest.raises(NotFoundError, match="no frame 30"):
            native.FORMAT.frame(ref, 30)


def test_resets_inside_a_file_zero_the_action(replay: Path) -> None:
    action = np.arange(12, dtype=np.float32).reshape(4, 3)
    is_first = np.array([True, False, True, False])
    out = native.canonical_actions(action, is_first)
    np.testing.assert_array_equal(out, [[0, 0, 0], [0, 1, 2], [0, 0, 0], [6, 7, 8]])


def _rewrite(path: Path, **changes: np.ndarray | None) -> None:
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def test_wrong_keys_or_shapes_name_the_file(replay: Path, tmp_path: Path) -> None:
    root = _copy(replay, tmp_path)
    victim = sorted(root.glob("*.npz"))[1]
    _rewrite(victim, slip=None)
    with pytest.raises(BadInputError, match=rf"{victim.name}: .*missing keys \['slip'\]"):
        native.FORMAT.list(root)
    _rewrite(victim, slip=np.zeros(30, bool), reward=np.zeros((30, 2), np.float32))
    with pytest.raises(BadInputError, match=rf"{victim.name}: 'reward' must be a 1-d float"):
        native.FORMAT.list(root)
    _rewrite(victim, reward=np.zeros(30, np.float32), qpos=np.zeros((29, 5)))
    with pytest.raises(BadInputError, match=r"'qpos' must be a 2-d float array of 30 steps"):
        native.FORMAT.list(root)
    _rewrite(victim, qpos=np.zeros((30, 5)), image=np.zeros((30, 8, 8), np.uint8))
    with pytest.raises(BadInputError, match=r"'image' must be uint8 \(T, H, W, 3\)"):
        native.FORMAT.list(root)
