"""TorchRL's DreamerV3 world model, rebuilt from a state dict without importing TorchRL.

TorchRL (`torchrl.modules`: `RSSMPriorV3`, `RSSMPosteriorV3`, `DreamerV3ImageEncoder`,
`DreamerV3ImageDecoder`, `DreamerV3MLP`) has no checkpoint layout of its own, so Beliefscope
reads this one:

- `world_model.pt`: `torch.save(module.state_dict())` (read with `weights_only=True`), or
  `world_model.safetensors`; `world_model_<step>.pt` / `.safetensors` for several versions.
- `world_model.json` beside it (`world_model_<step>.json` wins when present): per part, the
  TorchRL constructor arguments and where the part's keys sit in the state dict:

      {"encoder":   {"prefix": "encoder.",   "args": {DreamerV3ImageEncoder kwargs}},
       "prior":     {"prefix": "prior.",     "args": {RSSMPriorV3 kwargs}},
       "posterior": {"prefix": "posterior.", "args": {RSSMPosteriorV3 kwargs}},
       "decoder":   {"prefix": "decoder.",   "args": {DreamerV3ImageDecoder kwargs},
                     "inputs": ["state", "belief"]},
       "reward":    {"prefix": "reward.",    "args": {DreamerV3MLP kwargs}, "inputs": [...]},
       "cont":      {"prefix": "cont.",      "args": {DreamerV3MLP kwargs}, "inputs": [...]},
       "loss":      {DreamerV3ModelLoss kwargs: "kl_mode", "free_bits", "unimix", ...},
       "image_shape": [C, H, W],
       "ignore": ["actor."]}

  The prefixes shown are the defaults (`nn.ModuleDict(encoder=..., prior=..., ...)`); a
  `TensorDictSequential` world model's own state dict works too with prefixes such as
  `"1.rssm_prior.module."`. Encoder, prior and posterior are required; decoder, reward and
  continuation heads are read where the state dict has keys under their prefix, and the
  model reports the others missing (`heads`). `inputs` is the order of the head's
  `in_keys` (TorchRL concatenates them as given). Keys under `ignore` prefixes are skipped;
  any other key nothing reads is an error.

Sizes come from tensor shapes; every argument the JSON gives is checked against them, and
what shapes cannot tell (groups x classes, the loss's KL settings, norm eps, head input order)
comes from the JSON or TorchRL's defaults, each default listed in `spec.config["assumed"]`.

Math, as TorchRL 0.14 computes it: zero initial state and reset (`is_init` zeroes state,
belief and action), `recurrent_model="gru"` (SiLU projector of [state, action] into
`nn.GRUCell`, prior MLP) or `"block_gru"` (DreamerV3's block GRU with RMS norm, action scaled
by max(1, |a|), update bias -1), posterior MLP on [belief, embedding]. Images are the
encoder's (C, H, W) in [0, 1] minus 0.5.

KL as `DreamerV3ModelLoss(kl_mode=...)` computes it (`KLForm`), per step and summed over the
categoricals like every family's `kl`:

- `"balanced"` (TorchRL's default; `categorical_kl_balanced`): plain softmax probabilities
  clamped at 1e-8 (no unimix, the loss's `unimix` is not read), free bits per categorical:
  `kl_dyn = kl_rep = sum_g max(KL_g, free_bits)`. TorchRL's loss is `lambda_kl` times the
  mean over steps and categoricals of `kl_alpha * dyn + (1 - kl_alpha) * rep`, i.e. these
  sums over G categoricals scaled by `lambda_kl * kl_alpha / G` and
  `lambda_kl * (1 - kl_alpha) / G` (`spec.dyn_scale`, `spec.rep_scale`).
- `"separate"` (`categorical_kl_terms`): probabilities mixed with the loss's `unimix`
  (TorchRL's default 0.0, not the modules' sampling unimix), free nats on the sum:
  `kl_dyn = kl_rep = max(KL, free_bits)`, scaled by `lambda_kl * lambda_dynamic` and
  `lambda_kl * lambda_representation`.

The cell's distributions carry the mode's probabilities (for `"balanced"`, logits are the
log of the clamped probabilities, so a plain `Categorical` of them is renormalised by at most
K x 1e-8); `TorchRLCell.kl_terms` gives the exact per-step `(kl, kl_dyn, kl_rep)`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from beliefscope.errors import BadInputError
from beliefscope.rssm.core import ModelSpec, RSSMCell, State
from beliefscope.rssm.dist import Categorical, LatentDist
from beliefscope.rssm.families.params import Params
from beliefscope.rssm.formats import CheckpointRef, register

FAMILY = "torchrl"
CHECKPOINT = re.compile(r"world_model(?:[-_](\d+))?\.(pt|safetensors)")
CONFIG_NAME = "world_model.json"
PARTS = ("encoder", "prior", "posterior", "decoder", "reward", "cont")
HEADS = {"decoder": "decode", "reward": "reward", "cont": "cont"}
TOP_LEVEL = {*PARTS, "loss", "image_shape", "ignore"}
KL_MODES = ("balanced", "separate")  # DreamerV3ModelLoss's kl_mode values, its default first
KL_DEFAULTS: dict[str, float] = {  # DreamerV3ModelLoss's defaults for what the KL reads
    "free_bits": 1.0,
    "unimix": 0.0,
    "lambda_kl": 1.0,
    "lambda_dynamic": 1.0,
    "lambda_representation": 0.1,
    "kl_alpha": 0.8,
}
KL_READS = {  # the settings each kl_mode reads (TorchRL ignores the others)
    "balanced": ("free_bits", "lambda_kl", "kl_alpha"),
    "separate": ("free_bits", "unimix", "lambda_kl", "lambda_dynamic", "lambda_representation"),
}
LOSS_OTHER = {  # DreamerV3ModelLoss arguments that do not touch the latents: accepted, unused
    "lambda_reco",
    "lambda_reward",
    "lambda_continue",
    "continue_target_scale",
    "reco_loss",
    "reco_symlog",
    "reward_two_hot",
    "num_reward_bins",
    "global_average",
    "detach_output",
}
LOSS_ARGS = {"kl_mode", *KL_DEFAULTS, *LOSS_OTHER}
BALANCED_CLAMP = 1e-8  # categorical_kl_balanced's floor on the probabilities
NOT_MODEL_ARGS = {"device", "action_spec"}  # constructor arguments that do not shape the model


class _Args:
    """One part's constructor arguments from the JSON: each is checked against the tensors
    where they tell, or used (and recorded as assumed when absent) where they cannot."""

    def __init__(self, part: str, args: object, path: Path, assumed: list[str]) -> None:
        if not isinstance(args, dict):
            raise BadInputError(f"'{part}.args' must be a mapping", path=path)
        self.part, self.path, self.assumed = part, path, assumed
        self.args: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in args.items()
        }
        self.seen: set[str] = set(NOT_MODEL_ARGS)

    def inferred(self, name: str, value: object, source: str) -> None:
        """`value` is what the tensors say; a different JSON value is a mismatch."""
        self.seen.add(name)
        if name in self.args and self.args[name] != value:
            raise BadInputError(
                f"{CONFIG_NAME} says {self.part}.{name}={self.args[name]!r} but {source} "
                f"gives {value!r}",
                path=self.path,
            )

    def given(self, name: str, default: object) -> object:
        """A value the tensors cannot tell: the JSON's, else TorchRL's default (recorded)."""
        self.seen.add(name)
        if name in self.args:
            return self.args[name]
        self.assumed.append(f"{self.part}.{name}={default!r}")
        return default

    def number(self, name: str, default: float) -> float:
        value = self.given(name, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise BadInputError(f"{self.part}.{name} must be a number", path=self.path)
        return float(value)

    def finish(self) -> None:
        unknown = sorted(set(self.args) - self.seen)
        if unknown:
            raise BadInputError(
                f"{CONFIG_NAME}: {self.part}.args has arguments this part does not take: {unknown}",
                path=self.path,
            )


@dataclass(frozen=True)
class KLForm:
    """The latent KL of one `DreamerV3ModelLoss` configuration (see the module docstring)."""

    mode: str  # one of KL_MODES
    free_bits: float
    unimix: float
    lambda_kl: float
    lambda_dynamic: float
    lambda_representation: float
    kl_alpha: float

    def dist(self, logits: Tensor) -> Categorical:
        """Raw (..., G, K) logits -> the categoricals whose probabilities the KL reads."""
        if self.mode == "balanced":
            floor = torch.softmax(logits, -1).clamp(min=BALANCED_CLAMP)
            return Categorical(torch.log(floor), 0.0)
        return Categorical(logits, self.unimix)

    def terms(self, post: LatentDist, prior: LatentDist) -> tuple[Tensor, Tensor, Tensor]:
        """Per-step (kl, kl_dyn, kl_rep), summed over categoricals, of distributions made by
        `dist`: the values of TorchRL's dynamics and representation terms before their
        gradient stops and loss weights."""
        assert isinstance(post, Categorical) and isinstance(prior, Categorical)
        if self.mode == "balanced":
            # exp(logits): the clamped probabilities themselves, not renormalised
            per = (post.logits.exp() * (post.logits - prior.logits)).sum(-1)  # (..., G)
            clipped = per.clamp(min=self.free_bits).sum(-1)
            return per.sum(-1), clipped, clipped
        kl = post.kl(prior)
        clipped = kl.clamp(min=self.free_bits) if self.free_bits else kl
        return kl, clipped, clipped

    def scales(self, groups: int) -> tuple[float, float]:
        """Weights that turn the mean of `kl_dyn` and `kl_rep` into TorchRL's KL loss."""
        if self.mode == "balanced":
            weight = self.lambda_kl / groups  # TorchRL averages over the categoricals
            return weight * self.kl_alpha, weight * (1.0 - self.kl_alpha)
        return self.lambda_kl * self.lambda_dynamic, self.lambda_kl * self.lambda_representation

    def settings(self) -> dict[str, object]:
        """What this mode reads, for the checkpoint's config."""
        read = {name: getattr(self, name) for name in KL_READS[self.mode]}
        return {"kl_mode": self.mode, **read}


