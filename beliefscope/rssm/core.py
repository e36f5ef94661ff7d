"""The contract every RSSM family implements, and the one filter that runs them all.

A family (the native model, dreamerv3-torch, official DreamerV3, ...) implements only its
cell: `initial`, `img_step` (dynamics -> new `h_t` and the prior) and `obs_dist` (posterior
from `h_t` and the frame's embedding). `observe` and `imagine` below are shared, so reset
handling, the mode/sample choice, observation dropout and step alignment are the same for
every family and every consumer (training, ingest, probes).

Action convention (canonical, inside the product): `action[:, t]` is the action that *led
to* observation t; rows where `is_first` is set ignore it (a reset feeds a zero action).
Replay readers convert each format's own convention to this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor

from beliefscope.rssm.dist import LatentDist, stack

State = dict[str, Tensor]
"""A batch of RSSM states: at least `deter` (B, D) and `stoch` (B, G, K) or (B, Z)."""

PosteriorMode = Literal["mode", "sample"]


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint's model is, as far as the product needs to know."""

    family: str  # "native", "dreamerv3-torch", "dreamerv3", ...
    latent: Literal["categorical", "gaussian"]
    deter: int
    groups: int  # categorical groups (stoch); for Gaussian latents, the number of units
    classes: int  # categorical classes; 1 for Gaussian latents
    action_dim: int
    image_shape: tuple[int, int, int] = (64, 64, 3)
    free_nats: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    config: dict = field(default_factory=dict, compare=False, hash=False)
    """Everything else the family's loader knows (sizes, preset, step, source format)."""


class RSSMCell(Protocol):
    """One family's recurrent cell. Batch-first tensors, no time axis."""

    def initial(self, batch: int) -> State: ...

    def img_step(self, state: State, action: Tensor) -> tuple[Tensor, LatentDist]:
        """h_t = f(h_{t-1}, z_{t-1}, a_{t-1}) and the prior p(z_t | h_t)."""
        ...

    def obs_dist(self, deter: Tensor, embed: Tensor) -> LatentDist:
        """The posterior q(z_t | h_t, embed(o_t))."""
        ...

    # A cell may also define `kl_terms(post, prior) -> (kl, kl_dyn, kl_rep)`, per step, when
    # its family's loss does not floor the summed KL at the free nats (TorchRL's balanced
    # mode frees bits per categorical); ingest then stores its own terms.


class WorldModel(Protocol):
    """A loaded checkpoint: the cell plus the encoder and the heads on `feat`.

    A model whose checkpoint lacks some heads may define `heads`, the subset of
    {"decode", "reward", "cont"} it has; ingest then leaves the missing heads' metrics absent
    (the methods of a missing head raise `BadInputError`).
    """

    spec: ModelSpec
    cell: RSSMCell

    def encode(self, image: Tensor) -> Tensor:
        """(B, T, H, W, C) uint8 frames -> (B, T, E) embeddings."""
        ...

    def feat(self, deter: Tensor, stoch: Tensor) -> Tensor:
        """The features the heads read, (..., F)."""
        ...

    def decode(self, feat: Tensor) -> Tensor:
        """(..., F) -> (..., H, W, C) mean image in [0, 1] (not clipped)."""
        ...

    def reward(self, feat: Tensor) -> Tensor:
        """(..., F) -> (...) predicted reward."""
        ...

    def cont(self, feat: Tensor) -> Tensor:
        """(..., F) -> (...) predicted continuation probability."""
        ...


@dataclass
class Trajectory:
    """Per-step beliefs of a batch of sequences, batch shape (B, T)."""

    deter: Tensor  # (B, T, D)
    stoch: Tensor  # (B, T, G, K) or (B, T, Z): the latent fed forward
    prior: LatentDist
    post: LatentDist

    def state(self, t: int) -> State:
        """The state after step t, to start imagination from."""
        return {"deter": self.deter[:, t], "stoch": self.stoch[:, t]}


