"""Official DreamerV3 (danijar/dreamerv3, JAX): checkpoints read without JAX, math in torch.

Current layout (2025+): `ckpt/latest` names the newest `ckpt/<timestamp>[-<step>]/` folder,
which holds `agent.pkl` (`{'params': {ninjax key -> ndarray}, 'counters': ...}`), `step.pkl`
and an empty `done` written last. The late-2024 single file `checkpoint.pkl`
(`{'step', 'agent', 'replay', ...}`) holds the same params and is read too; the 2023/2024
`checkpoint.ckpt` layouts use other layer names and are refused with a clear message. Every
pickle goes through `safe_pickle`, so nothing but arrays and containers is ever built.

The math follows `dreamerv3/rssm.py` at HEAD: zero initial state, block GRU over
`dynin0(deter)`, `dynin1(stoch)` and `dynin2(action / max(1, |action|))`, RMS norm, a
two-layer prior, 1% unimix, and heads reading `concat(deter, stoch)`. Linear kernels are
`[in, out]` (`y = x @ K + b`), convolutions HWIO on NHWC activations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from beliefscope.errors import BadInputError
from beliefscope.rssm.core import ModelSpec, RSSMCell, State
from beliefscope.rssm.dist import Categorical
from beliefscope.rssm.families import safe_pickle
from beliefscope.rssm.families.params import Params, Settings, as_tensors, read_config
from beliefscope.rssm.formats import CheckpointRef, register

FAMILY = "dreamerv3"
WORLD_MODEL = ("dyn/", "enc/", "dec/", "rew/", "con/")
FOLDER = re.compile(r"\d{8}T\d{6}F\d{6}(?:-(\d+))?")
OLD_LAYOUTS = {
    "checkpoint.ckpt": "the 2023/2024 single-file layout `checkpoint.ckpt`",
    "checkpoint.pkl": "the late-2024 single-file layout `checkpoint.pkl`",
}

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "none": lambda x: x,
    "silu": F.silu,
    "gelu": lambda x: F.gelu(x, approximate="tanh"),  # jax.nn.gelu's default
    "relu": F.relu,
    "elu": F.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "mish": lambda x: x * torch.tanh(F.softplus(x)),
    "relu2": lambda x: torch.square(F.relu(x)),
}


class _Layers:
    """`Linear`, `BlockLinear`, `Conv2D` and `Norm` of `embodied/jax/nets.py` over `Params`.

    Every layer has a bias, as the official defaults (`bias=True`) give; a missing one is a
    missing key, not a layer without bias."""

    def __init__(self, p: Params, act: str, norm: str) -> None:
        if act not in ACTIVATIONS:
            raise BadInputError(f"activation {act!r} is not supported", path=p.path)
        impl, _, exponent = norm.partition("1em")
        if impl not in ("rms", "layer", "none"):
            raise BadInputError(f"norm {norm!r} is not supported", path=p.path)
        self.p, self.act, self.norm_impl = p, ACTIVATIONS[act], impl
        self.eps = 10.0 ** -int(exponent) if exponent else 1e-4
        self._kernels: dict[str, Tensor] = {}

    def linear(self, name: str, x: Tensor) -> Tensor:
        kernel = self.p.get(f"{name}/kernel", 2)
        x = x @ kernel
        return x + self.p.get(f"{name}/bias", 1)

    def block_linear(self, name: str, x: Tensor) -> Tensor:
        kernel = self.p.get(f"{name}/kernel", 3)  # (G, in/G, out/G)
        groups = kernel.shape[0]
        x = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)  # (..., in) -> (..., G, in/G)
        x = torch.einsum("...ki,kio->...ko", x, kernel)
        x = x.reshape(*x.shape[:-2], -1)  # (..., G, out/G) -> (..., out)
        return x + self.p.get(f"{name}/bias", 1)

    def conv(self, name: str, x: Tensor) -> Tensor:
        """Stride-1 SAME convolution of NHWC `x` with an HWIO kernel; odd kernels (the
        official default, 5) pad inside the convolution instead of into a copy."""
        kernel = self._conv_kernel(name)
        kh, kw = kernel.shape[-2:]
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W), a channels-last view
        if kh % 2 and kw % 2:
            x = F.conv2d(x, kernel, padding=(kh // 2, kw // 2))
        else:
            x = F.conv2d(F.pad(x, [(kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2]), kernel)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        return x + self.p.get(f"{name}/bias", 1)

    def _conv_kernel(self, name: str) -> Tensor:
        """The HWIO kernel as OIHW laid out channels-last, converted once (the frames are
        NHWC, and CPU convolutions run fastest with both in that layout)."""
        if name not in self._kernels:
            kernel = self.p.get(f"{name}/kernel", 4).permute(3, 2, 0, 1)  # HWIO -> OIHW
            self._kernels[name] = kernel.contiguous(memory_format=torch.channels_last)
        return self._kernels[name]

    def norm(self, name: str, x: Tensor) -> Tensor:
        if self.norm_impl == "none":
            return x
        scale = self.p.get(f"{name}/scale", 1)
        if self.norm_impl == "rms":
            mean2 = torch.square(x).mean(-1, keepdim=True)
            return x * (torch.rsqrt(mean2 + self.eps) * scale)
        mean = x.mean(-1, keepdim=True)
        var = torch.clamp(torch.square(x).mean(-1, keepdim=True) - torch.square(mean), min=0)
        return (x - mean) * (torch.rsqrt(var + self.eps) * scale) + self.p.get(f"{name}/shift", 1)

    def dense(self, name: str, x: Tensor, norm: str | None = None) -> Tensor:
        """Linear -> Norm -> act, the unit every official MLP is built from."""
        return self.act(self.norm(norm or f"{name}norm", self.linear(name, x)))


class OfficialCell:
    """`RSSM._core`, `_prior` and the posterior of `RSSM._observe`, batch-first."""

    def __init__(self, nets: _Layers, *, stoch: int, classes: int, unimix: float,
                 absolute: bool) -> None:  # fmt: skip
        p = nets.p
        self.nets, self.path = nets, p.path
        self.stoch, self.classes, self.unimix, self.absolute = stoch, classes, unimix, absolute
        self.deter, self.hidden = p.get("dyn/dynin0/kernel", 2).shape
        self.action_dim = p.get("dyn/dynin2/kernel", 2).shape[0]
        self.blocks = p.get("dyn/dyngru/kernel", 3).shape[0]
        self.dynlayers = p.count(r"dyn/dynhid(\d+)/kernel")
        self.imglayers = p.count(r"dyn/prior(\d+)/kernel")
        self.obslayers = p.count(r"dyn/obs(\d+)/kernel")

    def initial(self, batch: int) -> State:
        return {
            "deter": torch.zeros(batch, self.deter),
            "stoch": torch.zeros(batch, self.stoch, self.classes),
        }

    def action_input(self, action: Tensor) -> Tensor:
        """Discrete actions stored as one index column -> one-hot over the model's actions."""
        if action.shape[-1] != 1 or self.action_dim == 1:
            return action
        index = action[..., 0]
        if bool(((index != index.round()) | (index < 0) | (index >= self.action_dim)).any()):
            raise BadInputError(
                f"action indices must be integers in [0, {self.action_dim}) for this checkpoint",
                path=self.path,
            )
        return F.one_hot(index.long(), self.action_dim).to(action.dtype)

    def img_step(self, state: State, action: Tensor) -> tuple[Tensor, Categorical]:
        if action.shape[-1] != self.action_dim:
            raise BadInputError(
                f"actions have {action.shape[-1]} columns but this checkpoint's model takes "
                f"{self.action_dim}",
                path=self.path,
            )
        nets, deter, batch, g = self.nets, state["deter"], action.shape[0], self.blocks
        stoch = state["stoch"].reshape(batch, -1)  # (B, S, K) -> (B, S*K)
        action = action / torch.clamp(action.abs(), min=1.0)
        x = torch.cat(
            [
                nets.dense("dyn/dynin0", deter),
                nets.dense("dyn/dynin1", stoch),
                nets.dense("dyn/dynin2", action),
            ],
            -1,
        )
        x = x[:, None, :].expand(batch, g, x.shape[-1])  # (B, 3H) -> (B, G, 3H)
        x = torch.cat([deter.reshape(batch, g, -1), x], -1)  # (B, D) -> (B, G, D/G), join
        x = x.reshape(batch, -1)  # (B, G, D/G + 3H) -> (B, G*(D/G + 3H))
        for i in range(self.dynlayers):
            x = nets.act(nets.norm(f"dyn/dynhid{i}norm", nets.block_linear(f"dyn/dynhid{i}", x)))
        x = nets.block_linear("dyn/dyngru", x)
        gates = x.reshape(batch, g, -1).chunk(3, -1)  # (B, 3D) -> 3 x (B, G, D/G)
        reset, cand, update = (gate.reshape(batch, -1) for gate in gates)  # -> (B, D)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1)
        deter = update * cand + (1 - update) * deter
        return deter, self.prior(deter)

    def prior(self, deter: Tensor) -> Categorical:
        x = deter
        for i in range(self.imglayers):
            x = self.nets.dense(f"dyn/prior{i}", x)
        return self._dist(self.nets.linear("dyn/priorlogit", x))

    def obs_dist(self, deter: Tensor, embed: Tensor) -> Categorical:
        x = embed if self.absolute else torch.cat([deter, embed], -1)
        for i in range(self.obslayers):
            x = self.nets.dense(f"dyn/obs{i}", x)
        return self._dist(self.nets.linear("dyn/obslogit", x))

    def _dist(self, flat: Tensor) -> Categorical:
        logits = flat.reshape(*flat.shape[:-1], self.stoch, self.classes)  # (B, S*K) -> (B, S, K)
        return Categorical(logits, self.unimix)


