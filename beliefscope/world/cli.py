"""`beliefscope world generate`: write occlusion-world replay episodes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="world_command", required=True, metavar="ACTION")
    gen = sub.add_parser("generate", help="write replay episodes of the MuJoCo occlusion world")
    gen.add_argument("--out", type=Path, required=True, help="directory for episodes + scene.xml")
    gen.add_argument("--episodes", type=int, default=12, help="how many episodes (default 12)")
    gen.add_argument("--seed", type=int, default=0, help="same seed, same arrays (default 0)")
    gen.add_argument("--length", type=int, default=150, help="steps per episode (default 150)")
    gen.add_argument("--size", type=int, default=64, help="frame height and width (default 64)")


def run(args: argparse.Namespace) -> int:
    from beliefscope.world.generate import Generator, WorldConfig

    if args.episodes < 1:
        print("beliefscope world: nothing to do (--episodes < 1)", file=sys.stderr)
        return 0
    config = WorldConfig(seed=args.seed, length=args.length, size=args.size)
    generator = Generator(args.out, config)
    start, steps = time.perf_counter(), 0
    try:
        for i, (path, arrays, kind) in enumerate(generator.episodes(args.episodes), 1):
            steps += len(arrays["image"])
            hidden = int(np.sum(arrays["occluded"]))
            slips = int(np.sum(arrays["slip"]))
            counts = f"occluded steps {hidden:3d}  slips {slips}"
            print(f"[{i}/{args.episodes}] {path.name}  {kind:9s} {counts}", file=sys.stderr)
    finally:
        generator.close()
    elapsed = time.perf_counter() - start
    rate = steps / elapsed
    print(f"wrote {args.episodes} episodes ({steps} steps) to {args.out} at {rate:.0f} steps/s")
    return 0
