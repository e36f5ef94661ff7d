"""Training speed of the `tiny` preset at batch 16x32 on 64x64 frames: 1 thread vs 2 threads.

    python bench/train.py [--updates 5] [--preset tiny]

Both settings run in this process, interleaved (1, 2, 1, 2, ...), so the ratio holds even on a
shared, noisy machine; absolute updates/s depend on what else is running.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from beliefscope.rssm.native import NativeWorldModel
from beliefscope.rssm.presets import get_preset


def synthetic_batch(batch: int, length: int, action_dim: int, seed: int) -> dict[str, torch.Tensor]:
    """Random frames and actions: speed does not depend on the content."""
    rng = np.random.default_rng(seed)
    is_first = np.zeros((batch, length), bool)
    is_first[:, 0] = True
    return {
        "image": torch.from_numpy(rng.integers(0, 256, (batch, length, 64, 64, 3), dtype=np.uint8)),
        "action": torch.from_numpy(
            rng.uniform(-1, 1, (batch, length, action_dim)).astype(np.float32)
        ),
        "reward": torch.from_numpy(rng.normal(size=(batch, length)).astype(np.float32)),
        "is_first": torch.from_numpy(is_first),
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }


def update_seconds(
    model: NativeWorldModel, opt: torch.optim.Optimizer, batch: dict, threads: int
) -> float:
    torch.set_num_threads(threads)
    began = time.perf_counter()
    loss, _ = model.loss(batch, torch.Generator().manual_seed(0))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--updates", type=int, default=5, help="timed updates per thread count")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = NativeWorldModel(get_preset(args.preset), action_dim=3)
    opt = torch.optim.Adam(model.parameters(), lr=get_preset(args.preset).lr)
    batch = synthetic_batch(args.batch, args.length, 3, seed=0)
    print(
        f"preset {args.preset}: {model.parameter_count() / 1e6:.2f} M params, "
        f"batch {args.batch}x{args.length}"
    )
    for threads in (1, 2):  # warm-up: first calls allocate and pick kernels
        update_seconds(model, opt, batch, threads)
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.updates):
        for threads in (1, 2):
            times[threads].append(update_seconds(model, opt, batch, threads))
    rate = {threads: 1.0 / float(np.median(values)) for threads, values in times.items()}
    for threads, value in rate.items():
        print(
            f"{threads} thread(s): {value:.2f} updates/s, {1 / value:.2f} s/update "
            f"(median of {args.updates})"
        )
    print(f"2 threads / 1 thread: {rate[2] / rate[1]:.2f}x")


if __name__ == "__main__":
    main()