class OfficialWorldModel:
    """`Encoder`, `Decoder` (the `simple` ones) and the reward / continuation `MLPHead`s."""

    spec: ModelSpec  # set by `build` once every size is known

    def __init__(self, cell: OfficialCell, enc: _Layers, dec: _Layers, rew: _Layers,
                 con: _Layers) -> None:  # fmt: skip
        self.cell: RSSMCell = cell  # the contract's view; `rssm` keeps the concrete type
        self.rssm, self.enc, self.dec, self.rew, self.con = cell, enc, dec, rew, con
        p = cell.nets.p
        self.enc_layers = p.count(r"enc/cnn(\d+)/kernel")
        self.dec_layers = list(range(p.count(r"dec/conv(\d+)/kernel")))
        self.rew_layers = p.count(r"rew/mlp/linear(\d+)/kernel")
        self.con_layers = p.count(r"con/mlp/linear(\d+)/kernel")

    def encode(self, image: Tensor) -> Tensor:
        assert image.ndim == 5, image.shape
        batch, steps = image.shape[:2]
        x = image.reshape(-1, *image.shape[2:]).to(torch.float32) / 255 - 0.5  # (B*T, H, W, C)
        for i in range(self.enc_layers):
            x = self.enc.conv(f"enc/cnn{i}", x)
            x = F.max_pool2d(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)  # 2x2 max, NHWC
            x = self.enc.act(self.enc.norm(f"enc/cnn{i}norm", x))
        return x.reshape(batch, steps, -1)  # (B*T, h, w, C) -> (B, T, h*w*C)

    def feat(self, deter: Tensor, stoch: Tensor) -> Tensor:
        return torch.cat([deter, stoch.flatten(deter.ndim - 1)], -1)  # (..., S, K) -> (..., S*K)

    def decode(self, feat: Tensor) -> Tensor:
        lead, dec, deter_size = feat.shape[:-1], self.dec, self.rssm.deter
        flat = feat.reshape(-1, feat.shape[-1])  # (..., F) -> (N, F)
        deter, stoch = flat[:, :deter_size], flat[:, deter_size:]
        height, width, _ = self.spec.image_shape
        factor = 2 ** (len(self.dec_layers) + 1)
        h, w = height // factor, width // factor
        if dec.p.has("dec/sp0/kernel"):
            x0 = dec.block_linear("dec/sp0", deter)
            g = dec.p.get("dec/sp0/kernel").shape[0]
            # (N, g*h*w*c) -> (N, g, h, w, c) -> (N, h, w, g, c) -> (N, h, w, g*c)
            x0 = x0.reshape(len(x0), g, h, w, -1).permute(0, 2, 3, 1, 4).reshape(len(x0), h, w, -1)
            x1 = dec.dense("dec/sp1", stoch)
            x1 = dec.linear("dec/sp2", x1).reshape(len(x1), h, w, -1)  # (N, h*w*C) -> (N, h, w, C)
            x = dec.act(dec.norm("dec/spnorm", x0 + x1))
        else:
            x = dec.linear("dec/space", torch.cat([stoch, deter], -1))
            x = dec.act(dec.norm("dec/spacenorm", x.reshape(len(x), h, w, -1)))  # (N, h, w, C)
        for i in reversed(self.dec_layers):
            x = x.repeat_interleave(2, 1).repeat_interleave(2, 2)  # nearest 2x upsampling
            x = dec.act(dec.norm(f"dec/conv{i}norm", dec.conv(f"dec/conv{i}", x)))
        x = x.repeat_interleave(2, 1).repeat_interleave(2, 2)
        x = torch.sigmoid(dec.conv("dec/imgout", x))
        return x.reshape(*lead, *x.shape[1:])

    def reward(self, feat: Tensor) -> Tensor:
        x = self._mlp(self.rew, "rew", self.rew_layers, feat)
        if not self.rew.p.has("rew/head/logits/kernel"):
            return self.rew.linear("rew/head/pred", x)[..., 0]
        probs = torch.softmax(self.rew.linear("rew/head/logits", x), -1)
        return _twohot_mean(probs)

    def cont(self, feat: Tensor) -> Tensor:
        x = self._mlp(self.con, "con", self.con_layers, feat)
        return torch.sigmoid(self.con.linear("con/head/logit", x)[..., 0])

    @staticmethod
    def _mlp(nets: _Layers, name: str, layers: int, x: Tensor) -> Tensor:
        for i in range(layers):
            x = nets.dense(f"{name}/mlp/linear{i}", x, norm=f"{name}/mlp/norm{i}")
        return x


