"""A default-size dreamerv3-torch world model with random weights, as a `latest.pt` state dict.

Built from the key names and shapes Beliefscope's dreamerv3-torch format reads (see
`beliefscope.rssm.families.dreamerv3_torch`), so the bench measures the product's loader and
math at the size users run (the repo's defaults: deter 512, hidden 512, 32 x 32 latents, CNN
depth 32, 64 x 64 frames, heads of 2 x 512 units) without depending on the repo itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from beliefscope.rssm.families.dreamerv3_torch import TorchWorldModel
from beliefscope.rssm.formats import CheckpointRef, get_format


@dataclass(frozen=True)
class Size:
    deter: int = 512
    hidden: int = 512
    groups: int = 32
    classes: int = 32
    depth: int = 32
    actions: int = 6
    units: int = 512
    image: int = 64
    reward_bins: int = 255

    @property
    def stages(self) -> int:
        """Stride-2 convs from `image` down to 4 x 4."""
        return (self.image // 4).bit_length() - 1


def state_dict(size: Size, seed: int = 0) -> dict[str, Tensor]:
    """Random weights under the repo's `WorldModel.state_dict()` names (fan-in scaled, so the
    activations stay in range through every layer)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Tensor] = {}

    def weight(key: str, *shape: int) -> None:
        fan_in = 1
        for n in shape[1:]:
            fan_in *= n
        out[key] = torch.randn(*shape, generator=gen) / fan_in**0.5

    def norm(prefix: str, n: int) -> None:
        out[f"{prefix}.weight"] = 1.0 + 0.1 * torch.randn(n, generator=gen)
        out[f"{prefix}.bias"] = 0.1 * torch.randn(n, generator=gen)

    def bias(key: str, n: int) -> None:
        out[key] = 0.1 * torch.randn(n, generator=gen)

    stoch = size.groups * size.classes
    feat = stoch + size.deter
    channels = [3] + [size.depth * 2**i for i in range(size.stages)]
    for i in range(size.stages):  # Sequential(conv, norm, act) per stage: indices 3i, 3i + 1
        weight(f"encoder._cnn.layers.{3 * i}.weight", channels[i + 1], channels[i], 4, 4)
        norm(f"encoder._cnn.layers.{3 * i + 1}.norm", channels[i + 1])
    embed = channels[-1] * 16
    d = "dynamics"
    out[f"{d}.W"] = torch.zeros(1, size.deter)
    weight(f"{d}._img_in_layers.0.weight", size.hidden, stoch + size.actions)
    norm(f"{d}._img_in_layers.1", size.hidden)
    weight(f"{d}._cell.layers.GRU_linear.weight", 3 * size.deter, size.hidden + size.deter)
    norm(f"{d}._cell.layers.GRU_norm", 3 * size.deter)
    weight(f"{d}._img_out_layers.0.weight", size.hidden, size.deter)
    norm(f"{d}._img_out_layers.1", size.hidden)
    weight(f"{d}._obs_out_layers.0.weight", size.hidden, size.deter + embed)
    norm(f"{d}._obs_out_layers.1", size.hidden)
    for stat in ("_imgs_stat_layer", "_obs_stat_layer"):
        weight(f"{d}.{stat}.weight", stoch, size.hidden)
        bias(f"{d}.{stat}.bias", stoch)
    dec = "heads.decoder._cnn"
    weight(f"{dec}._linear_layer.weight", embed, feat)
    bias(f"{dec}._linear_layer.bias", embed)
    up = channels[::-1]  # transposed convs: weight (in, out, k, k)
    for i in range(size.stages):
        weight(f"{dec}.layers.{3 * i}.weight", up[i], up[i + 1], 4, 4)
        if i < size.stages - 1:
            norm(f"{dec}.layers.{3 * i + 1}.norm", up[i + 1])
    bias(f"{dec}.layers.{3 * (size.stages - 1)}.bias", 3)
    for head, name, outputs in (("reward", "Reward", size.reward_bins), ("cont", "Cont", 1)):
        for i in range(2):
            weight(
                f"heads.{head}.layers.{name}_linear{i}.weight",
                size.units,
                feat if i == 0 else size.units,
            )
            norm(f"heads.{head}.layers.{name}_norm{i}", size.units)
        weight(f"heads.{head}.mean_layer.weight", outputs, size.units)
        bias(f"heads.{head}.mean_layer.bias", outputs)
    return out


def save(folder: Path, size: Size = Size(), seed: int = 0) -> Path:
    """`folder/latest.pt` (the agent's `_wm.` copy) and the config that names the latent split."""
    folder.mkdir(parents=True, exist_ok=True)
    agent = {f"_wm.{k}": v for k, v in state_dict(size, seed).items()}
    path = folder / "latest.pt"
    torch.save({"agent_state_dict": agent, "optims_state_dict": {}}, path)
    config = {"dyn_stoch": size.groups, "dyn_discrete": size.classes, "num_actions": size.actions}
    (folder / "config.json").write_text(json.dumps(config))
    return path


def load(path: Path) -> TorchWorldModel:
    """The model as `beliefscope ingest` loads it."""
    return get_format("dreamerv3-torch").load(CheckpointRef("dreamerv3-torch", path, None))
