"""The tabletop scene as MJCF, built from a few parameters.

Everything that moves is a slide joint, so `qpos` alone describes a frame completely and any
saved step can be re-rendered later (`beliefscope.world.rerender`). Nothing collides: the box
rides on x/y slide joints above the table, its motors push it, joint damping stops it, and the
occluder panel is driven kinematically by the action, so the only unpredictable motion is the
slip kick the generator applies while the box is hidden.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

JOINTS = ("box_x", "box_y", "occluder_x", "goal_x", "goal_y")
"""Joint order = `qpos`/`qvel` column order."""
BOX_GEOM = "box"
OCCLUDER_GEOM = "occluder"
OCCLUDER_GROUP = 2
"""Geom group of the occluder, switched off to measure the box's unoccluded pixels."""
CAMERAS = ("front", "overview")
OFFSCREEN = 512
"""The largest frame (height and width) the scene's offscreen buffer holds."""


@dataclass(frozen=True)
class SceneParams:
    """Geometry and dynamics of the world (metres, seconds, kilograms)."""

    box_half: float = 0.04
    box_range: tuple[float, float] = (0.2, 0.15)
    """Box slide limits: |x| <= box_range[0], |y| <= box_range[1]."""
    box_mass: float = 0.5
    box_damping: float = 5.0
    """Velocity decays with time constant mass / damping (0.1 s: a push dies out in ~3 steps)."""
    push_force: float = 1.25
    """Motor gear: a full push gives a terminal speed of push_force / box_damping = 0.25 m/s."""
    camera_pos: tuple[float, float, float] = (0.0, -0.6, 0.75)
    """The front camera looks from here at the table centre (about 51 degrees down)."""
    fovy: float = 38.0
    panel_half: tuple[float, float] = (0.07, 0.11)
    """Occluder half width and half height, facing the camera."""
    panel_depth: float = 0.6
    """Where the panel sits on the camera-to-table ray (0 camera, 1 table centre)."""
    occluder_range: float = 0.45
    occluder_speed: float = 0.3
    """Occluder speed (m/s) at action +-1; the action sets its velocity exactly."""
    timestep: float = 0.01
    control_dt: float = 0.1

    @property
    def substeps(self) -> int:
        return round(self.control_dt / self.timestep)

    @property
    def panel_pos(self) -> np.ndarray:
        cam, centre = np.array(self.camera_pos), np.array([0.0, 0.0, self.box_half])
        return cam + self.panel_depth * (centre - cam)

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt(values: tuple[float, ...] | np.ndarray) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def build_mjcf(p: SceneParams) -> str:
    """The scene's MJCF text (saved as `scene.xml` beside the episodes)."""
    cam = np.array(p.camera_pos)
    look = np.array([0.0, 0.0, 0.0]) - cam
    look /= np.linalg.norm(look)
    up = np.cross(-look, [1.0, 0.0, 0.0])  # camera y axis; its x axis is world x
    tilt = -math.degrees(math.atan2(-look[2], look[1]))  # panel faces the camera
    bx, by = p.box_range
    rail = p.occluder_range + 0.05
    return f"""<mujoco model="beliefscope-occlusion-world">
  <compiler angle="degree"/>
  <option timestep="{p.timestep}" integrator="implicitfast"/>
  <visual>
    <global offwidth="{OFFSCREEN}" offheight="{OFFSCREEN}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default>
    <geom contype="0" conaffinity="0"/>
    <joint type="slide" limited="true"/>
  </default>
  <asset>
    <texture name="sky" type="skybox" builtin="flat" rgb1="0.55 0.65 0.75" rgb2="0.55 0.65 0.75"
      width="8" height="8"/>
  </asset>
  <worldbody>
    <light name="top" pos="0 0 2" dir="0 0 -1" castshadow="false" diffuse="0.5 0.5 0.5"/>
    <geom name="floor" type="box" size="2 2 0.01" pos="0 0 -0.41" rgba="0.3 0.3 0.32 1"/>
    <geom name="table" type="box" size="{bx + 0.12:.6g} {by + 0.12:.6g} 0.02" pos="0 0 -0.02"
      rgba="0.72 0.6 0.45 1"/>
    <camera name="front" pos="{_fmt(cam)}" xyaxes="1 0 0 {_fmt(up)}" fovy="{p.fovy:.6g}"/>
    <camera name="overview" pos="0 0.5 1.1" xyaxes="1 0 0 0 0.9 -0.45" fovy="40"/>
    <body name="box" pos="0 0 {p.box_half:.6g}">
      <joint name="box_x" axis="1 0 0" range="{-bx:.6g} {bx:.6g}" damping="{p.box_damping:.6g}"/>
      <joint name="box_y" axis="0 1 0" range="{-by:.6g} {by:.6g}" damping="{p.box_damping:.6g}"/>
      <geom name="{BOX_GEOM}" type="box" size="{p.box_half:.6g} {p.box_half:.6g} {p.box_half:.6g}"
        mass="{p.box_mass:.6g}" rgba="0.85 0.15 0.1 1"/>
    </body>
    <body name="occluder" pos="{_fmt(p.panel_pos)}">
      <joint name="occluder_x" axis="1 0 0" range="{-rail:.6g} {rail:.6g}"/>
      <geom name="{OCCLUDER_GEOM}" type="box"
        size="{p.panel_half[0]:.6g} 0.004 {p.panel_half[1]:.6g}" euler="{tilt:.6g} 0 0"
        mass="0.2" group="{OCCLUDER_GROUP}" rgba="0.25 0.3 0.45 1"/>
    </body>
    <body name="goal" pos="0 0 0.001">
      <joint name="goal_x" axis="1 0 0" range="{-bx:.6g} {bx:.6g}" damping="1"/>
      <joint name="goal_y" axis="0 1 0" range="{-by:.6g} {by:.6g}" damping="1"/>
      <geom name="goal" type="cylinder" size="0.035 0.001" mass="0.1" rgba="0.15 0.7 0.2 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="push_x" joint="box_x" gear="{p.push_force:.6g}" ctrlrange="-1 1"/>
    <motor name="push_y" joint="box_y" gear="{p.push_force:.6g}" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""
