"""Generation: determinism, the episode mix, and ground truth that agrees with itself."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from beliefscope.replay import native
from beliefscope.world.generate import KINDS, SLIP_SPEED, Generator, WorldConfig, episode_kind
from beliefscope.world.scene import JOINTS, SceneParams
from tests.world.conftest import GeneratedWorld

BOX = slice(0, 2)
OCCLUDER = JOINTS.index("occluder_x")


def _generate(root: Path, seed: int, count: int, length: int) -> list[dict[str, np.ndarray]]:
    generator = Generator(root, WorldConfig(seed=seed, length=length))
    try:
        return [arrays for _, arrays, _ in generator.episodes(count)]
    finally:
        generator.close()


def test_same_seed_gives_byte_identical_arrays(tmp_path: Path) -> None:
    first = _generate(tmp_path / "a", seed=11, count=2, length=40)
    again = _generate(tmp_path / "b", seed=11, count=2, length=40)
    other = _generate(tmp_path / "c", seed=12, count=1, length=40)
    for a, b in zip(first, again, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
    assert first[0]["qpos"].tobytes() != other[0]["qpos"].tobytes()
    # What lands on disk is the same too (names differ only by their time stamp).
    files_a = sorted((tmp_path / "a").glob("*.npz"), key=lambda p: p.name.split("-")[1])
    files_b = sorted((tmp_path / "b").glob("*.npz"), key=lambda p: p.name.split("-")[1])
    for fa, fb in zip(files_a, files_b, strict=True):
        assert fa.name.split("-", 1)[1] == fb.name.split("-", 1)[1]
        with np.load(fa, allow_pickle=False) as da, np.load(fb, allow_pickle=False) as db:
            assert all(np.array_equal(da[k], db[k]) for k in da.files)


def test_kinds_are_a_third_each_whatever_the_seed() -> None:
    for seed in range(5):
        counts = Counter(episode_kind(seed, i) for i in range(30))
        assert counts == dict.fromkeys(KINDS, 10), counts
    assert len({tuple(episode_kind(s, i) for i in range(3)) for s in range(20)}) > 1


def test_episode_files_follow_the_format(world: GeneratedWorld) -> None:
    for path, arrays, _ in world.episodes:
        assert native.EPISODE_NAME.match(path.name), path.name
        assert path.name.endswith(f"-{len(arrays['image'])}.npz")
        with np.load(path, allow_pickle=False) as stored:
            assert set(stored.files) == set(native.STEP_KEYS) | set(native.TRUTH_KEYS)
        steps = len(arrays["image"])
        assert arrays["image"].shape == (steps, 64, 64, 3) and arrays["image"].dtype == np.uint8
        assert arrays["action"].shape == (steps, 3) and arrays["action"].dtype == np.float32
        assert arrays["qpos"].shape == (steps, len(JOINTS))
        assert arrays["is_first"].tolist() == [True] + [False] * (steps - 1)
        assert arrays["is_last"].tolist() == [False] * (steps - 1) + [True]
        assert not arrays["is_terminal"].any()
    assert not list(world.root.glob(".*")), "temporary files left behind"
    manifest = json.loads((world.root / native.MANIFEST).read_text())
    assert manifest["format"] == native.NAME and manifest["world"]["version"] == native.VERSION
    assert manifest["world"]["action_convention"] == "chosen_after_obs"
    assert manifest["world"]["joints"] == list(JOINTS)
    assert [e["kind"] for e in manifest["episodes"]] == [kind for _, _, kind in world.episodes]
    assert {e["seed"] for e in manifest["episodes"]} == {5}
    assert (world.root / native.SCENE).read_text().startswith("<mujoco")


def test_each_kind_shows_what_it_promises(world: GeneratedWorld) -> None:
    assert sorted(kind for _, _, kind in world.episodes) == sorted(KINDS)
    (clear,) = world.of_kind("clear")
    (occlusion,) = world.of_kind("occlusion")
    (slip,) = world.of_kind("slip")
    assert not clear["occluded"].any() and not clear["slip"].any()
    assert occlusion["occluded"].sum() >= 3 and not occlusion["slip"].any()
    assert slip["occluded"].sum() >= 3 and slip["slip"].any()


def test_ground_truth_is_consistent(world: GeneratedWorld) -> None:
    params = SceneParams()
    for _, ep, kind in world.episodes:
        vis, occluded, slip, qpos = ep["visible_frac"], ep["occluded"], ep["slip"], ep["qpos"]
        assert ((vis >= 0) & (vis <= 1)).all()
        assert np.array_equal(occluded, vis < 0.2)
        assert vis[occluded].max(initial=0) < 0.2
        # A slip happens only while the box is hidden, and only in slip episodes.
        for t in np.flatnonzero(slip):
            assert kind == "slip" and t >= 1 and occluded[t - 1], (kind, t)
        # No pushes are chosen while the box is hidden (stored convention: chosen after obs t).
        assert not ep["action"][occluded, :2].any()
        # While hidden the box stays put, unless it slipped: slips are far larger than drift.
        moves = np.linalg.norm(np.diff(qpos[:, BOX], axis=0), axis=1)  # moves[t-1]: t-1 -> t
        slipped_run = False
        for t in range(1, len(qpos)):
            if not occluded[t - 1]:
                slipped_run = False
                continue
            slipped_run |= bool(slip[t])
            if slip[t]:
                assert moves[t - 1] > 0.3 * SLIP_SPEED[0] * params.box_mass / params.box_damping
            elif not slipped_run:
                assert moves[t - 1] < 0.003, (kind, t, moves[t - 1])
        # The action fully determines the occluder: its next position follows exactly.
        step = params.occluder_speed * params.control_dt
        predicted = np.clip(
            qpos[:-1, OCCLUDER] + ep["action"][:-1, 2] * step,
            -params.occluder_range,
            params.occluder_range,
        )
        np.testing.assert_allclose(qpos[1:, OCCLUDER], predicted, atol=1e-9)
        # Reward: negative distance of the box to the goal disk.
        distance = np.linalg.norm(qpos[:, 0:2] - qpos[:, 3:5], axis=1)
        np.testing.assert_allclose(ep["reward"][1:], -distance[1:], rtol=1e-6)
        assert ep["reward"][0] == 0.0
