"""Episode generation: roll the scripted policy in the world and write replay files.

Episodes come in three kinds, a third each (balanced within every block of three, in an
order drawn from the seed): `clear` (the occluder never covers the box), `occlusion` (sweeps
cover it, no slip) and `slip` (sweeps cover it and, one or two steps after the box is hidden,
it gets a kick the camera never sees). Everything is drawn from `numpy` generators seeded by
(seed, episode index), so the same seed gives byte-identical arrays.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from beliefscope.errors import BadInputError
from beliefscope.replay import native
from beliefscope.world.policy import ScriptedPolicy
from beliefscope.world.scene import JOINTS, OFFSCREEN, SceneParams, build_mjcf
from beliefscope.world.sim import OCCLUDED_BELOW, TabletopWorld

KINDS = ("clear", "occlusion", "slip")
ACTION_NAMES = ("push_x", "push_y", "occluder_velocity")
SLIP_SPEED = (0.6, 1.2)
"""Kick speed (m/s); with the box's 0.1 s velocity decay it slides 6-12 cm, far above the
drift of a box that is not pushed (~1 mm)."""


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    length: int = 150
    size: int = 64
    scene: SceneParams = SceneParams()


def episode_kind(seed: int, index: int) -> str:
    block = np.random.default_rng([seed, index // 3, 7]).permutation(len(KINDS))
    return KINDS[block[index % 3]]


def _slip_kick(world: TabletopWorld, rng: np.random.Generator) -> np.ndarray:
    """A kick mostly along the camera's depth axis (so the box tends to stay hidden),
    turned back where it would run the box into its limits."""
    p = world.params
    angle = np.pi / 2 + rng.uniform(-0.7, 0.7) + (np.pi if rng.random() < 0.5 else 0.0)
    speed = rng.uniform(*SLIP_SPEED)
    kick = speed * np.array([np.cos(angle), np.sin(angle)])
    travel = kick * p.box_mass / p.box_damping
    limit = np.array(p.box_range) * 0.95
    kick[np.abs(world.box + travel) > limit] *= -1.0
    return kick


def roll_episode(
    world: TabletopWorld, kind: str, rng: np.random.Generator, length: int
) -> dict[str, np.ndarray]:
    """One episode's arrays in the stored convention (see `beliefscope.replay.native`)."""
    assert kind in KINDS, kind
    p = world.params
    limit = np.array(p.box_range) * 0.8
    side = 1.0 if rng.random() < 0.5 else -1.0
    obs = world.reset(
        box=rng.uniform(-limit, limit),
        goal=rng.uniform(-limit, limit),
        occluder=side * rng.uniform(0.3, p.occluder_range),
    )
    policy = ScriptedPolicy(world, rng, sweeps=kind != "clear")
    out: dict[str, list] = {
        key: []
        for key in ("image", "action", "reward", "qpos", "qvel", "visible_frac", "occluded", "slip")
    }
    hidden_for, kick_at, slipped = 0, -1, False
    for t in range(length):
        action = policy.act(obs)
        out["image"].append(obs.image)
        out["action"].append(action)
        out["reward"].append(0.0 if t == 0 else -float(np.linalg.norm(world.box - world.goal)))
        out["qpos"].append(world.data.qpos.copy())
        out["qvel"].append(world.data.qvel.copy())
        out["visible_frac"].append(obs.visible_frac)
        out["occluded"].append(obs.occluded)
        out["slip"].append(slipped)
        if t == length - 1:
            break
        hidden_for = hidden_for + 1 if obs.occluded else 0
        if hidden_for == 1:
            kick_at = int(rng.integers(1, 3))
        slipped = kind == "slip" and hidden_for == kick_at
        obs = world.step(action, _slip_kick(world, rng) if slipped else None)
    is_last = np.zeros(length, bool)
    is_last[-1] = True
    return {
        "image": np.stack(out["image"]),
        "action": np.stack(out["action"]).astype(np.float32),
        "reward": np.array(out["reward"], np.float32),
        "is_first": np.arange(length) == 0,
        "is_last": is_last,
        "is_terminal": np.zeros(length, bool),
        "qpos": np.stack(out["qpos"]),
        "qvel": np.stack(out["qvel"]),
        "visible_frac": np.array(out["visible_frac"], np.float32),
        "occluded": np.array(out["occluded"], bool),
        "slip": np.array(out["slip"], bool),
    }


class Generator:
    """Writes episodes of one world configuration into a directory."""

    def __init__(self, out: Path, config: WorldConfig) -> None:
        if config.length < 2:
            raise BadInputError(f"--length must be at least 2, got {config.length}")
        if not 16 <= config.size <= OFFSCREEN:
            raise BadInputError(f"--size must be in [16, {OFFSCREEN}], got {config.size}")
        self.out, self.config = out, config
        self.xml = build_mjcf(config.scene)
        self.manifest = self._open_manifest()
        self.world = TabletopWorld(config.scene, self.xml, config.size)

    def _open_manifest(self) -> dict:
        path = self.out / native.MANIFEST
        world = {
            "version": native.VERSION,
            "image_size": self.config.size,
            "control_dt": self.config.scene.control_dt,
            "joints": list(JOINTS),
            "actions": list(ACTION_NAMES),
            "action_convention": native.ACTION_CONVENTION,
            "occluded_below": OCCLUDED_BELOW,
            "scene": self.config.scene.to_dict(),
        }
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BadInputError(
                f"cannot create output directory: {err.strerror}", path=self.out
            ) from err
        if not path.exists():
            return {"format": native.NAME, "world": world, "episodes": []}
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise BadInputError(f"unreadable manifest: {err}", path=path) from err
        if manifest.get("world") != json.loads(json.dumps(world)):
            raise BadInputError(
                "holds episodes of a different world configuration; use another --out", path=path
            )
        return manifest

    def episodes(self, count: int) -> Iterator[tuple[Path, dict[str, np.ndarray], str]]:
        """Generate and write `count` episodes, yielding (file, arrays, kind) as each lands."""
        _write_atomic(self.out / native.SCENE, self.xml.encode())
        seed, length = self.config.seed, self.config.length
        for index in range(count):
            kind = episode_kind(seed, index)
            arrays = roll_episode(self.world, kind, np.random.default_rng([seed, index]), length)
            uid = uuid.UUID(bytes=np.random.default_rng([seed, index, 1]).bytes(16), version=4)
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = self.out / native.episode_name(stamp, uid.hex, length)
            _write_npz(path, arrays)
            self.manifest["episodes"].append(
                {"file": path.name, "seed": seed, "index": index, "kind": kind, "length": length}
            )
            _write_atomic(self.out / native.MANIFEST, json.dumps(self.manifest, indent=1).encode())
            yield path, arrays, kind

    def close(self) -> None:
        self.world.close()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Uncompressed (so single frames can be memory-mapped), written via temp + rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    payload: dict[str, Any] = dict(arrays)
    with open(tmp, "wb") as f:
        np.savez(f, allow_pickle=False, **payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
