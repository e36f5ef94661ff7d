"""The native DreamerV3-style world model: categorical RSSM, CNN encoder/decoder, symlog heads.

The cell implements `RSSMCell`; the time loop is the shared `core.observe` / `core.imagine`,
so training here and ingest later filter episodes with exactly the same code.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from beliefscope.rssm import core
from beliefscope.rssm.core import ModelSpec, PosteriorMode, RSSMCell, State, Trajectory
from beliefscope.rssm.dist import Categorical
from beliefscope.rssm.nets import (
    Decoder,
    Encoder,
    Head,
    LayerNormGRU,
    TwoHot,
    dense,
    symexp,
    symlog,
)
from beliefscope.rssm.presets import Preset
from beliefscope.rssm.recipe import Recipe

Batch = dict[str, Tensor]
"""Training batch, (B, T, ...): image uint8, action, reward, is_first, is_terminal, and
optionally `observed` (bool, False on frames withheld by observation dropout) and `seen`
(the frames as the encoder sees them, when synthetic occluders hide part of them)."""


class NativeCell(nn.Module):
    """Categorical RSSM cell: h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}]); prior and posterior heads."""

    def __init__(self, preset: Preset, action_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.groups, self.classes, self.deter = preset.groups, preset.classes, preset.deter
        self.unimix = preset.unimix
        stoch = preset.groups * preset.classes
        self.img_in = dense(stoch + action_dim, preset.hidden)
        self.gru = LayerNormGRU(preset.hidden, preset.deter)
        self.prior = nn.Sequential(
            dense(preset.deter, preset.hidden), nn.Linear(preset.hidden, stoch)
        )
        self.post = nn.Sequential(
            dense(preset.deter + embed_dim, preset.hidden), nn.Linear(preset.hidden, stoch)
        )

    def initial(self, batch: int) -> State:
        """All zeros, as DreamerV3 at HEAD: a reset needs no learned state."""
        ref = self.gru.linear.weight
        return {
            "deter": ref.new_zeros(batch, self.deter),
            "stoch": ref.new_zeros(batch, self.groups, self.classes),
        }

    def img_step(self, state: State, action: Tensor) -> tuple[Tensor, Categorical]:
        stoch = state["stoch"].flatten(1)  # (B, G, K) -> (B, G*K)
        # Scale only actions beyond [-1, 1] so an unbounded action space cannot blow up the GRU.
        action = action / action.abs().clamp(min=1.0).detach()
        deter = self.gru(self.img_in(torch.cat([stoch, action], -1)), state["deter"])
        return deter, self._dist(self.prior(deter))

    def obs_dist(self, deter: Tensor, embed: Tensor) -> Categorical:
        return self._dist(self.post(torch.cat([deter, embed], -1)))

    def _dist(self, flat: Tensor) -> Categorical:
        logits = flat.reshape(*flat.shape[:-1], self.groups, self.classes)  # (B, G*K) -> (B, G, K)
        return Categorical(logits, self.unimix)


class NativeWorldModel(nn.Module):
    """Encoder, RSSM cell and heads on `feat = [flat stoch, deter]`; implements `WorldModel`."""

    def __init__(
        self, preset: Preset, action_dim: int, image_shape: tuple[int, int, int] = (64, 64, 3)
    ) -> None:
        super().__init__()
        self.preset = preset
        self.spec = ModelSpec(
            family="native",
            latent="categorical",
            deter=preset.deter,
            groups=preset.groups,
            classes=preset.classes,
            action_dim=action_dim,
            image_shape=tuple(image_shape),  # type: ignore[arg-type]
            free_nats=preset.free_nats,
            dyn_scale=preset.dyn_scale,
            rep_scale=preset.rep_scale,
            config={**asdict(preset), "action_dim": action_dim, "image_shape": list(image_shape)},
        )
        self.encoder = Encoder(self.spec.image_shape, preset.depth)
        # Typed as the protocol: `WorldModel.cell` is a mutable attribute, hence invariant.
        self.cell: RSSMCell = NativeCell(preset, action_dim, self.encoder.outdim)
        feat = preset.groups * preset.classes + preset.deter
        self.decoder = Decoder(feat, self.spec.image_shape, preset.depth)
        self.reward_head = Head(feat, preset.units, preset.head_layers, preset.bins, zero_init=True)
        self.cont_head = Head(feat, preset.units, preset.head_layers, 1, zero_init=False)
        self.twohot = TwoHot(preset.bins, preset.bin_range)

    # -- the filter -------------------------------------------------------------------------

    def initial(self, batch: int) -> State:
        return self.cell.initial(batch)

    def observe(
        self,
        embeds: Tensor,
        actions: Tensor,
        is_first: Tensor,
        *,
        posterior: PosteriorMode = "mode",
        generator: torch.Generator | None = None,
        observed: Tensor | None = None,
        state: State | None = None,
    ) -> Trajectory:
        """Per-step prior and posterior logits, deterministic states and latents, (B, T, ...)."""
        return core.observe(
            self.cell,
            embeds,
            actions,
            is_first,
            posterior=posterior,
            generator=generator,
            observed=observed,
            state=state,
        )

    def imagine(
        self,
        state: State,
        actions: Tensor,
        *,
        posterior: PosteriorMode = "mode",
        generator: torch.Generator | None = None,
    ) -> Trajectory:
        return core.imagine(self.cell, state, actions, posterior=posterior, generator=generator)

    # -- encoder and heads ------------------------------------------------------------------

    def encode(self, image: Tensor) -> Tensor:
        return self.encoder(image)

    def feat(self, deter: Tensor, stoch: Tensor) -> Tensor:
        return torch.cat([stoch.flatten(-2), deter], -1)  # (..., G, K) -> (..., G*K + D)

    def decode(self, feat: Tensor) -> Tensor:
        """Mean image in [0, 1] (not clipped)."""
        return symexp(self.decoder(feat)) + 0.5

    def reward(self, feat: Tensor) -> Tensor:
        return self.twohot.mean(self.reward_head(feat))

    def cont(self, feat: Tensor) -> Tensor:
        return torch.sigmoid(self.cont_head(feat)[..., 0])

    # -- training ---------------------------------------------------------------------------

    def loss(
        self,
        batch: Batch,
        generator: torch.Generator | None = None,
        recipe: Recipe = Recipe(),
    ) -> tuple[Tensor, dict[str, float]]:
        """DreamerV3's world-model loss, averaged over (B, T); metrics report KL raw and clipped.

        Reconstruction is MSE in symlog space summed over pixels; reward is two-hot CE on
        symlog(reward); continuation is Bernoulli CE on 1 - is_terminal; KL is balanced as
        `dyn * max(KL(sg(q) || p), free) + rep * max(KL(q || sg(p)), free)`. Frames withheld by
        `batch["observed"]` are decoded from the prior (there the posterior is the prior);
        `recipe` adds latent overshooting and weights the reward loss.
        """
        image = batch["image"]
        assert image.ndim == 5, image.shape
        traj = self.observe(
            self.encode(batch.get("seen", image)),
            batch["action"],
            batch["is_first"],
            posterior="sample",
            generator=generator,
            observed=batch.get("observed"),
        )
        feat = self.feat(traj.deter, traj.stoch)  # (B, T, F)
        target = symlog(image.to(feat.dtype) / 255.0 - 0.5)  # (B, T, H, W, C)
        image_loss = ((self.decoder(feat) - target) ** 2).sum((-3, -2, -1))
        reward_loss = self.twohot.loss(self.reward_head(feat), batch["reward"].to(feat.dtype))
        cont_target = 1.0 - batch["is_terminal"].to(feat.dtype)
        cont_loss = F.binary_cross_entropy_with_logits(
            self.cont_head(feat)[..., 0], cont_target, reduction="none"
        )
        p = self.preset
        kl = traj.post.kl(traj.prior)  # (B, T)
        dyn = traj.post.detach().kl(traj.prior).clamp(min=p.free_nats)
        rep = traj.post.kl(traj.prior.detach()).clamp(min=p.free_nats)
        total = (
            image_loss
            + recipe.reward_scale * reward_loss
            + cont_loss
            + p.dyn_scale * dyn
            + p.rep_scale * rep
        )
        loss = total.mean()
        metrics = {
            "image": image_loss.mean(),
            "reward": reward_loss.mean(),
            "cont": cont_loss.mean(),
            "kl": kl.mean(),
            "kl_dyn": dyn.mean(),
            "kl_rep": rep.mean(),
            "prior_entropy": traj.prior.entropy().mean(),
            "post_entropy": traj.post.entropy().mean(),
        }
        if recipe.overshoot > 0 and recipe.overshoot_scale > 0:
            over = self._overshoot_loss(traj, batch, target, recipe, generator)
            loss = loss + recipe.overshoot_scale * over
            metrics["overshoot"] = over
        metrics["loss"] = loss
        return loss, {name: float(value.detach()) for name, value in metrics.items()}

    def _overshoot_loss(
        self,
        traj: Trajectory,
        batch: Batch,
        target: Tensor,
        recipe: Recipe,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Image loss of frames decoded k = 1..K steps after random posterior states, imagined
        with the recorded actions (latent overshooting); steps past the window or across a
        reset are left out. Per imagined step, summed over pixels like the reconstruction."""
        b, steps = batch["is_first"].shape
        n, horizon = recipe.overshoot_starts, recipe.overshoot
        device = traj.deter.device
        starts = torch.randint(0, max(1, steps - 1), (b, n), generator=generator, device=device)
        rows = torch.arange(b, device=device)[:, None].expand(b, n)  # (B, N)
        ahead = starts[..., None] + torch.arange(1, horizon + 1, device=device)  # (B, N, K)
        inside = ahead < steps
        ahead = ahead.clamp(max=steps - 1)
        crossed = batch["is_first"][rows[..., None], ahead].cumsum(-1) > 0  # a reset at/before
        valid = (inside & ~crossed).flatten(0, 1)  # (B*N, K)
        state = {
            "deter": traj.deter[rows, starts].flatten(0, 1),  # (B, N, D) -> (B*N, D)
            "stoch": traj.stoch[rows, starts].flatten(0, 1),  # (B, N, G, K) -> (B*N, G, K)
        }
        actions = batch["action"][rows[..., None], ahead].flatten(0, 1)  # (B*N, K, A)
        imag = self.imagine(state, actions, posterior="sample", generator=generator)
        feat = self.feat(imag.deter, imag.stoch)  # (B*N, K, F)
        truth = target[rows[..., None], ahead].flatten(0, 1)  # (B*N, K, H, W, C)
        err = ((self.decoder(feat) - truth) ** 2).sum((-3, -2, -1))  # (B*N, K)
        weight = valid.to(err.dtype)
        return (err * weight).sum() / weight.sum().clamp(min=1.0)

    def parameter_count(self) -> int:
        return sum(param.numel() for param in self.parameters())
