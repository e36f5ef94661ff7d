"""Re-render a saved step from any camera of its scene, e.g. the overview that sees the box
the front camera could not (the ground-truth view of the dashboard and the API).

A saved `qpos` row fixes the whole scene (see `beliefscope.world.scene`), so a step needs only
`scene.xml` and that row. Views are cached per (file, size): a renderer costs 40-180 ms to
create and a few hundred microseconds to use.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from beliefscope.errors import BadInputError
from beliefscope.world.camera import project
from beliefscope.world.render import Renderer, load_mujoco
from beliefscope.world.scene import BOX_GEOM, OCCLUDER_GROUP


class SceneView:
    """One scene file with a renderer of one size; thread-safe."""

    def __init__(self, scene_xml: Path, height: int, width: int) -> None:
        self._mj = mj = load_mujoco()
        try:
            self.model = mj.MjModel.from_xml_path(str(scene_xml))
        except (ValueError, OSError) as err:
            raise BadInputError(f"cannot load the scene: {err}", path=scene_xml) from err
        self.path = scene_xml
        self.data = mj.MjData(self.model)
        self._box = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_GEOM, BOX_GEOM)
        if self._box < 0:
            raise BadInputError(f"the scene has no '{BOX_GEOM}' geom", path=scene_xml)
        limit = int(self.model.vis.global_.offheight), int(self.model.vis.global_.offwidth)
        if height > limit[0] or width > limit[1]:
            raise BadInputError(f"size {height}x{width} exceeds the scene's {limit[0]}x{limit[1]}")
        self.cameras = [
            mj.mj_id2name(self.model, mj.mjtObj.mjOBJ_CAMERA, i) for i in range(self.model.ncam)
        ]
        self.renderer = Renderer(self.model, height, width, shared=True)
        self._lock = threading.Lock()

    def _pose(self, qpos: np.ndarray, camera: str) -> int:
        qpos = np.asarray(qpos, dtype=np.float64)
        if qpos.shape != (self.model.nq,):
            raise BadInputError(f"qpos must have shape ({self.model.nq},), got {qpos.shape}")
        if camera not in self.cameras:
            raise BadInputError(f"unknown camera {camera!r}; the scene has {self.cameras}")
        self.data.qpos[:] = qpos
        self._mj.mj_forward(self.model, self.data)
        return int(self._mj.mj_name2id(self.model, self._mj.mjtObj.mjOBJ_CAMERA, camera))

    def render(self, qpos: np.ndarray, camera: str, show_occluder: bool = True) -> np.ndarray:
        """(H, W, 3) uint8 frame of the scene posed at `qpos`."""
        with self._lock:
            self._pose(qpos, camera)
            hide = () if show_occluder else (OCCLUDER_GROUP,)
            return self.renderer.rgb(self.data, camera, hide)

    def box_pixel(self, qpos: np.ndarray, camera: str) -> tuple[float, float]:
        """The box centre's (x, y) pixel coordinates in that camera's frame (x right, y down,
        (0, 0) the image's top-left corner); NaN if it is behind the camera."""
        with self._lock:
            cam = self._pose(qpos, camera)
            r = self.renderer
            centre = self.data.geom_xpos[[self._box]]  # (1, 3)
            x, y = project(self.model, self.data, cam, centre, r.height, r.width)[0]
            return float(x), float(y)

    def plane_pixels(self, qpos: np.ndarray, camera: str, xy: np.ndarray) -> np.ndarray:
        """(N, 2) table-plane positions (x, y in metres, the box's `qpos` columns) at the box
        centre's height -> (N, 2) pixel coordinates as in `box_pixel`: where a decoded belief
        of the box's position sits in the picture."""
        xy = np.asarray(xy, dtype=np.float64)
        assert xy.ndim == 2 and xy.shape[1] == 2, xy.shape
        with self._lock:
            cam = self._pose(qpos, camera)
            height = float(self.data.geom_xpos[self._box][2])
            points = np.column_stack([xy, np.full(len(xy), height)])  # (N, 3)
            r = self.renderer
            return project(self.model, self.data, cam, points, r.height, r.width)


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def scene_view(scene_xml: str | Path, size: int | tuple[int, int] = 256) -> SceneView:
    path = Path(scene_xml).resolve()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as err:
        raise BadInputError(f"cannot read the scene: {err.strerror}", path=path) from err
    return _cached_view(path, stamp, _size(size))


@lru_cache(maxsize=8)
def _cached_view(path: Path, stamp: int, size: tuple[int, int]) -> SceneView:
    return SceneView(path, *size)


def rerender(
    scene_xml: str | Path,
    qpos: np.ndarray,
    camera: str = "overview",
    size: int | tuple[int, int] = 256,
    *,
    show_occluder: bool = True,
) -> np.ndarray:
    """A saved step seen from `camera`: (H, W, 3) uint8. `size` is H=W or (H, W)."""
    return scene_view(scene_xml, size).render(qpos, camera, show_occluder)


def box_pixel(
    scene_xml: str | Path,
    qpos: np.ndarray,
    camera: str = "overview",
    size: int | tuple[int, int] = 256,
) -> tuple[float, float]:
    """Where the box truly is, as (x, y) pixel coordinates of `rerender`'s image."""
    return scene_view(scene_xml, size).box_pixel(qpos, camera)
