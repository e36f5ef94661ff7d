"""Native checkpoints: safetensors weights with the model config as JSON in the metadata.

`ckpt-<step:08d>.safetensors` holds every tensor of the model's state dict and one metadata
entry, `beliefscope`: JSON with `kind` ("native"), the preset's fields, action_dim,
image_shape, step, the training recipe (`rssm.recipe`; older files: DreamerV3's) and the
fingerprints of the episodes it trained on (`train_episodes`; older files: none). One
entry, because safetensors writes several in no fixed order, and the same weights should give
the same bytes (ingest hashes checkpoint files).
Loading parses only the header and raw tensor bytes, so it never executes code; every tensor
is checked against the shapes the config implies before the model is built from it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from beliefscope.errors import BadInputError
from beliefscope.rssm.formats import CheckpointRef, register
from beliefscope.rssm.native import NativeWorldModel
from beliefscope.rssm.presets import preset_from_dict
from beliefscope.rssm.recipe import Recipe

KIND = "native"
META = "beliefscope"  # the metadata key holding the config
NAME = re.compile(r"ckpt-(\d+)\.safetensors")


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.safetensors"


def save_checkpoint(
    model: NativeWorldModel,
    out_dir: Path,
    step: int,
    recipe: Recipe = Recipe(),
    train_episodes: Sequence[str] = (),
) -> Path:
    """Write `out_dir/ckpt-<step>.safetensors` atomically (a temp file, then a rename)."""
    config = {
        "kind": KIND,
        **asdict(model.preset),
        "action_dim": model.spec.action_dim,
        "image_shape": list(model.spec.image_shape),
        "step": step,
        "recipe": recipe.to_dict(),
        "train_episodes": list(train_episodes),
    }
    tensors = {
        name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()
    }
    blob = save(tensors, metadata={META: json.dumps(config)})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / checkpoint_name(step)
    # The temp name does not match `ckpt-*.safetensors`, so a watcher never picks it up; a
    # plain `open` (not mkstemp) keeps the umask's permissions, so a server can read the file.
    tmp = out_dir / f".{path.name}.{os.getpid()}.part"
    try:
        with open(tmp, "wb") as file:
            file.write(blob)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> NativeWorldModel:
    """Rebuild the model from the metadata and load weights whose shapes all match it."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            model = _build(path, metadata)
            expected = model.state_dict()
            stored = set(file.keys())
            missing = sorted(set(expected) - stored)
            extra = sorted(stored - set(expected))
            if missing or extra:
                which = (
                    f"missing tensor {missing[0]!r}"
                    if missing
                    else f"unexpected tensor {extra[0]!r}"
                )
                raise BadInputError(f"weights do not match the model config: {which}", path=path)
            weights = {}
            for name, want in expected.items():
                shape = tuple(file.get_slice(name).get_shape())
                if shape != tuple(want.shape):
                    raise BadInputError(
                        f"tensor {name!r} has shape {shape}, the config implies "
                        f"{tuple(want.shape)}",
                        path=path,
                    )
                weights[name] = file.get_tensor(name)
    except (SafetensorError, OSError) as err:
        raise BadInputError(f"unreadable safetensors checkpoint ({err})", path=path) from None
    model.load_state_dict(weights)
    return model.to(device).eval()


def _build(path: Path, metadata: dict[str, str]) -> NativeWorldModel:
    try:
        config = json.loads(metadata[META])
        kind = config.pop("kind")
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BadInputError(f"not a native checkpoint (no {META!r} metadata)", path=path) from None
    if kind != KIND:
        raise BadInputError(f"not a native checkpoint (kind {kind!r})", path=path)
    try:
        action_dim = config.pop("action_dim")
        image_shape = tuple(config.pop("image_shape"))
        step = config.pop("step", None)
        recipe = Recipe.from_dict(config.pop("recipe", {}))
        trained_on = [str(f) for f in config.pop("train_episodes", [])]
        model = NativeWorldModel(preset_from_dict(config), action_dim, image_shape)
        extra = {"step": step, "recipe": recipe.to_dict(), "train_episodes": trained_on}
        model.spec = replace(model.spec, config={**model.spec.config, **extra})
        return model
    except BadInputError as err:
        raise BadInputError(str(err), path=path) from None
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise BadInputError(f"bad model config in metadata ({err!r})", path=path) from None


def read_step(path: Path) -> int | None:
    match = NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


class NativeCheckpoints:
    """The `native` checkpoint format: files written by `beliefscope train`."""

    name = KIND
    patterns = "ckpt-<step>.safetensors"

    def discover(self, logdir: Path) -> list[CheckpointRef]:
        paths = sorted(p for p in logdir.rglob("ckpt-*.safetensors") if NAME.fullmatch(p.name))
        return [CheckpointRef(self.name, path, read_step(path)) for path in paths]

    def load(self, ref: CheckpointRef, *, config: dict | None = None) -> NativeWorldModel:
        """`config` is not needed: native checkpoints carry their own."""
        return load_checkpoint(ref.path)

    def content_files(self, ref: CheckpointRef) -> list[Path]:
        return [ref.path]


register(NativeCheckpoints())