def _twohot_mean(probs: Tensor) -> Tensor:
    """`outs.TwoHot.pred`: symexp-spaced bins, summed symmetrically so that uniform is 0."""
    n = probs.shape[-1]
    half = torch.linspace(-20, 0, (n - 1) // 2 + 1 if n % 2 else n // 2)
    half = torch.sign(half) * torch.expm1(half.abs())
    bins = torch.cat([half, -half[:-1].flip(0)] if n % 2 else [half, -half.flip(0)])
    weighted = probs * bins
    m = n // 2
    if n % 2:
        return weighted[..., m] + (weighted[..., :m].flip(-1) + weighted[..., m + 1 :]).sum(-1)
    return (weighted[..., :m].flip(-1) + weighted[..., m:]).sum(-1)


def build(params: dict, path: Path, config: dict, config_file: Path | None) -> OfficialWorldModel:
    """Rebuild the world model from an agent's flat params (see the module docstring)."""
    if any(key.startswith("enc/mlp") for key in params):
        raise BadInputError(
            "vector-observation encoders (enc/mlp*) are not supported yet; only images are",
            path=path,
        )
    wm = {k: v for k, v in params.items() if k.startswith(WORLD_MODEL)}
    if not wm:
        raise BadInputError(
            "agent params hold no world-model keys (dyn/, enc/, dec/, ...)", path=path
        )
    p = Params(as_tensors(wm, path), path, "world-model key")
    cfg = Settings(config, config_file or path)
    norm_default = "layer" if p.has("dyn/dynin0norm/shift") else "rms"

    def layers(section: str) -> _Layers:
        act = cfg.text(f"agent.{section}.act", "silu")
        return _Layers(p, act, cfg.text(f"agent.{section}.norm", norm_default))

    for section in ("enc.simple", "dec.simple"):
        for option in ("strided", "outer"):
            if cfg.flag(f"agent.{section}.{option}", False):
                message = f"config agent.{section}.{option}=True is not supported yet"
                raise BadInputError(message, path=config_file or path)
    units = p.get("dyn/dynin1/kernel", 2).shape[0]
    stoch = cfg.integer("agent.dyn.rssm.stoch", 32)
    if stoch <= 0 or units % stoch:
        message = f"{units} latent units do not split into stoch={stoch} groups; pass the config"
        raise BadInputError(message, path=config_file or path)
    cell = OfficialCell(
        layers("dyn.rssm"),
        stoch=stoch,
        classes=units // stoch,
        unimix=cfg.number("agent.dyn.rssm.unimix", 0.01),
        absolute=cfg.flag("agent.dyn.rssm.absolute", False),
    )
    model = OfficialWorldModel(
        cell, layers("enc.simple"), layers("dec.simple"), layers("rewhead"), layers("conhead")
    )
    channels = p.get(f"enc/cnn{model.enc_layers - 1}/kernel", 4).shape[-1]
    tokens = p.get("dyn/obs0/kernel", 2).shape[0] - (0 if cell.absolute else cell.deter)
    side = math.isqrt(tokens // channels)
    if side * side * channels != tokens:
        message = f"the encoder's output cannot fill the posterior's {tokens} token inputs"
        raise BadInputError(message, path=path)
    cfg.assumed.append("square images")
    model.spec = ModelSpec(
        family=FAMILY,
        latent="categorical",
        deter=cell.deter,
        groups=cell.stoch,
        classes=cell.classes,
        action_dim=cell.action_dim,
        image_shape=(
            side * 2**model.enc_layers,
            side * 2**model.enc_layers,
            p.get("enc/cnn0/kernel").shape[2],
        ),
        free_nats=cfg.number("agent.dyn.rssm.free_nats", 1.0),
        dyn_scale=cfg.number("agent.loss_scales.dyn", 1.0),
        rep_scale=cfg.number("agent.loss_scales.rep", 0.1),
        config={
            "format": FAMILY,
            "hidden": cell.hidden,
            "blocks": cell.blocks,
            "tokens": tokens,
            "encoder_layers": model.enc_layers,
            "decoder_layers": len(model.dec_layers),
            "imglayers": cell.imglayers,
            "obslayers": cell.obslayers,
            "dynlayers": cell.dynlayers,
            "config_file": None if config_file is None else str(config_file),
            "assumed": cfg.assumed,
        },
    )
    _dry_run(model)
    p.check_all_used()
    return model


def _dry_run(model: OfficialWorldModel) -> None:
    """One tiny pass through every part, so that a missing or unused key is reported at load
    time (the official layers are looked up by name as they run)."""
    try:
        _run_once(model)
    except RuntimeError as error:  # shapes that do not chain (e.g. a kernel of the wrong size)
        message = f"world-model tensors do not fit together: {str(error).splitlines()[0]}"
        raise BadInputError(message, path=model.rssm.path) from None


def _run_once(model: OfficialWorldModel) -> None:
    cell = model.rssm
    embed = model.encode(torch.zeros(1, 1, *model.spec.image_shape, dtype=torch.uint8))
    deter, _ = cell.img_step(cell.initial(1), torch.zeros(1, cell.action_dim))
    stoch = cell.obs_dist(deter, embed[:, 0]).mode()
    feat = model.feat(deter, stoch)
    model.decode(feat), model.reward(feat), model.cont(feat)


def _agent_params(agent: object, path: Path) -> dict:
    if not isinstance(agent, dict) or not isinstance(agent.get("params"), dict):
        message = "expected {'params': {key: array}, ...} (an official DreamerV3 agent save)"
        raise BadInputError(message, path=path)
    return agent["params"]


class DreamerV3Format:
    name = FAMILY
    patterns = "ckpt/<timestamp>[-<step>]/agent.pkl, checkpoint.pkl, checkpoint.ckpt"

    def discover(self, logdir: Path) -> list[CheckpointRef]:
        refs = []
        for ckpt in sorted(d for d in logdir.rglob("ckpt") if d.is_dir()):
            for folder in sorted(ckpt.iterdir()):
                if FOLDER.fullmatch(folder.name) and (folder / "agent.pkl").is_file():
                    refs.append(CheckpointRef(FAMILY, folder, _step(folder)))
        for name in OLD_LAYOUTS:
            for file in sorted(logdir.rglob(name)):
                if (file.parent / "config.yaml").is_file() or (file.parent / "replay").is_dir():
                    refs.append(CheckpointRef(FAMILY, file, None))
        return refs

    def load(self, ref: CheckpointRef, *, config: dict | None = None) -> OfficialWorldModel:
        if ref.path.name == "checkpoint.pkl":
            saved = safe_pickle.load(ref.path)
            agent = saved.get("agent") if isinstance(saved, dict) else None
            params, logdir = _agent_params(agent, ref.path), ref.path.parent
        elif ref.path.name in OLD_LAYOUTS:
            raise BadInputError(
                f"{OLD_LAYOUTS[ref.path.name]} of official DreamerV3 is not supported yet "
                "(its layer names predate the current RSSM); re-save with the current code "
                "(ckpt/<timestamp>/agent.pkl)",
                path=ref.path,
            )
        else:
            if not (ref.path / "done").is_file():
                message = "checkpoint folder has no 'done' marker: the save did not finish"
                raise BadInputError(message, path=ref.path)
            agent_file = ref.path / "agent.pkl"
            params = _agent_params(safe_pickle.load(agent_file), agent_file)
            logdir = ref.path.parent.parent
        file_config, config_file = read_config([logdir], ["config.yaml"])
        return build(params, ref.path, {**file_config, **(config or {})}, config_file)

    def content_files(self, ref: CheckpointRef) -> list[Path]:
        files = [ref.path] if ref.path.is_file() else [ref.path / "agent.pkl"]
        logdir = ref.path.parent if ref.path.is_file() else ref.path.parent.parent
        config = logdir / "config.yaml"
        return files + ([config] if config.is_file() else [])


def _step(folder: Path) -> int | None:
    """The env step of a checkpoint folder: `step.pkl`, else the folder name's suffix."""
    step_file = folder / "step.pkl"
    if step_file.is_file():
        try:
            value = safe_pickle.load(step_file)
            if isinstance(value, int | float | np.integer):
                return int(value)
        except BadInputError:
            pass  # fall back on the name; `load` reports a broken folder
    match = FOLDER.fullmatch(folder.name)
    return int(match.group(1)) if match and match.group(1) else None


register(DreamerV3Format())
