"""`beliefscope train`: fit the native world model to a replay directory, writing checkpoints.

Episodes are joined into one stream (their `is_first` flags keep them apart) and training
windows are drawn uniformly from it, so episodes shorter than the window still count. The
first step of every window is a reset, because the state before it is unknown.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from beliefscope.config import get_settings
from beliefscope.errors import BadInputError
from beliefscope.replay.base import Episode, detect_format
from beliefscope.rssm.checkpoint import NAME, save_checkpoint
from beliefscope.rssm.native import Batch, NativeWorldModel
from beliefscope.rssm.nets import stages
from beliefscope.rssm.presets import PRESETS, Preset, get_preset


@dataclass
class Stream:
    """All episodes end to end, time-major numpy arrays of one length."""

    image: np.ndarray  # (N, H, W, C) uint8
    action: np.ndarray  # (N, A) float32
    reward: np.ndarray  # (N,) float32
    is_first: np.ndarray  # (N,) bool
    is_terminal: np.ndarray  # (N,) bool

    @classmethod
    def join(cls, episodes: list[Episode]) -> Stream:
        """Check the episodes agree on frame shape and action size, then concatenate them."""
        if not episodes:
            raise BadInputError("no episodes to train on")
        first = episodes[0]
        for ep in episodes:
            if ep.image.shape[1:] != first.image.shape[1:]:
                raise BadInputError(
                    f"frames are {ep.image.shape[1:]} but {first.ref.path.name} has "
                    f"{first.image.shape[1:]}",
                    path=ep.ref.path,
                )
            if ep.action.shape[1] != first.action.shape[1]:
                raise BadInputError(
                    f"action size {ep.action.shape[1]} but {first.ref.path.name} has "
                    f"{first.action.shape[1]}",
                    path=ep.ref.path,
                )
        height, width, _ = first.image.shape[1:]
        try:
            if height != width:
                raise ValueError(f"frames must be square, got {height}x{width}")
            stages(height)
        except ValueError as err:
            raise BadInputError(str(err), path=first.ref.path) from None
        is_first = np.concatenate([ep.is_first.astype(bool) for ep in episodes])
        starts = np.cumsum([0] + [ep.length for ep in episodes[:-1]])
        is_first[starts] = True  # an episode boundary is a reset even if the file forgot to say so
        return cls(
            image=np.concatenate([ep.image for ep in episodes]),
            action=np.concatenate([ep.action for ep in episodes]).astype(np.float32),
            reward=np.nan_to_num(np.concatenate([ep.reward for ep in episodes]).astype(np.float32)),
            is_first=is_first,
            is_terminal=np.concatenate([ep.is_terminal.astype(bool) for ep in episodes]),
        )

    @property
    def steps(self) -> int:
        return len(self.image)

    def sample(
        self, rng: np.random.Generator, batch: int, length: int, device: torch.device
    ) -> Batch:
        """`batch` windows of `length` steps, uniformly placed; (B, T, ...) tensors."""
        starts = rng.integers(0, self.steps - length + 1, size=batch)
        index = starts[:, None] + np.arange(length)  # (B, T)
        is_first = self.is_first[index]
        is_first[:, 0] = True
        arrays = {
            "image": self.image[index],
            "action": self.action[index],
            "reward": self.reward[index],
            "is_first": is_first,
            "is_terminal": self.is_terminal[index],
        }
        return {key: torch.from_numpy(value).to(device) for key, value in arrays.items()}


def load_episodes(root: Path) -> list[Episode]:
    """Every episode of a replay directory, through the format that recognises it."""
    fmt = detect_format(root)
    refs = fmt.list(root)
    if not refs:
        raise BadInputError(f"no episodes found (format {fmt.name})", path=root)
    return [fmt.load(ref) for ref in refs]


def train(
    stream: Stream,
    out: Path,
    *,
    preset: Preset,
    steps: int,
    save_every: int,
    batch: int = 16,
    length: int = 32,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> list[Path]:
    """Train from scratch for `steps` updates; checkpoints every `save_every` and at the end."""
    if stream.steps < length:
        raise BadInputError(f"the replay has {stream.steps} steps, fewer than --length {length}")
    existing = sorted(p.name for p in out.glob("ckpt-*.safetensors") if NAME.fullmatch(p.name))
    if existing:
        raise BadInputError(
            f"already holds checkpoints ({existing[0]}, ...); choose a new --out", path=out
        )
    dev = torch.device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator(dev).manual_seed(seed)
    image_shape = stream.image.shape[1:]
    model = NativeWorldModel(preset, stream.action.shape[1], image_shape).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=preset.lr, eps=1e-8)
    written: list[Path] = []
    bar = tqdm(total=steps, disable=not progress, unit="upd", dynamic_ncols=True)
    began = time.perf_counter()
    for step in range(1, steps + 1):
        loss, metrics = model.loss(stream.sample(rng, batch, length, dev), generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip)
        opt.step()
        rate = step / (time.perf_counter() - began)
        bar.set_postfix_str(
            f"loss {metrics['loss']:.1f} image {metrics['image']:.1f} kl {metrics['kl']:.2f} "
            f"({metrics['kl_dyn']:.2f} clipped) {rate:.2f} upd/s"
        )
        bar.update()
        if step % save_every == 0 or step == steps:
            written.append(save_checkpoint(model, out, step))
    bar.close()
    return written


def default_threads() -> int:
    """Settings' value, else all cores but one: oversubscribed torch threads were ~20x slower."""
    configured = get_settings().torch_threads
    return configured if configured > 0 else max(1, len(os.sched_getaffinity(0)) - 1)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replay", type=Path, required=True, help="replay directory to train on")
    parser.add_argument("--out", type=Path, required=True, help="run directory for checkpoints")
    parser.add_argument("--steps", type=int, required=True, help="gradient updates")
    parser.add_argument("--save-every", type=int, required=True, help="updates between checkpoints")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16, help="sequences per update")
    parser.add_argument("--length", type=int, default=32, help="steps per sequence")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: cores-1)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    for flag in ("steps", "save_every", "batch", "length"):
        if getattr(args, flag) < 1:
            raise BadInputError(f"--{flag.replace('_', '-')} must be at least 1")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise BadInputError(f"unknown --device {args.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError("--device cuda asked for, but torch sees no CUDA device")
    torch.set_num_threads(args.threads or default_threads())
    if args.out.exists() and not args.out.is_dir():
        raise BadInputError("--out exists and is not a directory", path=args.out)
    stream = Stream.join(load_episodes(args.replay))
    paths = train(
        stream,
        args.out,
        preset=get_preset(args.preset),
        steps=args.steps,
        save_every=args.save_every,
        batch=args.batch,
        length=args.length,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    print(f"wrote {len(paths)} checkpoints to {args.out} (last: {paths[-1].name})")
    return 0
