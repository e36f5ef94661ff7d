"""NM512/dreamerv3-torch: `latest.pt` checkpoints, rebuilt from tensor shapes.

`latest.pt` is `{agent_state_dict, optims_state_dict}`; the agent holds the world model as
`_wm.` (or `_wm._orig_mod.` under `torch.compile`, the repo's default) and repeats it inside
its behaviours, so only the `_wm` copy is read. Shapes give every size; what they cannot give
(how the latent width splits into groups x classes, recurrence depth, output transforms) comes
from a config file next to the checkpoint or the repo's defaults, and each assumption is listed
in `spec.config["assumed"]`.

The math follows the repo's `networks.RSSM`: LayerNorm GRU (one fused bias-free linear, reset
gate on the candidate, update bias -1), learned initial state `deter = tanh(W)` with
`stoch = mode(prior(deter))`, 1% unimix, KL summed over groups.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from beliefscope.errors import BadInputError
from beliefscope.rssm.core import ModelSpec, RSSMCell, State
from beliefscope.rssm.dist import Categorical, Gaussian, LatentDist
from beliefscope.rssm.families.params import Params, Settings, lookup, read_config
from beliefscope.rssm.formats import CheckpointRef, register
from beliefscope.rssm.onednn import Linear

FAMILY = "dreamerv3-torch"
CHECKPOINT_NAME = "latest.pt"
CONFIG_NAMES = ("config.yaml", "config_used.json", "config.json")
NORM_EPS = 1e-3  # the repo's LayerNorm epsilon everywhere
REWARD_BINS = (-20.0, 20.0)  # tools.DiscDist buckets, in symlog space


def _activation(name: str, path: Path) -> nn.Module:
    module = getattr(nn, name, None)
    if not (isinstance(module, type) and issubclass(module, nn.Module)):
        raise BadInputError(f"config names an unknown activation {name!r}", path=path)
    return module()


class _Dense:
    """`Linear(bias=False) -> LayerNorm(eps 1e-3) -> act` as the repo's MLP blocks store it."""

    def __init__(self, p: Params, linear: str, norm: str | None, act: nn.Module) -> None:
        self.linear = Linear(p.get(f"{linear}.weight", 2), p.optional(f"{linear}.bias"))
        self.norm = None if norm is None else p.affine(norm)
        self.act = act

    def __call__(self, x: Tensor) -> Tensor:
        x = self.linear(x)
        if self.norm is not None:
            x = F.layer_norm(x, x.shape[-1:], *self.norm, eps=NORM_EPS)
        return self.act(x)


def _sequential_dense(p: Params, prefix: str, act: nn.Module) -> _Dense:
    """A `nn.Sequential(Linear, [LayerNorm], act)` stored under `prefix.0`, `prefix.1`."""
    norm = f"{prefix}.1" if p.has(f"{prefix}.1.weight") else None
    return _Dense(p, f"{prefix}.0", norm, act)


def _channel_norm(x: Tensor, norm: tuple[Tensor, Tensor] | None) -> Tensor:
    """LayerNorm over channels of an NCHW tensor (the repo's ImgChLayerNorm)."""
    if norm is None:
        return x
    x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    x = F.layer_norm(x, x.shape[-1:], *norm, eps=NORM_EPS)
    return x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


def _conv_layers(p: Params, prefix: str) -> list[tuple[Tensor, Tensor | None, tuple | None]]:
    """(weight, bias, norm) of each conv in an `nn.Sequential` of conv / norm / act layers.

    Weights are laid out channels-last once, here: frames arrive channels-last (NHWC), the
    channel norm wants them so, and CPU convolutions run about twice as fast on that layout
    (a weight in the other layout would be converted on every call)."""
    layers = []
    for i in p.indices(rf"{re.escape(prefix)}\.(\d+)\.weight"):
        weight = p.get(f"{prefix}.{i}.weight", 4).contiguous(memory_format=torch.channels_last)
        bias = p.optional(f"{prefix}.{i}.bias")
        layers.append((weight, bias, p.optional_affine(f"{prefix}.{i + 1}.norm")))
    if not layers:
        raise BadInputError(f"missing world-model keys {prefix}.*", path=p.path)
    return layers


