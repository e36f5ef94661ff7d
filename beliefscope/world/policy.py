"""The scripted behaviour policy that produces the episodes.

It pushes the box toward waypoints while the box is in plain view and, in occlusion episodes,
now and then stops pushing and sweeps the occluder onto the camera-to-box line of sight, holds
it there a few steps and moves on. Its choices depend only on what the camera saw before the
box was hidden (the occluder's target is frozen when a sweep starts), so the occluder's motion
never gives a slip away. Noise on every action keeps the data broad enough to train on.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from beliefscope.world.sim import Observation, TabletopWorld

CLEAR_MARGIN = 0.15
"""Outside sweeps, the occluder stays this far (m) from the box's line of sight."""


class Phase(Enum):
    FREE = "free"  # push the box, keep the occluder clear of it
    APPROACH = "approach"  # no pushes; occluder to the line of sight
    HOLD = "hold"  # no pushes; occluder stays over the box
    LEAVE = "leave"  # no pushes; occluder moves on until clear


class ScriptedPolicy:
    def __init__(self, world: TabletopWorld, rng: np.random.Generator, sweeps: bool) -> None:
        self.world, self.rng, self.sweeps = world, rng, sweeps
        p = world.params
        self._box_limit = np.array(p.box_range) * 0.9
        self._occluder_step = p.occluder_speed * p.control_dt
        self.phase = Phase.FREE
        self._phase_left = self._free_steps()
        self._waypoint = self._new_waypoint()
        self._occluder_target = self._clear_target()
        self._sweep_target = 0.0
        self._sweep_speed = 1.0
        self._leave_to = 0.0

    def _free_steps(self) -> int:
        return int(self.rng.integers(6, 30))

    def _new_waypoint(self) -> np.ndarray:
        if self.rng.random() < 0.3:
            return self.world.goal
        return self.rng.uniform(-self._box_limit, self._box_limit)

    def _clear_target(self) -> float:
        """A random occluder position at least CLEAR_MARGIN from the line of sight."""
        limit = self.world.params.occluder_range
        sight = self.world.line_of_sight_x(self.world.box)
        for _ in range(20):
            x = float(self.rng.uniform(-limit, limit))
            if abs(x - sight) > CLEAR_MARGIN + 0.05:
                return x
        return limit if sight < 0 else -limit

    def _toward(self, target: float, speed: float) -> float:
        return float(np.clip((target - self.world.occluder) / self._occluder_step, -speed, speed))

    def act(self, obs: Observation) -> np.ndarray:
        """The action for the step after `obs` (push_x, push_y, occluder velocity), in [-1, 1]."""
        world, rng = self.world, self.rng
        push = np.zeros(2)
        if self.phase is Phase.FREE:
            if np.linalg.norm(self._waypoint - world.box) < 0.03 or rng.random() < 0.05:
                self._waypoint = self._new_waypoint()
            if abs(world.occluder - self._occluder_target) < 0.02 or rng.random() < 0.05:
                self._occluder_target = self._clear_target()
            push = np.clip(6.0 * (self._waypoint - world.box) + rng.normal(0, 0.3, 2), -1, 1)
            move = self._toward(self._occluder_target, 1.0) + rng.normal(0, 0.2)
            move = self._keep_clear(float(np.clip(move, -1, 1)))
            self._phase_left -= 1
            if self.sweeps and self._phase_left <= 0:
                self.phase = Phase.APPROACH
                self._sweep_target = world.line_of_sight_x(world.box)
                self._sweep_speed = float(rng.uniform(0.5, 1.0))
        elif self.phase is Phase.APPROACH:
            move = self._toward(self._sweep_target, self._sweep_speed)
            if obs.occluded or abs(world.occluder - self._sweep_target) < 1e-6:
                self.phase, self._phase_left = Phase.HOLD, int(rng.integers(0, 7))
                side = 1.0 if rng.random() < 0.7 else -1.0  # mostly on through, sometimes back
                heading = np.sign(self._sweep_target - world.occluder) or 1.0
                self._leave_to = self._sweep_target + side * heading * rng.uniform(0.25, 0.4)
                move = self._toward(self._sweep_target, self._sweep_speed)
        elif self.phase is Phase.HOLD:
            move = self._toward(self._sweep_target, self._sweep_speed)
            self._phase_left -= 1
            if self._phase_left < 0:
                self.phase = Phase.LEAVE
        if self.phase is Phase.LEAVE:
            move = self._toward(self._leave_to, self._sweep_speed)
            sight = world.line_of_sight_x(world.box)
            stuck = abs(move) < 1e-6
            if abs(world.occluder - sight) > CLEAR_MARGIN or stuck:
                self.phase, self._phase_left = Phase.FREE, self._free_steps()
                self._occluder_target = self._clear_target()
        return np.array([push[0], push[1], move], np.float32)

    def _keep_clear(self, move: float) -> float:
        """Turn the occluder away where `move` would bring it near the box's line of sight."""
        sight = self.world.line_of_sight_x(self.world.box)
        if abs(self.world.occluder_next(move) - sight) >= CLEAR_MARGIN:
            return move
        away = 1.0 if self.world.occluder >= sight else -1.0
        if abs(self.world.occluder_next(away) - sight) < CLEAR_MARGIN:
            return 0.0  # pinned at the end of its rail: staying put is the clearest it gets
        return away
