"""`beliefscope train`: fit the native world model to replay directories, writing checkpoints.

Episodes are joined into one stream (their `is_first` flags keep them apart) and training
windows are drawn uniformly from it, so episodes shorter than the window still count. The
first step of every window is a reset, because the state before it is unknown. The stream is
ordered by episode content (fingerprint), not by file name or directory order, so the same
episodes give the same weights wherever and however they are stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from tqdm import tqdm

from beliefscope.config import get_settings
from beliefscope.errors import BadInputError
from beliefscope.replay.base import Episode, detect_format
from beliefscope.rssm.checkpoint import NAME, checkpoint_name, load_checkpoint, save_checkpoint
from beliefscope.rssm.native import Batch, NativeWorldModel
from beliefscope.rssm.nets import stages
from beliefscope.rssm.presets import PRESETS, Preset, get_preset
from beliefscope.rssm.recipe import Recipe, dropout_mask, occlude_frames


@dataclass
class Stream:
    """All episodes end to end, time-major numpy arrays of one length."""

    image: np.ndarray  # (N, H, W, C) uint8
    action: np.ndarray  # (N, A) float32
    reward: np.ndarray  # (N,) float32
    is_first: np.ndarray  # (N,) bool
    is_terminal: np.ndarray  # (N,) bool
    fingerprints: tuple[str, ...] = ()
    """`Episode.fingerprint` of every episode joined, in order: recorded in checkpoints."""

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
            fingerprints=tuple(ep.fingerprint for ep in episodes),
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


@dataclass(frozen=True)
class TrainConfig:
    """Everything that fixes a training run's trajectory besides the data and the step count;
    a resumed run must match it exactly."""

    preset: Preset
    recipe: Recipe = Recipe()
    batch: int = 16
    length: int = 32
    seed: int = 0
    init: str | None = None
    """SHA-256 of the starting weights of a fine-tune; None when trained from scratch."""

    def to_dict(self) -> dict:
        return {
            "preset": asdict(self.preset),
            "recipe": self.recipe.to_dict(),
            "batch": self.batch,
            "length": self.length,
            "seed": self.seed,
            "init": self.init,
        }


def _weights_digest(model: NativeWorldModel | None) -> str | None:
    if model is None:
        return None
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


STATE = "train-state.safetensors"
"""The optimizer and random-number state after the latest checkpoint: `--resume` continues
from it exactly as if the run had never stopped (safetensors + JSON: loading runs no code)."""
STATE_META = "beliefscope-train"


def _save_state(
    out: Path,
    step: int,
    config: TrainConfig,
    data: str,
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> None:
    tensors: dict[str, torch.Tensor] = {"generator": generator.get_state()}
    for index, slot in opt.state_dict()["state"].items():
        for name, value in slot.items():
            tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {
        "step": step,
        "config": config.to_dict(),
        "data": data,
        "numpy_rng": rng.bit_generator.state,
    }
    tmp = out / f".{STATE}.{os.getpid()}.part"
    tmp.write_bytes(save(tensors, metadata={STATE_META: json.dumps(meta)}))
    os.replace(tmp, out / STATE)


def _load_state(
    out: Path,
    config: TrainConfig,
    data: str,
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> int:
    """Restore the state saved in `out`; returns the step it was saved at."""
    path = out / STATE
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            meta = json.loads((file.metadata() or {})[STATE_META])
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, KeyError, ValueError) as err:
        raise BadInputError(
            f"no readable training state to resume from ({err})", path=path
        ) from None
    saved, current = meta["config"], json.loads(json.dumps(config.to_dict()))
    differs = sorted(key for key in current if saved.get(key) != current[key])
    if differs:
        raise BadInputError(
            f"resume with the run's own options: {', '.join(differs)} differ from the saved "
            f"run ({json.dumps({k: saved[k] for k in differs})})",
            path=path,
        )
    if meta["data"] != data:
        raise BadInputError("the replay differs from the one this run trained on", path=path)
    state = opt.state_dict()
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, index, key = name.split(".", 2)
            slots.setdefault(int(index), {})[key] = value
    state["state"] = slots
    opt.load_state_dict(state)
    generator.set_state(tensors["generator"])
    rng.bit_generator.state = meta["numpy_rng"]
    return int(meta["step"])


def data_signature(stream: Stream) -> str:
    """A hash of the training stream, so a run never resumes on other data."""
    digest = hashlib.sha256()
    for array in (stream.image, stream.action, stream.reward, stream.is_first, stream.is_terminal):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


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
    recipe: Recipe = Recipe(),
    resume: bool = False,
    init: NativeWorldModel | None = None,
) -> list[Path]:
    """Train for `steps` updates; checkpoints every `save_every` and at the end, each with the
    optimizer and random state beside it, so `resume=True` continues a stopped run to the
    same weights an uninterrupted one reaches. `init` starts from a model's weights instead of
    a fresh initialisation (a fine-tune)."""
    if stream.steps < length:
        raise BadInputError(f"the replay has {stream.steps} steps, fewer than --length {length}")
    config = TrainConfig(preset, recipe, batch, length, seed, _weights_digest(init))
    existing = sorted(p for p in out.glob("ckpt-*.safetensors") if NAME.fullmatch(p.name))
    if existing and not resume:
        raise BadInputError(
            f"already holds checkpoints ({existing[0].name}, ...); choose a new --out or --resume",
            path=out,
        )
    dev = torch.device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator(dev).manual_seed(seed)
    image_shape = stream.image.shape[1:]
    model = NativeWorldModel(preset, stream.action.shape[1], image_shape).to(dev)
    if init is not None:
        if init.spec.action_dim != model.spec.action_dim or init.spec.image_shape != image_shape:
            raise BadInputError(
                f"the --init model takes actions of size {init.spec.action_dim} and frames "
                f"{init.spec.image_shape}; the replay has {model.spec.action_dim} and "
                f"{tuple(image_shape)}"
            )
        model.load_state_dict(init.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=preset.lr, eps=1e-8)
    data = data_signature(stream)
    done = 0
    if resume and existing:
        done = _load_state(out, config, data, opt, rng, generator)
        latest = out / checkpoint_name(done)
        model.load_state_dict(load_checkpoint(latest, dev).state_dict())
        model.train()
        if done >= steps:
            raise BadInputError(
                f"the run is already at step {done}; ask for more --steps", path=out
            )
    written: list[Path] = []
    bar = tqdm(initial=done, total=steps, disable=not progress, unit="upd", dynamic_ncols=True)
    began = time.perf_counter()
    for step in range(done + 1, steps + 1):
        sample = stream.sample(rng, batch, length, dev)
        is_first = sample["is_first"].cpu().numpy()
        observed = dropout_mask(rng, is_first, recipe)
        if observed is not None:
            sample["observed"] = torch.from_numpy(observed).to(dev)
        seen = occlude_frames(rng, sample["image"].cpu().numpy(), is_first, recipe)
        if seen is not None:
            sample["seen"] = torch.from_numpy(seen).to(dev)
        loss, metrics = model.loss(sample, generator, recipe)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip)
        opt.step()
        rate = (step - done) / (time.perf_counter() - began)
        bar.set_postfix_str(
            f"loss {metrics['loss']:.1f} image {metrics['image']:.1f} kl {metrics['kl']:.2f} "
            f"({metrics['kl_dyn']:.2f} clipped) {rate:.2f} upd/s"
        )
        bar.update()
        if step % save_every == 0 or step == steps:
            written.append(save_checkpoint(model, out, step, recipe, stream.fingerprints))
            _save_state(out, step, config, data, opt, rng, generator)
    bar.close()
    return written


def default_threads() -> int:
    """Settings' value, else all cores but one: oversubscribed torch threads were ~20x slower."""
    configured = get_settings().torch_threads
    return configured if configured > 0 else max(1, len(os.sched_getaffinity(0)) - 1)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replay",
        type=Path,
        required=True,
        action="append",
        help="replay directory to train on (repeat to train on several)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory for checkpoints")
    parser.add_argument("--steps", type=int, required=True, help="gradient updates")
    parser.add_argument("--save-every", type=int, required=True, help="updates between checkpoints")
    parser.add_argument(
        "--preset", default=None, choices=sorted(PRESETS), help="model size (default: tiny)"
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CKPT",
        help="start from this native checkpoint's weights (fine-tune; fresh optimizer)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16, help="sequences per update")
    parser.add_argument("--length", type=int, default=32, help="steps per sequence")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: cores-1)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (same options, more --steps)",
    )
    levers = parser.add_argument_group(
        "memory levers (off by default: DreamerV3's recipe; see docs/memory.md)"
    )
    levers.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of windows that withhold a block of frames (decoded from the prior)",
    )
    levers.add_argument(
        "--dropout-len", default="3-10", metavar="A-B", help="withheld block length in steps"
    )
    levers.add_argument(
        "--occlude",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of windows in which a grey rectangle hides part of the encoder's view "
        "for a block of steps (the decoder still draws the clean frames)",
    )
    levers.add_argument("--occlude-len", default="3-10", metavar="A-B", help="block length")
    levers.add_argument(
        "--occlude-size", default="0.25-0.5", metavar="A-B", help="rectangle side / frame side"
    )
    levers.add_argument(
        "--overshoot", type=int, default=0, metavar="K", help="latent overshooting horizon"
    )
    levers.add_argument("--overshoot-starts", type=int, default=2, metavar="N")
    levers.add_argument("--overshoot-scale", type=float, default=1.0, metavar="W")
    levers.add_argument(
        "--reward-scale", type=float, default=1.0, metavar="W", help="weight of the reward loss"
    )


