"""Re-rendering saved steps: the front view reproduces the stored frame, the overview shows
the box the front camera could not see, and `box_pixel` says where it is."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from beliefscope.errors import BadInputError
from beliefscope.world.rerender import box_pixel, rerender
from tests.world.conftest import GeneratedWorld


def _red(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 150) & (g < 90) & (b < 90)


def test_hidden_box_is_seen_from_the_overview(world: GeneratedWorld) -> None:
    scene = world.root / "scene.xml"
    (ep,) = world.of_kind("occlusion")
    hidden = np.flatnonzero(ep["visible_frac"] == 0.0)
    assert len(hidden) > 0
    for t in hidden[:3]:
        qpos = ep["qpos"][t]
        front = rerender(scene, qpos, camera="front", size=64)
        assert np.array_equal(front, ep["image"][t]), "re-render must reproduce the saved frame"
        assert _red(front).sum() == 0
        overview = rerender(scene, qpos, camera="overview", size=128)
        red = _red(overview)
        assert red.sum() > 30
        x, y = box_pixel(scene, qpos, camera="overview", size=128)
        rows, cols = np.nonzero(red)
        assert abs(cols.mean() + 0.5 - x) < 3 and abs(rows.mean() + 0.5 - y) < 5, (x, y)
        unoccluded = rerender(scene, qpos, camera="front", size=64, show_occluder=False)
        assert _red(unoccluded).sum() > 20


def test_box_pixel_follows_the_box(world: GeneratedWorld) -> None:
    scene = world.root / "scene.xml"
    left = box_pixel(scene, np.array([-0.15, 0.0, 0.4, 0.0, 0.0]), "front", 64)
    right = box_pixel(scene, np.array([0.15, 0.0, 0.4, 0.0, 0.0]), "front", 64)
    far = box_pixel(scene, np.array([0.0, 0.12, 0.4, 0.0, 0.0]), "front", 64)
    near = box_pixel(scene, np.array([0.0, -0.12, 0.4, 0.0, 0.0]), "front", 64)
    assert left[0] < 32 < right[0] and abs(left[1] - right[1]) < 1e-6
    assert far[1] < near[1]  # farther away = higher up in the front camera's image


def test_bad_requests_are_clear_errors(world: GeneratedWorld, tmp_path) -> None:
    scene = world.root / "scene.xml"
    qpos = world.episodes[0][1]["qpos"][0]
    with pytest.raises(BadInputError, match="unknown camera 'side'"):
        rerender(scene, qpos, camera="side")
    with pytest.raises(BadInputError, match=r"qpos must have shape \(5,\)"):
        rerender(scene, qpos[:3])
    with pytest.raises(BadInputError, match="cannot read the scene"):
        rerender(tmp_path / "missing.xml", qpos)
    (tmp_path / "broken.xml").write_text("<mujoco><worldbody><geom")
    with pytest.raises(BadInputError, match="cannot load the scene"):
        rerender(tmp_path / "broken.xml", qpos)


def test_views_serve_any_thread(world: GeneratedWorld) -> None:
    """A web server renders from a thread pool: EGL contexts must not stay bound to one thread."""
    scene = world.root / "scene.xml"
    qpos = world.episodes[0][1]["qpos"][5]
    expected = {size: rerender(scene, qpos, "overview", size) for size in (64, 96)}
    with ThreadPoolExecutor(3) as pool:
        sizes = [64, 96] * 4
        frames = list(pool.map(lambda s: rerender(scene, qpos, "overview", s), sizes))
    for size, frame in zip(sizes, frames, strict=True):
        assert np.array_equal(frame, expected[size])