class TorchCell:
    """The repo's RSSM cell (`img_step`, `obs_step`'s posterior, `initial`), batch-first."""

    def __init__(self, p: Params, *, groups: int, classes: int, action_dim: int, discrete: bool,
                 act: nn.Module, rec_depth: int, unimix: float, std_act: str, min_std: float,
                 mean_act: str) -> None:  # fmt: skip
        self.path = p.path
        self.groups, self.classes, self.action_dim = groups, classes, action_dim
        self.discrete, self.rec_depth, self.unimix = discrete, rec_depth, unimix
        self.std_act, self.min_std, self.mean_act = std_act, min_std, mean_act
        self.img_in = _sequential_dense(p, "dynamics._img_in_layers", act)
        self.gru = Linear(p.get("dynamics._cell.layers.GRU_linear.weight", 2))
        self.gru_norm = p.optional_affine("dynamics._cell.layers.GRU_norm")
        self.img_out = _sequential_dense(p, "dynamics._img_out_layers", act)
        self.obs_out = _sequential_dense(p, "dynamics._obs_out_layers", act)
        self.ims_stat = Linear(*p.affine("dynamics._imgs_stat_layer"))
        self.obs_stat = Linear(*p.affine("dynamics._obs_stat_layer"))
        self.W = p.optional("dynamics.W")  # learned initial state; absent for `initial: zeros`
        self.deter = self.gru.weight.shape[0] // 3

    def initial(self, batch: int) -> State:
        if self.W is None:
            shape = (self.groups, self.classes) if self.discrete else (self.groups,)
            return {"deter": torch.zeros(batch, self.deter), "stoch": torch.zeros(batch, *shape)}
        deter = torch.tanh(self.W).repeat(batch, 1)  # (1, D) -> (B, D)
        return {"deter": deter, "stoch": self._prior(deter).mode()}

    def img_step(self, state: State, action: Tensor) -> tuple[Tensor, LatentDist]:
        if action.shape[-1] != self.action_dim:
            raise BadInputError(
                f"actions have {action.shape[-1]} columns but this checkpoint's model takes "
                f"{self.action_dim}",
                path=self.path,
            )
        stoch = state["stoch"].reshape(action.shape[0], -1)  # (B, G, K) -> (B, G*K)
        x = self.img_in(torch.cat([stoch, action], -1))
        prev = state["deter"]
        for _ in range(self.rec_depth):  # the repo feeds each pass's output back as input
            x = self._gru(x, prev)
        return x, self._prior(x)

    def obs_dist(self, deter: Tensor, embed: Tensor) -> LatentDist:
        return self._dist(self.obs_stat(self.obs_out(torch.cat([deter, embed], -1))))

    def _gru(self, x: Tensor, deter: Tensor) -> Tensor:
        parts = self.gru(torch.cat([x, deter], -1))
        if self.gru_norm is not None:
            parts = F.layer_norm(parts, parts.shape[-1:], *self.gru_norm, eps=NORM_EPS)
        reset, cand, update = torch.split(parts, [self.deter] * 3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1 - update) * deter

    def _prior(self, deter: Tensor) -> LatentDist:
        return self._dist(self.ims_stat(self.img_out(deter)))

    def _dist(self, stats: Tensor) -> LatentDist:
        if self.discrete:
            # (B, G*K) -> (B, G, K)
            logits = stats.reshape(*stats.shape[:-1], self.groups, self.classes)
            return Categorical(logits, self.unimix)
        mean, std = torch.split(stats, [self.groups] * 2, -1)
        if self.mean_act == "tanh5":
            mean = 5.0 * torch.tanh(mean / 5.0)
        std = {
            "softplus": lambda: F.softplus(std),
            "abs": lambda: torch.abs(std + 1),
            "sigmoid": lambda: torch.sigmoid(std),
            "sigmoid2": lambda: 2 * torch.sigmoid(std / 2),
        }[self.std_act]()
        return Gaussian(mean, std + self.min_std)