def _pair(flag: str, text: str, kind: type) -> tuple:
    try:
        lo, hi = (kind(part) for part in text.split("-"))
    except ValueError:
        raise BadInputError(f"--{flag} must be A-B, got {text!r}") from None
    return lo, hi


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    return Recipe(
        dropout=args.dropout,
        dropout_len=_pair("dropout-len", args.dropout_len, int),
        occlude=args.occlude,
        occlude_len=_pair("occlude-len", args.occlude_len, int),
        occlude_size=_pair("occlude-size", args.occlude_size, float),
        overshoot=args.overshoot,
        overshoot_starts=args.overshoot_starts,
        overshoot_scale=args.overshoot_scale,
        reward_scale=args.reward_scale,
    )


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
    episodes = [ep for root in args.replay for ep in load_episodes(root)]
    stream = Stream.join(sorted(episodes, key=lambda ep: ep.fingerprint))
    init = None
    if args.init is not None:
        init = load_checkpoint(args.init)
        if args.preset is not None and get_preset(args.preset) != init.preset:
            raise BadInputError(
                f"--preset {args.preset} differs from the --init checkpoint's "
                f"({init.preset.name}); leave --preset out to keep the checkpoint's",
                path=args.init,
            )
    paths = train(
        stream,
        args.out,
        preset=init.preset if init is not None else get_preset(args.preset or "tiny"),
        steps=args.steps,
        save_every=args.save_every,
        batch=args.batch,
        length=args.length,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
        recipe=recipe_from_args(args),
        resume=args.resume,
        init=init,
    )
    print(f"wrote {len(paths)} checkpoints to {args.out} (last: {paths[-1].name})")
    return 0
