"""The world's physics and its ground truth, one control step at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from beliefscope.world.camera import box_corners, pixel_bounds, project
from beliefscope.world.render import Renderer, load_mujoco
from beliefscope.world.scene import BOX_GEOM, JOINTS, OCCLUDER_GEOM, OCCLUDER_GROUP, SceneParams

OCCLUDED_BELOW = 0.2
"""A step is `occluded` when less than this fraction of the box's pixels is visible."""


@dataclass(frozen=True)
class Observation:
    image: np.ndarray  # (H, W, 3) uint8 from the front camera
    visible_frac: float  # box pixels visible / box pixels with the occluder hidden

    @property
    def occluded(self) -> bool:
        return self.visible_frac < OCCLUDED_BELOW


class TabletopWorld:
    """Steps the scene: the action pushes the box and sets the occluder's velocity exactly."""

    def __init__(self, params: SceneParams, xml: str, size: int = 64) -> None:
        self._mj = mj = load_mujoco()
        self.params = params
        self.model = mj.MjModel.from_xml_string(xml)
        self.data = mj.MjData(self.model)
        names = [
            mj.mj_id2name(self.model, mj.mjtObj.mjOBJ_JOINT, i) for i in range(self.model.njnt)
        ]
        assert tuple(names) == JOINTS, names
        self._box = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_GEOM, BOX_GEOM)
        self._occluder = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_GEOM, OCCLUDER_GEOM)
        self._front = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_CAMERA, "front")
        self.renderer = Renderer(self.model, size, size)

    def reset(self, box: np.ndarray, goal: np.ndarray, occluder: float) -> Observation:
        self._mj.mj_resetData(self.model, self.data)
        self.data.qpos[:] = [box[0], box[1], occluder, goal[0], goal[1]]
        self._mj.mj_forward(self.model, self.data)
        return self.observe()

    @property
    def box(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    @property
    def goal(self) -> np.ndarray:
        return self.data.qpos[3:5].copy()

    @property
    def occluder(self) -> float:
        return float(self.data.qpos[2])

    def line_of_sight_x(self, box: np.ndarray) -> float:
        """The occluder position that puts the panel on the camera-to-box line of sight."""
        camera, panel = np.array(self.params.camera_pos), self.params.panel_pos
        along = (panel[1] - camera[1]) / (box[1] - camera[1])
        return float(camera[0] + along * (box[0] - camera[0]))

    def occluder_next(self, command: float) -> float:
        """Where occluder velocity command `command` in [-1, 1] puts the occluder after a step."""
        p = self.params
        step = float(np.clip(command, -1.0, 1.0)) * p.occluder_speed * p.control_dt
        return float(np.clip(self.occluder + step, -p.occluder_range, p.occluder_range))

    def step(self, action: np.ndarray, kick: np.ndarray | None = None) -> Observation:
        """Apply action (push_x, push_y, occluder velocity), plus an unseen velocity kick."""
        mj, p, d = self._mj, self.params, self.data
        target = self.occluder_next(action[2])
        d.ctrl[:2] = np.clip(action[:2], -1.0, 1.0)
        d.qvel[2] = (target - self.occluder) / p.control_dt
        if kick is not None:
            d.qvel[:2] += kick
        mj.mj_step(self.model, d, nstep=p.substeps)
        d.qpos[2] = target  # kinematic: exactly where the action said, no integration error
        d.qvel[3:5] = 0.0
        mj.mj_forward(self.model, d)
        return self.observe()

    def observe(self) -> Observation:
        image = self.renderer.rgb(self.data, "front")
        if not self._may_overlap():
            return Observation(image, 1.0)
        render = self.renderer.geom_mask
        visible = int(render(self.data, "front", (self._box,))[0].sum())
        full = int(render(self.data, "front", (self._box,), (OCCLUDER_GROUP,))[0].sum())
        return Observation(image, visible / full if full else 0.0)

    def _may_overlap(self) -> bool:
        """False when the box is fully in view and the occluder's image is clear of it, so
        the segmentation renders can be skipped (most steps; they cost 2 of 3 renders)."""
        size = self.renderer.height, self.renderer.width
        box = pixel_bounds(self._project(box_corners(self.model, self.data, self._box)))
        panel = pixel_bounds(self._project(box_corners(self.model, self.data, self._occluder)))
        if box is None or panel is None:
            return True
        if box[0] < 0 or box[1] < 0 or box[2] > size[1] or box[3] > size[0]:
            return True
        margin = 1.0
        return not (
            panel[2] < box[0] - margin
            or panel[0] > box[2] + margin
            or panel[3] < box[1] - margin
            or panel[1] > box[3] + margin
        )

    def _project(self, points: np.ndarray) -> np.ndarray:
        r = self.renderer
        return project(self.model, self.data, self._front, points, r.height, r.width)

    def close(self) -> None:
        self.renderer.close()