def reset(cell: RSSMCell, state: State, action: Tensor, is_first: Tensor) -> tuple[State, Tensor]:
    """Blend the initial state into rows that start an episode and zero their action."""
    if not bool(is_first.any()):
        return state, action
    init = cell.initial(action.shape[0])
    f = is_first.to(action.dtype)
    blended = {
        key: value * (1.0 - f.view(-1, *[1] * (value.ndim - 1)))
        + init[key] * f.view(-1, *[1] * (value.ndim - 1))
        for key, value in state.items()
    }
    return blended, action * (1.0 - f[:, None])


def action_input(cell: RSSMCell, action: Tensor) -> Tensor:
    """The cell's own action encoding, applied before resets zero the action.

    A cell may define `action_input` when its replay stores actions in a compact form (official
    DreamerV3 stores a discrete action as one index column and one-hots it inside the model);
    the widening must happen before `reset` zeroes reset rows, as zero is a valid index.
    """
    convert = getattr(cell, "action_input", None)
    return action if convert is None else convert(action)


def _latent(
    dist: LatentDist, posterior: PosteriorMode, generator: torch.Generator | None
) -> Tensor:
    return dist.mode() if posterior == "mode" else dist.sample(generator)


def observe(
    cell: RSSMCell,
    embed: Tensor,
    action: Tensor,
    is_first: Tensor,
    *,
    posterior: PosteriorMode = "mode",
    generator: torch.Generator | None = None,
    observed: Tensor | None = None,
    state: State | None = None,
    stoch_override: Tensor | None = None,
) -> Trajectory:
    """Filter sequences: prior from the dynamics, then the posterior after each frame.

    embed (B, T, E); action (B, T, A) in the canonical convention; is_first (B, T) bool.
    `observed` (B, T) bool: where False the frame is withheld and the step advances on the
    prior alone (observation-dropout probes); there the posterior *is* the prior.
    `stoch_override` (B, T, ...) teacher-forces the latent fed forward (parity with a
    reference's own posterior samples).
    """
    assert embed.ndim == 3 and action.ndim == 3 and is_first.ndim == 2, (
        embed.shape,
        action.shape,
        is_first.shape,
    )
    batch, steps = is_first.shape
    state = cell.initial(batch) if state is None else state
    action = action_input(cell, action)
    deters, stochs, priors, posts = [], [], [], []
    for t in range(steps):
        state, act = reset(cell, state, action[:, t], is_first[:, t])
        deter, prior = cell.img_step(state, act)
        post = cell.obs_dist(deter, embed[:, t])
        if observed is not None:
            post = post.where(observed[:, t], prior)
        if stoch_override is None:
            stoch = _latent(post, posterior, generator)
        else:
            stoch = stoch_override[:, t]
        state = {"deter": deter, "stoch": stoch}
        deters.append(deter)
        stochs.append(stoch)
        priors.append(prior)
        posts.append(post)
    return Trajectory(torch.stack(deters, 1), torch.stack(stochs, 1), stack(priors), stack(posts))


def imagine(
    cell: RSSMCell,
    state: State,
    action: Tensor,
    *,
    posterior: PosteriorMode = "mode",
    generator: torch.Generator | None = None,
) -> Trajectory:
    """Roll the prior forward from `state` with actions (B, H, A); no frames are seen."""
    assert action.ndim == 3, action.shape
    action = action_input(cell, action)
    deters, stochs, priors = [], [], []
    for t in range(action.shape[1]):
        deter, prior = cell.img_step(state, action[:, t])
        stoch = _latent(prior, posterior, generator)
        state = {"deter": deter, "stoch": stoch}
        deters.append(deter)
        stochs.append(stoch)
        priors.append(prior)
    prior_seq = stack(priors)
    return Trajectory(torch.stack(deters, 1), torch.stack(stochs, 1), prior_seq, prior_seq)
