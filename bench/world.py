"""Generation speed of the MuJoCo occlusion world, against the bare render rate.

    python bench/world.py [--episodes 4] [--length 150] [--rounds 3]

Each round times (a) full generation, episodes written to disk, and (b) rendering the same
number of 64x64 front-camera frames and nothing else, one after the other in this process,
so the ratio holds on a shared, noisy machine. The target is >= 500 generated steps/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from beliefscope.world.generate import Generator, WorldConfig
from beliefscope.world.render import load_mujoco


def generation_rate(root: Path, episodes: int, length: int, seed: int) -> float:
    generator = Generator(root, WorldConfig(seed=seed, length=length))
    try:
        start = time.perf_counter()
        steps = sum(len(arrays["image"]) for _, arrays, _ in generator.episodes(episodes))
        return steps / (time.perf_counter() - start)
    finally:
        generator.close()


def render_rate(generator: Generator, frames: int, seed: int) -> float:
    """Frames/s of the renderer alone, posed at random states (same scene, same size)."""
    world = generator.world
    mujoco = load_mujoco()
    rng = np.random.default_rng(seed)
    poses = rng.uniform(-0.15, 0.15, (frames, world.model.nq))
    start = time.perf_counter()
    for qpos in poses:
        world.data.qpos[:] = qpos
        mujoco.mj_kinematics(world.model, world.data)
        world.renderer.rgb(world.data, "front")
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gen, ren = [], []
    with tempfile.TemporaryDirectory() as tmp:
        probe = Generator(Path(tmp) / "probe", WorldConfig(length=args.length))
        try:
            for r in range(args.rounds):
                gen.append(generation_rate(Path(tmp) / f"r{r}", args.episodes, args.length, r))
                ren.append(render_rate(probe, args.episodes * args.length, r))
        finally:
            probe.close()
    g, f = statistics.median(gen), statistics.median(ren)
    print(f"generation : {g:8.0f} steps/s  (median of {args.rounds}; target >= 500)")
    print(f"render only: {f:8.0f} frames/s (one 64x64 RGB frame per step)")
    print(f"ratio      : {g / f:8.2f}  generated steps per bare render")


if __name__ == "__main__":
    main()