class TorchWorldModel:
    """The repo's `WorldModel`: CNN encoder, RSSM, CNN decoder, reward and cont MLP heads."""

    spec: ModelSpec  # set by `build` once every size is known

    def __init__(
        self,
        p: Params,
        cell: TorchCell,
        act: nn.Module,
        *,
        cnn_sigmoid: bool,
        reward_transform: str,
    ) -> None:
        self.cell: RSSMCell = cell  # the contract's view; `rssm` keeps the concrete type
        self.rssm, self.act = cell, act
        self.cnn_sigmoid, self.reward_transform = cnn_sigmoid, reward_transform
        self.enc = _conv_layers(p, "encoder._cnn.layers")
        self.dec_linear = Linear(*p.affine("heads.decoder._cnn._linear_layer"))
        self.dec = _conv_layers(p, "heads.decoder._cnn.layers")
        self.dec_out = _subpixel(*self.dec[-1][:2])
        self.reward_mlp = _mlp(p, "heads.reward", "Reward", act)
        self.reward_out = Linear(*p.affine("heads.reward.mean_layer"))
        self.cont_mlp = _mlp(p, "heads.cont", "Cont", act)
        self.cont_out = Linear(*p.affine("heads.cont.mean_layer"))

    def encode(self, image: Tensor) -> Tensor:
        assert image.ndim == 5, image.shape
        batch, steps = image.shape[:2]
        x = image.to(torch.float32) / 255.0 - 0.5
        # (B, T, H, W, C) -> (B*T, C, H, W), a channels-last view: no copy
        x = x.reshape(-1, *x.shape[2:]).permute(0, 3, 1, 2)
        for weight, bias, norm in self.enc:
            x = _same_conv(x, weight, bias, stride=2)
            x = self.act(_channel_norm(x, norm))
        return x.reshape(batch, steps, -1)  # (B*T, C, h, w) -> (B, T, C*h*w)

    def feat(self, deter: Tensor, stoch: Tensor) -> Tensor:
        # (..., G, K) -> (..., G*K)
        flat = stoch.flatten(deter.ndim - 1) if self.rssm.discrete else stoch
        return torch.cat([flat, deter], -1)

    def decode(self, feat: Tensor) -> Tensor:
        lead = feat.shape[:-1]
        x = self.dec_linear(feat.reshape(-1, feat.shape[-1]))
        channels = self.dec[0][0].shape[0]
        minres = math.isqrt(x.shape[-1] // channels)
        # (N, h*w*C) -> (N, h, w, C) -> (N, C, h, w): the repo reshapes channels-last, and
        # the permuted view is a channels-last tensor, the convolutions' fast layout
        x = x.reshape(-1, minres, minres, channels).permute(0, 3, 1, 2)
        last = len(self.dec) - 1 if self.dec_out is not None else len(self.dec)
        for i, (weight, bias, norm) in enumerate(self.dec[:last]):
            excess = weight.shape[-1] - 2  # "same" transposed conv, stride 2 (calc_same_pad)
            pad = math.ceil(excess / 2)
            x = F.conv_transpose2d(
                x, weight, bias, stride=2, padding=pad, output_padding=2 * pad - excess
            )
            if i < len(self.dec) - 1:
                x = self.act(_channel_norm(x, norm))
        if self.dec_out is None:
            x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        else:
            x = F.conv2d(x, *self.dec_out, padding=1)  # (N, 4 C, h, w), channels (a, b, C)
            n, c4, h, w = x.shape
            # (N, h, w, a, b, C) -> (N, h, a, w, b, C) -> (N, 2h, 2w, C): output pixel
            # (2i + a, 2j + b) of the transposed convolution
            x = x.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, c4 // 4)
            x = x.permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c4 // 4)
        x = torch.sigmoid(x) if self.cnn_sigmoid else x + 0.5
        return x.reshape(*lead, *x.shape[1:])

    def reward(self, feat: Tensor) -> Tensor:
        x = feat
        for layer in self.reward_mlp:
            x = layer(x)
        out = self.reward_out(x)
        if out.shape[-1] > 1:  # symlog_disc: symexp of the bucket expectation
            buckets = torch.linspace(*REWARD_BINS, steps=out.shape[-1])
            return _symexp((torch.softmax(out, -1) * buckets).sum(-1))
        return _symexp(out[..., 0]) if self.reward_transform.startswith("symlog") else out[..., 0]

    def cont(self, feat: Tensor) -> Tensor:
        x = feat
        for layer in self.cont_mlp:
            x = layer(x)
        return torch.sigmoid(self.cont_out(x)[..., 0])


def _mlp(p: Params, prefix: str, name: str, act: nn.Module) -> list[_Dense]:
    """The hidden layers of the repo's `networks.MLP` (`{name}_linear{i}`, `{name}_norm{i}`)."""
    layers = []
    for i in range(p.count(rf"{re.escape(prefix)}\.layers\.{name}_linear(\d+)\.weight")):
        norm = f"{prefix}.layers.{name}_norm{i}"
        norm_or_none = norm if p.has(f"{norm}.weight") else None
        layers.append(_Dense(p, f"{prefix}.layers.{name}_linear{i}", norm_or_none, act))
    return layers


def _same_conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
    """Conv with the TF-style "same" padding of the repo's Conv2dSamePad (an odd total puts
    the extra pixel right/bottom); symmetric padding (every even frame size with the repo's
    kernel 4, stride 2) goes to the convolution itself instead of a padded copy."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + weight.shape[-1] - size, 0)
        pads += [total // 2, total - total // 2]
    left, right, top, bottom = pads
    if left == right and top == bottom:
        return F.conv2d(x, weight, bias, stride=stride, padding=(top, left))
    return F.conv2d(F.pad(x, pads), weight, bias, stride=stride)


SUBPIXEL_CHANNELS = 4
"""A kernel-4, stride-2 transposed conv with at most this many outputs (the decoder's last,
to RGB) runs as a 3x3 convolution to 4x the outputs, one per output pixel parity: as a
transposed conv its GEMM is 3 columns wide, 30 GFLOP/s on the development CPU; this way the
layer takes 0.45 of the time for 2.25x the FLOPs."""

# output parity a -> (kernel row, input offset) of the two taps that reach it: output pixel
# 2m + a of a stride-2, padding-1 transposed conv reads input m + offset with that kernel row
_TAPS = {0: ((1, 0), (3, -1)), 1: ((2, 0), (0, 1))}


def _subpixel(weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None] | None:
    """The 3x3 convolution (kernel, bias) equal to the stride-2 transposed conv of `weight`
    (Cin, C, 4, 4), outputs ordered (a, b, C); None where it does not pay (see above)."""
    cin, cout, kh, kw = weight.shape
    if (kh, kw) != (4, 4) or cout > SUBPIXEL_CHANNELS:
        return None
    kernel = weight.new_zeros(2, 2, cout, cin, 3, 3)
    for a, rows in _TAPS.items():
        for b, cols in _TAPS.items():
            for row, di in rows:
                for col, dj in cols:
                    kernel[a, b, :, :, di + 1, dj + 1] = weight[:, :, row, col].T
    kernel = kernel.reshape(4 * cout, cin, 3, 3).contiguous(memory_format=torch.channels_last)
    return kernel, None if bias is None else bias.repeat(4)


def _symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * (torch.exp(torch.abs(x)) - 1.0)


def world_model_state(raw: object, path: Path) -> tuple[dict[str, Tensor], bool]:
    """The `_wm` copy of the world model from a loaded `latest.pt`: (tensors, compiled)."""
    if isinstance(raw, dict) and "dynamics._cell.layers.GRU_linear.weight" in raw:
        return dict(raw), False  # a bare `WorldModel.state_dict()`
    if not isinstance(raw, dict) or not isinstance(raw.get("agent_state_dict"), dict):
        found = sorted(raw)[:5] if isinstance(raw, dict) else type(raw).__name__
        message = f"not a dreamerv3-torch checkpoint: no 'agent_state_dict' (found {found})"
        raise BadInputError(message, path=path)
    agent = raw["agent_state_dict"]
    for prefix, compiled in (("_wm._orig_mod.", True), ("_wm.", False)):
        state = {k[len(prefix) :]: v for k, v in agent.items() if k.startswith(prefix)}
        if state:
            return state, compiled
    message = "agent_state_dict has no world-model keys ('_wm.' or '_wm._orig_mod.')"
    raise BadInputError(message, path=path)


def _actor_actions(raw: object) -> int | None:
    """The actor's output width (= number of actions), where the checkpoint has an actor."""
    agent = raw.get("agent_state_dict", {}) if isinstance(raw, dict) else {}
    widths = [v.shape[0] for k, v in agent.items() if k.endswith("actor.mean_layer.weight")]
    return int(widths[0]) if widths else None


def _latent_split(p: Params, cfg: Settings, raw: object) -> tuple[bool, int, int, int]:
    """(discrete, groups, classes, action_dim) from the dynamics' input and output widths.

    Shapes give `stat = G*K` (or `2*Z` for Gaussian latents) and `in = stat_units + A`; the
    actor's width (or the config) settles the latent kind, and the config settles G x K.
    """
    stat = p.tensors["dynamics._imgs_stat_layer.weight"].shape[0]
    width = p.tensors["dynamics._img_in_layers.0.weight"].shape[1]
    configured = lookup(cfg.config, "num_actions", None)
    actions = cfg.integer("num_actions", 0) if configured is not None else _actor_actions(raw)
    if lookup(cfg.config, "dyn_discrete", None) is not None:
        discrete = cfg.flag("dyn_discrete", True)
    elif actions is not None:
        discrete = width - stat == actions
    else:
        discrete = cfg.flag("dyn_discrete", True)
    action_dim = width - (stat if discrete else stat // 2)
    if actions is not None and actions != action_dim:
        raise BadInputError(
            f"the run has {actions} actions but the dynamics' input has room for {action_dim}",
            path=p.path,
        )
    if not discrete:
        return False, stat // 2, 1, action_dim
    if (
        lookup(cfg.config, "dyn_stoch", None) is None
        or lookup(cfg.config, "dyn_discrete", None) is None
    ):
        side = math.isqrt(stat)
        if side * side != stat:
            raise BadInputError(
                f"cannot tell how {stat} latent units split into groups x classes; put the "
                f"run's config (dyn_stoch, dyn_discrete) in {CONFIG_NAMES[0]} beside it",
                path=p.path,
            )
        cfg.assumed.append(f"dyn_stoch=dyn_discrete={side} (square split of {stat} units)")
        return True, side, side, action_dim
    groups, classes = cfg.integer("dyn_stoch", 0), cfg.integer("dyn_discrete", 0)
    if groups * classes != stat:
        raise BadInputError(
            f"config dyn_stoch x dyn_discrete = {groups}x{classes} but the checkpoint has "
            f"{stat} latent units",
            path=p.path,
        )
    return True, groups, classes, action_dim


def build(raw: object, path: Path, config: dict, config_file: Path | None) -> TorchWorldModel:
    """Rebuild the world model of a loaded `latest.pt` (see the module docstring)."""
    tensors, compiled = world_model_state(raw, path)
    if any(key.startswith(("encoder._mlp.", "heads.decoder._mlp.")) for key in tensors):
        raise BadInputError(
            "vector-observation encoders/decoders (encoder._mlp) are not supported yet; "
            "only image observations are",
            path=path,
        )
    not_float = [key for key, value in tensors.items() if not torch.is_floating_point(value)]
    if not_float:
        raise BadInputError(f"world-model key {not_float[0]!r} is not a float tensor", path=path)
    p = Params({k: v.to(torch.float32) for k, v in tensors.items()}, path, "world-model key")
    for key in ("dynamics._imgs_stat_layer.weight", "dynamics._img_in_layers.0.weight"):
        p.get(key, 2)
    cfg = Settings(config, config_file or path)
    discrete, groups, classes, action_dim = _latent_split(p, cfg, raw)
    act = _activation(cfg.text("act", "SiLU"), config_file or path)
    cell = TorchCell(
        p,
        groups=groups,
        classes=classes,
        action_dim=action_dim,
        discrete=discrete,
        act=act,
        rec_depth=cfg.integer("dyn_rec_depth", 1),
        unimix=cfg.number("unimix_ratio", 0.01),
        std_act=cfg.text("dyn_std_act", "sigmoid2", record=not discrete),
        min_std=cfg.number("dyn_min_std", 0.1, record=not discrete),
        mean_act=cfg.text("dyn_mean_act", "none", record=not discrete),
    )
    model = TorchWorldModel(
        p,
        cell,
        act,
        cnn_sigmoid=cfg.flag("decoder.cnn_sigmoid", False),
        reward_transform=cfg.text("reward_head.dist", "symlog_disc"),
    )
    p.check_all_used()
    embed = p.tensors["dynamics._obs_out_layers.0.weight"].shape[1] - cell.deter
    channels, stages = model.enc[-1][0].shape[0], len(model.enc)
    side = math.isqrt(embed // channels) * 2**stages
    if side * side * channels != embed * 4**stages:
        message = f"the encoder's output cannot fill the posterior's {embed} embedding inputs"
        raise BadInputError(message, path=path)
    size = cfg.raw("size", [side, side], record=False)
    height, width = (int(x) for x in size) if isinstance(size, list | tuple) else (side, side)
    model.spec = ModelSpec(
        family=FAMILY,
        latent="categorical" if discrete else "gaussian",
        deter=cell.deter,
        groups=groups,
        classes=classes,
        action_dim=action_dim,
        image_shape=(height, width, model.enc[0][0].shape[1]),
        free_nats=cfg.number("kl_free", 1.0),
        dyn_scale=cfg.number("dyn_scale", 0.5),
        rep_scale=cfg.number("rep_scale", 0.1),
        config={
            "format": FAMILY,
            "hidden": cell.img_in.linear.weight.shape[0],
            "embed": embed,
            "cnn_depth": model.enc[0][0].shape[0],
            "encoder_stages": stages,
            "decoder_layers": len(model.dec),
            "head_units": model.reward_out.weight.shape[1],
            "reward_outputs": model.reward_out.weight.shape[0],
            "learned_initial": cell.W is not None,
            "compiled": compiled,
            "config_file": None if config_file is None else str(config_file),
            "assumed": cfg.assumed,
        },
    )
    try:
        _run_once(model)
    except RuntimeError as error:  # shapes that do not chain (e.g. a kernel of the wrong size)
        message = f"world-model tensors do not fit together: {str(error).splitlines()[0]}"
        raise BadInputError(message, path=path) from None
    return model


@torch.no_grad()
def _run_once(model: TorchWorldModel) -> None:
    """One tiny pass through every part, so that tensors that do not fit are reported at load."""
    cell = model.rssm
    embed = model.encode(torch.zeros(1, 1, *model.spec.image_shape, dtype=torch.uint8))
    deter, _ = cell.img_step(cell.initial(1), torch.zeros(1, cell.action_dim))
    feat = model.feat(deter, cell.obs_dist(deter, embed[:, 0]).mode())
    image = model.decode(feat)
    if tuple(image.shape[1:]) != model.spec.image_shape:
        made, read = tuple(image.shape[1:]), model.spec.image_shape
        message = f"the decoder makes {made} images but the encoder reads {read}"
        raise BadInputError(message, path=cell.path)
    model.reward(feat), model.cont(feat)


METRICS_NAME = "metrics.jsonl"
METRICS_TAIL_BYTES = 64 << 10
TRAIN_EPISODES = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{32}-(\d+)\.npz$")
DEFAULT_ACTION_REPEAT = 2  # configs.yaml `defaults`


def training_step(folder: Path) -> int | None:
    """The training step the log dir records for the `latest.pt` in it, in the repo's own
    units (environment steps, its TensorBoard x axis), since `latest.pt` says nothing itself:
    the newest `step` of `metrics.jsonl` (one `{"step": ..., <scalars>}` line per
    `tools.Logger.write`, the same step the TensorBoard scalars get), else what `dreamer.py`
    counts at start, action_repeat x the transitions of `train_eps/*-<length>.npz`; None when
    the folder has neither. Cheap: the file's tail and episode file names only."""
    metrics = folder / METRICS_NAME
    if metrics.is_file():
        try:
            with metrics.open("rb") as fh:
                fh.seek(max(0, metrics.stat().st_size - METRICS_TAIL_BYTES))
                tail = fh.read().decode("utf-8", "replace")
        except OSError:
            tail = ""
        steps = [step for line in tail.splitlines() if (step := _line_step(line)) is not None]
        if steps:
            return max(steps)
    lengths = [
        int(match.group(1))
        for path in (folder / "train_eps").glob("*.npz")
        if (match := TRAIN_EPISODES.match(path.name))
    ]
    if not lengths:
        return None
    try:
        config, _ = read_config([folder], CONFIG_NAMES)
    except BadInputError:
        config = {}
    repeat = config.get("action_repeat")
    repeat = repeat if isinstance(repeat, int) and repeat > 0 else DEFAULT_ACTION_REPEAT
    return repeat * sum(length - 1 for length in lengths)


def _line_step(line: str) -> int | None:
    """The `step` of one metrics.jsonl line; None for a partial or foreign line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return int(step) if isinstance(step, int | float) and math.isfinite(step) else None


class DreamerV3TorchFormat:
    name = FAMILY
    patterns = CHECKPOINT_NAME

    def discover(self, logdir: Path) -> list[CheckpointRef]:
        if logdir.is_file():
            found = [logdir] if logdir.name == CHECKPOINT_NAME else []
        else:
            found = sorted(logdir.rglob(CHECKPOINT_NAME))
        return [
            CheckpointRef(FAMILY, path, training_step(path.parent))
            for path in found
            if path.is_file()
        ]

    def load(self, ref: CheckpointRef, *, config: dict | None = None) -> TorchWorldModel:
        try:
            raw = torch.load(ref.path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds for corrupt or unsafe files
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            message = f"cannot load with torch.load(weights_only=True): {first}"
            raise BadInputError(message, path=ref.path) from None
        file_config, config_file = read_config([ref.path.parent], CONFIG_NAMES)
        return build(raw, ref.path, {**file_config, **(config or {})}, config_file)

    def content_files(self, ref: CheckpointRef) -> list[Path]:
        _, config_file = read_config([ref.path.parent], CONFIG_NAMES)
        return [ref.path] + ([config_file] if config_file else [])


register(DreamerV3TorchFormat())