def _kl_form(loss: object, file: Path, assumed: list[str]) -> tuple[KLForm, list[str]]:
    """The JSON's `loss` entry, TorchRL's defaults for what it leaves out (recorded), and the
    arguments it gives that the KL does not read."""
    if not isinstance(loss, dict):
        raise BadInputError("'loss' must be a mapping of DreamerV3ModelLoss arguments", path=file)
    unknown = sorted(set(loss) - LOSS_ARGS)
    if unknown:
        raise BadInputError(
            f"'loss' has arguments DreamerV3ModelLoss does not take: {unknown}; "
            f"known: {sorted(LOSS_ARGS)}",
            path=file,
        )
    mode = loss.get("kl_mode", KL_MODES[0])
    if "kl_mode" not in loss:
        assumed.append(f"loss.kl_mode={mode!r}")
    if not isinstance(mode, str) or mode not in KL_MODES:
        known = ", ".join(repr(m) for m in KL_MODES)
        raise BadInputError(
            f"loss.kl_mode={mode!r} is not a kl_mode of TorchRL's DreamerV3ModelLoss; "
            f"known: {known}",
            path=file,
        )
    values: dict[str, float] = {}
    for name, default in KL_DEFAULTS.items():
        value = loss.get(name, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise BadInputError(f"loss.{name} must be a number, not {value!r}", path=file)
        if name in KL_READS[mode] and name not in loss:
            assumed.append(f"loss.{name}={default!r}")
        values[name] = float(value)
    if not 0.0 <= values["unimix"] < 1.0:
        raise BadInputError(f"loss.unimix must be in [0, 1), not {values['unimix']}", path=file)
    unused = sorted(set(loss) - {"kl_mode", *KL_READS[mode]})
    return KLForm(mode=mode, **values), unused


@dataclass
class _Layer:
    """One `Linear` / `_DreamerV3BlockLinear`, with the RMS norm and SiLU that follow it."""

    weight: Tensor  # (out, in) or (G, in/G, out/G)
    bias: Tensor | None
    norm: Tensor | None  # RMS scale
    act: bool

    def __call__(self, x: Tensor, eps: float) -> Tensor:
        if self.weight.ndim == 2:
            x = F.linear(x, self.weight, self.bias)
        else:
            groups = self.weight.shape[0]
            lead = x.shape[:-1]
            x = x.reshape(*lead, groups, -1)  # (..., in) -> (..., G, in/G)
            x = torch.einsum("...gi,gio->...go", x, self.weight)
            x = x.reshape(*lead, -1)  # (..., G, out/G) -> (..., out)
            x = x if self.bias is None else x + self.bias
        if self.norm is not None:
            x = F.rms_norm(x, self.norm.shape, self.norm, eps)
        return F.silu(x) if self.act else x


def _sequential(p: Params, prefix: str, *, final_act: bool) -> list[_Layer]:
    """An `nn.Sequential` of Linear/BlockLinear, optional RMS norm and SiLU, as TorchRL's
    DreamerV3 modules build them; the numbering must leave room for each parameterless SiLU."""
    found = p.indices(rf"{re.escape(prefix)}(\d+)\.weight")
    if not found:
        raise BadInputError(f"missing world-model keys {prefix}*", path=p.path)
    layers: list[_Layer] = []
    i = found[0]
    if i != 0:
        raise BadInputError(f"world-model keys {prefix}* do not start at layer 0", path=p.path)
    while True:
        weight = p.get(f"{prefix}{i}.weight")
        if weight.ndim not in (2, 3):
            message = f"world-model key {prefix}{i}.weight has shape {tuple(weight.shape)}"
            raise BadInputError(f"{message}, expected a linear layer", path=p.path)
        norm = p.get(f"{prefix}{i + 1}.weight", 1) if p.has(f"{prefix}{i + 1}.weight") else None
        following = [j for j in found if j > i + (norm is not None)]
        act = bool(following) or final_act
        layers.append(_Layer(weight, p.optional(f"{prefix}{i}.bias"), norm, act))
        if not following:
            return layers
        step = (2 if norm is not None else 1) + 1  # norm, then the SiLU slot
        if following[0] != i + step:
            raise BadInputError(
                f"world-model keys {prefix}* are numbered {found}, which is not a DreamerV3 "
                "stack of linear / norm / SiLU layers",
                path=p.path,
            )
        i = following[0]


def _run(layers: list[_Layer], x: Tensor, eps: float) -> Tensor:
    for layer in layers:
        x = layer(x, eps)
    return x


def _in_features(layers: list[_Layer]) -> int:
    w = layers[0].weight
    return w.shape[1] if w.ndim == 2 else w.shape[0] * w.shape[1]


def _out_features(layers: list[_Layer]) -> int:
    w = layers[-1].weight
    return w.shape[0] if w.ndim == 2 else w.shape[0] * w.shape[2]


class TorchRLCell:
    """`RSSMPriorV3` (GRU or block GRU) and `RSSMPosteriorV3`, batch-first, no sampling."""

    def __init__(
        self,
        p: Params,
        prior: str,
        posterior: str,
        prior_args: _Args,
        post_args: _Args,
        kl: KLForm,
    ) -> None:
        self.path, self.kl = p.path, kl
        self.block = p.has(f"{prior}rnn.gates.weight")
        prior_args.inferred("recurrent_model", "block_gru" if self.block else "gru", "the keys")
        if self.block:
            self.belief_in = _sequential(p, f"{prior}rnn.belief_projection.", final_act=True)
            self.state_in = _sequential(p, f"{prior}rnn.state_projection.", final_act=True)
            self.action_in = _sequential(p, f"{prior}rnn.action_projection.", final_act=True)
            self.hidden = _sequential(p, f"{prior}rnn.hidden_layers.", final_act=True)
            self.gates = _Layer(
                p.get(f"{prior}rnn.gates.weight", 3),
                p.get(f"{prior}rnn.gates.bias", 1),
                None,
                act=False,
            )
            self.blocks = self.gates.weight.shape[0]
            self.deter = _in_features(self.belief_in)
            self.action_dim = _in_features(self.action_in)
            self.stoch_units = _in_features(self.state_in)
            hidden = _out_features(self.belief_in)
            prior_args.inferred("num_blocks", self.blocks, f"{prior}rnn.gates.weight")
            prior_args.inferred("num_layers", len(self.hidden), f"{prior}rnn.hidden_layers.*")
        else:
            self.projector = _sequential(p, f"{prior}action_state_projector.", final_act=True)
            self.w_ih = p.get(f"{prior}rnn.weight_ih", 2)
            self.w_hh = p.get(f"{prior}rnn.weight_hh", 2)
            self.b_ih = p.optional(f"{prior}rnn.bias_ih")
            self.b_hh = p.optional(f"{prior}rnn.bias_hh")
            self.deter = self.w_hh.shape[1]
            hidden = _out_features(self.projector)
            self.blocks = 1
        self.prior_net = _sequential(p, f"{prior}rnn_to_prior_projector.", final_act=False)
        self.post_net = _sequential(p, f"{posterior}obs_rnn_to_post_projector.", final_act=False)
        units = _out_features(self.prior_net)
        if self.block:
            prior_args.inferred("prior_num_layers", len(self.prior_net) - 1, "the prior keys")
        else:
            self.stoch_units = units
            self.action_dim = _in_features(self.projector) - units
            # TorchRL takes these for either core but reads them only for the block GRU
            prior_args.seen |= {"num_blocks", "num_layers", "prior_num_layers", "norm_eps"}
        self.embed = _in_features(self.post_net) - self.deter
        self.prior_eps = prior_args.number("norm_eps", 1e-4) if self.block else 0.0
        self.post_eps = post_args.number("norm_eps", 1e-4)
        self.groups, self.classes = _latent_split(units, prior_args, post_args)
        for args, name in ((prior_args, f"{prior}*"), (post_args, f"{posterior}*")):
            args.inferred(
                "hidden_dim",
                hidden if args is prior_args else _out_features(self.post_net[:1]),
                name,
            )
            args.inferred("rnn_hidden_dim", self.deter, name)
        prior_args.inferred("action_dim", self.action_dim, f"{prior}*")
        prior_args.inferred("action_shape", (self.action_dim,), f"{prior}*")
        post_args.inferred("obs_embed_dim", self.embed, f"{posterior}*")
        post_args.inferred("use_rms_norm", self.post_net[0].norm is not None, f"{posterior}*")
        if self.post_net[0].norm is not None:
            post_args.inferred("num_layers", len(self.post_net) - 1, f"{posterior}*")
        else:
            post_args.seen.add("num_layers")  # read only with use_rms_norm
        checks = [
            (units == self.stoch_units, "the prior's output and the state input differ"),
            (_out_features(self.post_net) == units, "the posterior and prior sizes differ"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(f"world-model tensors do not fit: {message}", path=p.path)

    def initial(self, batch: int) -> State:
        return {
            "deter": torch.zeros(batch, self.deter),
            "stoch": torch.zeros(batch, self.groups, self.classes),
        }

    def img_step(self, state: State, action: Tensor) -> tuple[Tensor, Categorical]:
        if action.shape[-1] != self.action_dim:
            raise BadInputError(
                f"actions have {action.shape[-1]} columns but this checkpoint's model takes "
                f"{self.action_dim}",
                path=self.path,
            )
        belief = state["deter"]
        stoch = state["stoch"].reshape(action.shape[0], -1)  # (B, S, K) -> (B, S*K)
        if self.block:
            belief = self._block_gru(stoch, belief, action)
        else:
            x = _run(self.projector, torch.cat([stoch, action], -1), self.prior_eps)
            belief = self._gru(x, belief)
        return belief, self._dist(_run(self.prior_net, belief, self.prior_eps))

    def obs_dist(self, deter: Tensor, embed: Tensor) -> Categorical:
        return self._dist(_run(self.post_net, torch.cat([deter, embed], -1), self.post_eps))

    def _gru(self, x: Tensor, h: Tensor) -> Tensor:
        """`torch.nn.GRUCell`: gates (reset, update, new), reset applied inside the new gate."""
        gi = F.linear(x, self.w_ih, self.b_ih)
        gh = F.linear(h, self.w_hh, self.b_hh)
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        new = torch.tanh(i_n + reset * h_n)
        return (1 - update) * new + update * h

    def _block_gru(self, stoch: Tensor, belief: Tensor, action: Tensor) -> Tensor:
        eps, g, batch = self.prior_eps, self.blocks, belief.shape[0]
        action = action / action.abs().clamp(min=1.0)
        x = torch.cat(
            [
                _run(self.belief_in, belief, eps),
                _run(self.state_in, stoch, eps),
                _run(self.action_in, action, eps),
            ],
            -1,
        )
        x = x[:, None, :].expand(batch, g, x.shape[-1])  # (B, 3H) -> (B, G, 3H)
        x = torch.cat([belief.reshape(batch, g, -1), x], -1)  # (B, D) -> (B, G, D/G), join
        x = _run(self.hidden, x.reshape(batch, -1), eps)  # (B, G, D/G + 3H) -> (B, G*(...))
        gates = self.gates(x, eps).reshape(batch, g, 3, -1)  # (B, 3D) -> (B, G, 3, D/G)
        reset, cand, update = (gates[:, :, i].reshape(batch, -1) for i in range(3))  # (B, D)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1 - update) * belief

    def kl_terms(self, post: LatentDist, prior: LatentDist) -> tuple[Tensor, Tensor, Tensor]:
        """Per-step (kl, kl_dyn, kl_rep) as this checkpoint's TorchRL loss computes them."""
        return self.kl.terms(post, prior)

    def _dist(self, flat: Tensor) -> Categorical:
        # (B, S*K) -> (B, S, K)
        return self.kl.dist(flat.reshape(*flat.shape[:-1], self.groups, self.classes))


def _latent_split(units: int, prior: _Args, post: _Args) -> tuple[int, int]:
    """(num_categoricals, num_classes): from the JSON, else a square split (recorded)."""
    given: dict[str, int] = {}
    for name in ("num_categoricals", "num_classes"):
        for args in (prior, post):
            value = args.args.get(name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                message = f"{args.part}.{name} must be a positive integer, not {value!r}"
                raise BadInputError(message, path=args.path)
            given.setdefault(name, value)
    groups, classes = given.get("num_categoricals", 0), given.get("num_classes", 0)
    if not groups and not classes:
        side = math.isqrt(units)
        if side * side != units:
            raise BadInputError(
                f"{CONFIG_NAME} gives no latent split (num_categoricals x num_classes) and "
                f"the state dict's {units} latent units are not a square: add "
                f"num_categoricals and num_classes (their product is {units}) to prior.args",
                path=prior.path,
            )
        groups = classes = side
        prior.assumed.append(f"num_categoricals=num_classes={side} (square split of {units})")
    elif not classes and units % groups == 0:
        classes = units // groups
    elif not groups and units % classes == 0:
        groups = units // classes
    if groups * classes != units:
        raise BadInputError(
            f"{CONFIG_NAME} gives {groups or '?'}x{classes or '?'} (num_categoricals x "
            f"num_classes) latents but the state dict has {units} latent units",
            path=prior.path,
        )
    for args in (prior, post):
        args.inferred("num_categoricals", groups, f"the other part or {units} latent units")
        args.inferred("num_classes", classes, f"the other part or {units} latent units")
    return groups, classes


class _Conv:
    """One stride-2 `Conv2d` / `ConvTranspose2d` stage with its channel RMS norm and SiLU."""

    def __init__(self, p: Params, prefix: str, i: int, norm: bool) -> None:
        self.weight = p.get(f"{prefix}{i}.weight", 4)
        self.bias = p.optional(f"{prefix}{i}.bias")
        self.norm = p.get(f"{prefix}{i + 1}.weight", 1) if norm else None

    def finish(self, x: Tensor, eps: float) -> Tensor:
        if self.norm is None:
            return x
        x = x.movedim(-3, -1)  # (N, C, H, W) -> (N, H, W, C)
        x = F.rms_norm(x, self.norm.shape, self.norm, eps)
        return F.silu(x.movedim(-1, -3))  # (N, H, W, C) -> (N, C, H, W)


def _conv_stack(p: Params, prefix: str, last_norm: bool) -> list[_Conv]:
    found = p.indices(rf"{re.escape(prefix)}(\d+)\.weight")
    convs = [i for i in found if p.tensors[f"{prefix}{i}.weight"].ndim == 4]
    if not convs or convs != list(range(0, 3 * len(convs), 3)):
        raise BadInputError(
            f"world-model keys {prefix}* are numbered {found}, not DreamerV3 conv stages",
            path=p.path,
        )
    return [_Conv(p, prefix, i, last_norm or i != convs[-1]) for i in convs]


class TorchRLWorldModel:
    """Encoder, RSSM and whichever of decoder / reward / continuation heads the state dict
    holds; `heads` names the methods that work, so ingest can mark the others absent."""

    spec: ModelSpec  # set by `build` once every size is known

    def __init__(
        self,
        cell: TorchRLCell,
        p: Params,
        prefixes: dict[str, str],
        args: dict[str, _Args],
        inputs: dict[str, list[str]],
    ) -> None:
        self.cell: RSSMCell = cell  # the contract's view; `rssm` keeps the concrete type
        self.rssm, self.path, self.inputs = cell, p.path, inputs
        self.enc = _conv_stack(p, f"{prefixes['encoder']}layers.", last_norm=True)
        self.enc_eps = args["encoder"].number("norm_eps", 1e-4)
        present = {part for part in HEADS if part in prefixes}
        self.heads = frozenset(HEADS[part] for part in present)
        self.dec: list[_Conv] = []
        if "decoder" in present:
            d = prefixes["decoder"]
            self.dec_projection = _Layer(
                p.get(f"{d}projection.weight"), p.get(f"{d}projection.bias", 1), None, act=False
            )
            self.dec_norm = p.get(f"{d}projection_norm.weight", 1)
            self.dec = _conv_stack(p, f"{d}layers.", last_norm=False)
            self.dec_eps = args["decoder"].number("norm_eps", 1e-4)
        self.mlps: dict[str, list[_Layer]] = {}
        self.mlp_eps: dict[str, float] = {}
        for part in ("reward", "cont"):
            if part in present:
                self.mlps[part] = _sequential(p, f"{prefixes[part]}model.", final_act=False)
                self.mlp_eps[part] = args[part].number("norm_eps", 1e-4)

    def encode(self, image: Tensor) -> Tensor:
        assert image.ndim == 5, image.shape
        batch, steps = image.shape[:2]
        x = image.reshape(-1, *image.shape[2:]).to(torch.float32) / 255.0 - 0.5
        x = x.permute(0, 3, 1, 2)  # (B*T, H, W, C) -> (B*T, C, H, W)
        for conv in self.enc:
            k = conv.weight.shape[-1]
            x = conv.finish(
                F.conv2d(x, conv.weight, conv.bias, stride=2, padding=k // 2), self.enc_eps
            )
        return x.reshape(batch, steps, -1)  # (B*T, C, h, w) -> (B, T, C*h*w)

    def feat(self, deter: Tensor, stoch: Tensor) -> Tensor:
        """[state, belief]: TorchRL's flat latent `state` first, then the GRU `belief`."""
        return torch.cat([stoch.flatten(deter.ndim - 1), deter], -1)  # (..., S, K) -> (..., S*K)

    def _head_input(self, part: str, feat: Tensor) -> Tensor:
        if part not in HEADS or HEADS[part] not in self.heads:
            raise BadInputError(
                f"this TorchRL world model has no {part} (no keys under its prefix), so "
                f"'{HEADS.get(part, part)}' is not available",
                path=self.path,
            )
        if self.inputs[part] == ["state", "belief"]:
            return feat
        units = self.rssm.groups * self.rssm.classes
        return torch.cat([feat[..., units:], feat[..., :units]], -1)

    def decode(self, feat: Tensor) -> Tensor:
        x = self._head_input("decoder", feat)
        lead = x.shape[:-1]
        x = self.dec_projection(x.reshape(-1, x.shape[-1]), 0.0)  # (..., F) -> (N, C*h*w)
        channels = self.dec_norm.shape[0]
        height, width, _ = self.spec.image_shape
        scale = 2 ** len(self.dec)
        x = x.reshape(-1, channels, height // scale, width // scale)  # (N, C*h*w) -> (N, C, h, w)
        x = F.silu(F.rms_norm(x.movedim(1, -1), (channels,), self.dec_norm, self.dec_eps))
        x = x.movedim(-1, 1)  # (N, h, w, C) -> (N, C, h, w)
        for conv in self.dec:
            k = conv.weight.shape[-1]
            x = F.conv_transpose2d(
                x, conv.weight, conv.bias, stride=2, padding=k // 2, output_padding=1
            )
            x = conv.finish(x, self.dec_eps)
        x = (x + 0.5).permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        return x.reshape(*lead, *x.shape[1:])

    def reward(self, feat: Tensor) -> Tensor:
        out = _run(self.mlps["reward"], self._head_input("reward", feat), self.mlp_eps["reward"])
        if out.shape[-1] == 1:
            return out[..., 0]
        return _two_hot_mean(torch.softmax(out, -1), symexp_bins(out.shape[-1]))

    def cont(self, feat: Tensor) -> Tensor:
        out = _run(self.mlps["cont"], self._head_input("cont", feat), self.mlp_eps["cont"])
        return torch.sigmoid(out[..., 0])


def symexp_bins(n: int) -> Tensor:
    """TorchRL's `SymExpTwoHot` support: symexp of an even grid over [-20, 20] (odd `n` keeps
    an exact 0 in the middle; even `n` steps 40 / (n - 1) from -20)."""
    if n % 2:
        half = torch.linspace(-20.0, 0.0, n // 2 + 1)
        half = torch.sign(half) * torch.expm1(half.abs())
        return torch.cat([half, -half[:-1].flip(0)])
    half = -20.0 + (40.0 / (n - 1)) * torch.arange(n // 2, dtype=torch.float32)
    half = torch.sign(half) * torch.expm1(half.abs())
    return torch.cat([half, -half.flip(0)])


def _two_hot_mean(probs: Tensor, bins: Tensor) -> Tensor:
    """Expectation over mirrored bins taken pairwise, so the huge symmetric outer bins cancel
    exactly (a plain weighted sum loses the small result to rounding)."""
    n, mid = probs.shape[-1], probs.shape[-1] // 2
    lower, lower_bins = probs[..., :mid].flip(-1), bins[:mid].flip(-1)
    upper, upper_bins = probs[..., n - mid :], bins[n - mid :]
    paired = ((upper - lower) * upper_bins + lower * (upper_bins + lower_bins)).sum(-1)
    return paired + probs[..., mid] * bins[mid] if n % 2 else paired


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The saved tensors, loaded without executing code (dtypes are checked by `build`)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch/safetensors raise many kinds for corrupt or unsafe files
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BadInputError(f"cannot load the state dict safely: {first}", path=path) from None
    if not isinstance(raw, dict) or not all(isinstance(v, Tensor) for v in raw.values()):
        found = type(raw).__name__
        message = f"expected a state dict (name -> tensor), found {found}"
        raise BadInputError(f"{message}; save `module.state_dict()`", path=path)
    return {str(k): v for k, v in raw.items()}


def config_file(path: Path) -> Path:
    own = path.with_suffix(".json")
    return own if own.is_file() else path.parent / CONFIG_NAME


def read_config(path: Path) -> tuple[dict, Path]:
    file = config_file(path)
    if not file.is_file():
        raise BadInputError(
            f"no {CONFIG_NAME} beside the state dict: TorchRL checkpoints need the modules' "
            "constructor arguments (see beliefscope.rssm.families.torchrl_v3)",
            path=path,
        )
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise BadInputError(f"unreadable JSON ({error})", path=file) from None
    if not isinstance(config, dict):
        raise BadInputError("the JSON must hold a mapping", path=file)
    unknown = sorted(set(config) - TOP_LEVEL)
    if unknown:
        raise BadInputError(f"unknown entries {unknown}; known: {sorted(TOP_LEVEL)}", path=file)
    return config, file


def _part(config: dict, part: str, file: Path) -> tuple[str, dict, list[str]]:
    """(prefix, args, inputs) of one part, with the documented defaults."""
    entry = config.get(part, {})
    if not isinstance(entry, dict) or set(entry) - {"prefix", "args", "inputs"}:
        raise BadInputError(f"'{part}' must be {{prefix, args, inputs}}", path=file)
    prefix = entry.get("prefix", f"{part}.")
    inputs = entry.get("inputs", ["state", "belief"])
    if not isinstance(prefix, str) or sorted(inputs) != ["belief", "state"]:
        message = f"'{part}': prefix must be a string, inputs a permutation of state, belief"
        raise BadInputError(message, path=file)
    return prefix, entry.get("args", {}), list(inputs)


def build(tensors: dict[str, Tensor], path: Path, config: dict, file: Path) -> TorchRLWorldModel:
    """Rebuild the world model of a loaded state dict (see the module docstring)."""
    ignore = config.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
        raise BadInputError("'ignore' must be a list of key prefixes", path=file)
    kept = {k: v for k, v in tensors.items() if not k.startswith(tuple(ignore))}
    floats = {k: v.detach().to(torch.float32) for k, v in kept.items() if v.is_floating_point()}
    p = Params({**kept, **floats}, path, "world-model key")
    assumed: list[str] = []
    prefixes: dict[str, str] = {}
    args: dict[str, _Args] = {}
    inputs: dict[str, list[str]] = {}
    for part in PARTS:
        prefix, part_args, part_inputs = _part(config, part, file)
        if any(key.startswith(prefix) for key in kept):
            prefixes[part] = prefix
        elif part in ("encoder", "prior", "posterior") or part in config:
            raise BadInputError(f"missing world-model keys {prefix}* (the {part})", path=path)
        args[part] = _Args(part, part_args, file, assumed)
        if part in HEADS and part in prefixes and "inputs" not in config.get(part, {}):
            assumed.append(f"{part}.inputs={part_inputs}")
        inputs[part] = part_inputs
    bad = [k for k in kept if k.startswith(tuple(prefixes.values())) and k not in floats]
    if bad:
        raise BadInputError(f"world-model key {bad[0]!r} is not a float tensor", path=path)
    kl, loss_unused = _kl_form(config.get("loss", {}), file, assumed)
    for part in ("prior", "posterior"):  # the modules' own unimix: sampling only, checked
        if not 0.0 <= args[part].number("unimix", 0.0) < 1.0:
            raise BadInputError(f"{part}.unimix must be in [0, 1)", path=file)
    cell = TorchRLCell(
        p, prefixes["prior"], prefixes["posterior"], args["prior"], args["posterior"], kl
    )
    model = TorchRLWorldModel(cell, p, prefixes, args, inputs)
    image_shape = _image_shape(model, config, args, file)
    _check_heads(model, args, image_shape)
    for checked in args.values():
        checked.finish()
    p.check_all_used()
    dyn_scale, rep_scale = kl.scales(cell.groups)
    model.spec = ModelSpec(
        family=FAMILY,
        latent="categorical",
        deter=cell.deter,
        groups=cell.groups,
        classes=cell.classes,
        action_dim=cell.action_dim,
        image_shape=(image_shape[1], image_shape[2], image_shape[0]),
        free_nats=kl.free_bits,
        dyn_scale=dyn_scale,
        rep_scale=rep_scale,
        config={
            "format": FAMILY,
            "recurrent_model": "block_gru" if cell.block else "gru",
            "blocks": cell.blocks,
            "embed": cell.embed,
            "encoder_stages": len(model.enc),
            "heads": sorted(model.heads),
            "kl_mode": kl.mode,
            "unimix": kl.unimix if kl.mode == "separate" else 0.0,  # of the KL's probabilities
            "free_bits_per": "categorical" if kl.mode == "balanced" else "step",
            "loss": kl.settings(),
            "loss_unused": loss_unused,
            "config_file": str(file),
            "assumed": assumed,
        },
    )
    try:
        _run_once(model)
    except RuntimeError as error:  # shapes that do not chain (e.g. a kernel of the wrong size)
        message = f"world-model tensors do not fit together: {str(error).splitlines()[0]}"
        raise BadInputError(message, path=path) from None
    return model


def _image_shape(
    model: TorchRLWorldModel, config: dict, args: dict[str, _Args], file: Path
) -> tuple[int, int, int]:
    """(C, H, W): from the JSON (top level or the decoder's args), else square (recorded)."""
    first, last = model.enc[0].weight, model.enc[-1].weight
    enc = args["encoder"]
    enc.inferred("in_channels", first.shape[1], "the encoder's first conv")
    enc.inferred("kernel_size", first.shape[-1], "the encoder's first conv")
    channels = [conv.weight.shape[0] for conv in model.enc]
    depth, mults = enc.args.get("depth"), enc.args.get("mults")
    enc.seen |= {"depth", "mults"}
    if depth is not None and (mults is None or [depth * m for m in mults] != channels):
        message = f"{CONFIG_NAME}: encoder depth x mults must give the convs' channels {channels}"
        raise BadInputError(message, path=file)
    given = config.get("image_shape", args["decoder"].args.get("image_shape"))
    stages, out = len(model.enc), last.shape[0]
    if given is None:
        side = math.isqrt(model.rssm.embed // out)
        if side * side * out != model.rssm.embed:
            message = f"the encoder's output cannot fill the posterior's {model.rssm.embed} inputs"
            raise BadInputError(f"{message}; give image_shape in {CONFIG_NAME}", path=file)
        enc.assumed.append("square images")
        size = side * 2**stages
        return (first.shape[1], size, size)
    shape = tuple(int(x) for x in given)
    if len(shape) != 3 or shape[0] != first.shape[1]:
        raise BadInputError(
            f"image_shape {list(shape)} must be [C, H, W] with C = {first.shape[1]}", path=file
        )
    h, w = shape[1], shape[2]
    for _ in range(stages):
        h, w = -(-h // 2), -(-w // 2)
    if out * h * w != model.rssm.embed:
        message = f"image_shape {list(shape)} gives {out * h * w} encoder outputs but the "
        raise BadInputError(f"{message}posterior reads {model.rssm.embed}", path=file)
    return shape


def _check_heads(model: TorchRLWorldModel, args: dict[str, _Args], shape: tuple) -> None:
    units = model.rssm.groups * model.rssm.classes + model.rssm.deter
    if "decode" in model.heads:
        dec = args["decoder"]
        w = model.dec_projection.weight
        dec.inferred(
            "in_features",
            w.shape[1] if w.ndim == 2 else w.shape[0] * w.shape[1],
            "decoder.projection.weight",
        )
        dec.inferred("num_blocks", 1 if w.ndim == 2 else w.shape[0], "decoder.projection.weight")
        dec.inferred("kernel_size", model.dec[0].weight.shape[-1], "the decoder's convs")
        dec.inferred("image_shape", shape, "the encoder and the JSON")
        dec.seen |= {"depth", "mults"}
        if len(model.dec) != len(model.enc):
            raise BadInputError("the decoder's stages do not mirror the encoder's", path=dec.path)
    for part in ("reward", "cont"):
        if part in model.mlps:
            layers, part_args = model.mlps[part], args[part]
            part_args.inferred("in_features", _in_features(layers), f"{part} keys")
            part_args.inferred("out_features", _out_features(layers), f"{part} keys")
            part_args.inferred("depth", len(layers) - 1, f"{part} keys")
            part_args.inferred("num_cells", _out_features(layers[:1]), f"{part} keys")
            part_args.seen.add("outscale")
            if _in_features(layers) != units:
                message = f"the {part} head reads {_in_features(layers)} features, not {units}"
                raise BadInputError(message, path=model.path)


@torch.no_grad()
def _run_once(model: TorchRLWorldModel) -> None:
    """One tiny pass through every part, so that tensors that do not fit are reported at load."""
    cell = model.rssm
    embed = model.encode(torch.zeros(1, 1, *model.spec.image_shape, dtype=torch.uint8))
    if embed.shape[-1] != cell.embed:
        message = f"the encoder makes {embed.shape[-1]} features, the posterior reads {cell.embed}"
        raise BadInputError(message, path=model.path)
    deter, _ = cell.img_step(cell.initial(1), torch.zeros(1, cell.action_dim))
    feat = model.feat(deter, cell.obs_dist(deter, embed[:, 0]).mode())
    heads: dict[str, Callable[[Tensor], Tensor]] = {
        "decode": model.decode,
        "reward": model.reward,
        "cont": model.cont,
    }
    for name in sorted(model.heads):
        out = heads[name](feat)
        if name == "decode" and tuple(out.shape[1:]) != model.spec.image_shape:
            made, read = tuple(out.shape[1:]), model.spec.image_shape
            message = f"the decoder makes {made} images but the encoder reads {read}"
            raise BadInputError(message, path=model.path)


def _step(path: Path) -> int | None:
    match = CHECKPOINT.fullmatch(path.name)
    return int(match.group(1)) if match and match.group(1) else None


class TorchRLFormat:
    name = FAMILY
    patterns = "world_model[_<step>].pt, world_model[_<step>].safetensors"

    def discover(self, logdir: Path) -> list[CheckpointRef]:
        found = [logdir] if logdir.is_file() else sorted(logdir.rglob("world_model*"))
        return [
            CheckpointRef(FAMILY, path, _step(path))
            for path in found
            if CHECKPOINT.fullmatch(path.name) and path.is_file()
        ]

    def load(self, ref: CheckpointRef, *, config: dict | None = None) -> TorchRLWorldModel:
        file_config, file = read_config(ref.path)
        return build(read_state_dict(ref.path), ref.path, {**file_config, **(config or {})}, file)

    def content_files(self, ref: CheckpointRef) -> list[Path]:
        file = config_file(ref.path)
        return [ref.path] + ([file] if file.is_file() else [])


register(TorchRLFormat())
