"""The latent KL of TorchRL world models, per `kl_mode`, against TorchRL's own loss.

References are computed here by TorchRL itself: `categorical_kl_terms` ("separate") and
`categorical_kl_balanced` ("balanced") called one step at a time with the settings of a
`DreamerV3ModelLoss` built as the JSON describes it (or with its defaults), and the loss
module's own KL outputs. The modes, their default and every default value are read from
TorchRL's signature, so a TorchRL release that changes them fails here.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.modules import (
    DreamerV3ImageDecoder,
    DreamerV3ImageEncoder,
    DreamerV3MLP,
    RSSMPosteriorV3,
    RSSMPriorV3,
)
from torchrl.objectives import (
    DreamerV3ModelLoss,
    categorical_kl_balanced,
    categorical_kl_terms,
)

from beliefscope.cli import main
from beliefscope.errors import BadInputError
from beliefscope.rssm.core import observe
from beliefscope.rssm.families.torchrl_v3 import KL_MODES, LOSS_ARGS
from beliefscope.rssm.formats import discover, load
from tests.families.test_torchrl import (
    GROUPS,
    TOL,
    UNIMIX,
    Net,
    make_net,
    make_rollout,
    save_log_dir,
    torchrl_mode_run,
)

SIGNATURE = inspect.signature(DreamerV3ModelLoss.__init__).parameters
TORCHRL_MODES = typing.get_args(typing.get_type_hints(DreamerV3ModelLoss.__init__)["kl_mode"])
LOSS_DEFAULTS = {
    name: p.default
    for name, p in SIGNATURE.items()
    if name not in ("self", "world_model") and p.default is not inspect.Parameter.empty
}
README = Path(__file__).parents[2] / "README.md"
SHARP = 40.0  # logits scale at which clamping and both free-bits branches matter


class _Logits(nn.Module):
    """A stand-in world model for `DreamerV3ModelLoss`: it writes the given latent logits
    (and empty reconstruction and reward outputs, which the KL does not read)."""

    def __init__(self, post: torch.Tensor, prior: torch.Tensor) -> None:
        super().__init__()
        self.post, self.prior = post, prior

    def forward(self, td: TensorDict) -> TensorDict:
        td.set(("next", "posterior_logits"), self.post)
        td.set(("next", "prior_logits"), self.prior)
        td.set(("next", "reco_pixels"), torch.zeros(*td.shape, 1))
        td.set(("next", "reward_logits"), torch.zeros(*td.shape, LOSS_DEFAULTS["num_reward_bins"]))
        return td


def err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Largest difference; NaN where only one side is NaN (TorchRL's separate KL without
    unimix is NaN where a softmax underflows to 0, and so is the product's)."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    if not torch.equal(ours.isnan(), theirs.isnan()):
        return float("nan")
    both = ~ours.isnan()
    return float((ours[both] - theirs[both]).abs().max()) if bool(both.any()) else 0.0


def torchrl_loss(post: torch.Tensor, prior: torch.Tensor, **kwargs: object) -> DreamerV3ModelLoss:
    return DreamerV3ModelLoss(_Logits(post, prior), **kwargs)  # type: ignore[arg-type]


def torchrl_kl_loss(loss: DreamerV3ModelLoss) -> float:
    """The loss module's own KL output(s) on its logits, summed."""
    world = loss.world_model
    batch = world.post.shape[:2]
    data = TensorDict(
        {"next": {"pixels": torch.zeros(*batch, 1), "reward": torch.zeros(*batch, 1)}}, batch
    )
    out, _ = loss(data)
    keys = {"balanced": ["loss_model_kl"]}.get(
        loss.kl_mode, ["loss_model_dynamic", "loss_model_representation"]
    )
    return sum(float(out[key].sum()) for key in keys)


@torch.no_grad()
def torchrl_terms(
    post: torch.Tensor, prior: torch.Tensor, loss: DreamerV3ModelLoss
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-step (kl, dyn, rep) from TorchRL's KL functions with the loss's own settings, one
    step at a time (they average over what they are given). The balanced function averages
    over the categoricals too: x G gives the sum over them; alpha 1 / 0 isolates its dynamics
    / representation term."""
    groups = post.shape[-2]
    flat_post, flat_prior = post.flatten(0, -3), prior.flatten(0, -3)  # (..., G, K) -> (N, G, K)
    rows = []
    for i in range(flat_post.shape[0]):
        p, q = flat_post[i : i + 1], flat_prior[i : i + 1]
        if loss.kl_mode == "separate":
            kl = categorical_kl_terms(p, q, 0.0, loss.unimix)[0]
            dyn, rep = categorical_kl_terms(p, q, loss.free_bits, loss.unimix)
        else:
            assert loss.kl_mode == "balanced", loss.kl_mode
            kl = groups * categorical_kl_balanced(p, q, alpha=1.0, free_bits=0.0)
            dyn = groups * categorical_kl_balanced(p, q, alpha=1.0, free_bits=loss.free_bits)
            rep = groups * categorical_kl_balanced(p, q, alpha=0.0, free_bits=loss.free_bits)
        rows.append(torch.stack([kl, dyn, rep]))
    kl, dyn, rep = torch.stack(rows).reshape(*post.shape[:-2], 3).unbind(-1)
    return kl, dyn, rep


def sharpen(net: Net, scale: float, prior: float | None = None) -> Net:
    """Scale the posterior's output layer by `scale` and the prior's by `prior` (`scale / 4`),
    so that some probabilities fall below TorchRL's 1e-8 floor and per-categorical KLs
    straddle the free bits."""
    with torch.no_grad():
        for stack, factor in (
            (net.posterior.obs_rnn_to_post_projector, scale),
            (net.prior.rnn_to_prior_projector, scale / 4 if prior is None else prior),
        ):
            last = [m for m in stack if isinstance(m, nn.Linear)][-1]
            last.weight.mul_(factor)
            last.bias.mul_(factor)
    return net


def loss_entry(mode: str, described: str) -> dict | None:
    """The JSON's `loss`: absent (or just the mode where it is not the default), or every
    DreamerV3ModelLoss argument at TorchRL's default, stated truthfully."""
    if described == "complete":
        return {**LOSS_DEFAULTS, "kl_mode": mode}
    return None if mode == LOSS_DEFAULTS["kl_mode"] else {"kl_mode": mode}


def load_net(tmp_path: Path, net: Net, loss: dict | None):  # noqa: ANN201
    config = {k: v for k, v in net.config.items() if k != "loss"}
    if loss is not None:
        config["loss"] = loss
    net.config = config
    logdir = save_log_dir(tmp_path / "run", net, make_rollout())
    (ref,) = discover(logdir)
    return load(ref)


def test_modes_and_defaults_are_torchrl_s() -> None:
    assert set(KL_MODES) == set(TORCHRL_MODES) and KL_MODES[0] == LOSS_DEFAULTS["kl_mode"]
    assert set(LOSS_DEFAULTS) == LOSS_ARGS  # every DreamerV3ModelLoss argument is accepted


@pytest.mark.parametrize("scale", [1.0, SHARP])
@pytest.mark.parametrize("recurrent_model", ["gru", "block_gru"])
@pytest.mark.parametrize("described", ["minimal", "complete"])
@pytest.mark.parametrize("mode", TORCHRL_MODES)
def test_per_step_kl_matches_torchrl_loss(
    tmp_path: Path, mode: str, described: str, recurrent_model: str, scale: float
) -> None:
    net = sharpen(make_net(recurrent_model, heads=False), scale)  # modules' unimix: 0.01
    rollout = make_rollout()
    model = load_net(tmp_path, net, loss_entry(mode, described))
    ref = torchrl_mode_run(net, rollout)
    loss = torchrl_loss(ref["post"], ref["prior"], **(loss_entry(mode, described) or {}))
    assert loss.kl_mode == mode
    kl_ref, dyn_ref, rep_ref = torchrl_terms(ref["post"], ref["prior"], loss)
    with torch.no_grad():
        embed = model.encode(rollout["next", "pixels"].permute(0, 1, 3, 4, 2))  # CHW -> HWC
        traj = observe(model.cell, embed, rollout["action"], rollout["is_init"][..., 0])
        plain = traj.post.kl(traj.prior)  # what ingest stores as `kl`
        kl, dyn, rep = model.rssm.kl_terms(traj.post, traj.prior)
    worst = {
        "kl": err(plain, kl_ref),
        "kl_terms.kl": err(kl, kl_ref),
        "kl_terms.dyn": err(dyn, dyn_ref),
        "kl_terms.rep": err(rep, rep_ref),
    }
    assert max(worst.values()) <= TOL, worst
    spec = model.spec
    ours = spec.dyn_scale * float(dyn.mean()) + spec.rep_scale * float(rep.mean())
    assert err(torch.tensor(ours), torch.tensor(torchrl_kl_loss(loss))) <= TOL
    # a real comparison: nonzero KL, and free bits that clip (per categorical: every step)
    assert float(kl.nan_to_num(1.0).min()) > 0 and bool(kl.isfinite().any())
    if mode == "balanced" or scale == 1.0:
        assert float((dyn - kl).max()) > 0.01


@pytest.mark.parametrize("recurrent_model", ["gru", "block_gru"])
def test_balanced_kl_clamps_the_probabilities(tmp_path: Path, recurrent_model: str) -> None:
    """Sharp logits: TorchRL's 1e-8 floor changes the KL, and the product follows it."""
    net = sharpen(make_net(recurrent_model, heads=False), SHARP, prior=SHARP)
    rollout = make_rollout()
    model = load_net(tmp_path, net, None)
    ref = torchrl_mode_run(net, rollout)
    kl_ref = torchrl_terms(ref["post"], ref["prior"], torchrl_loss(ref["post"], ref["prior"]))[0]
    post, prior = ref["post"].log_softmax(-1), ref["prior"].log_softmax(-1)
    unclamped = (post.exp() * (post - prior)).sum((-1, -2))
    with torch.no_grad():
        embed = model.encode(rollout["next", "pixels"].permute(0, 1, 3, 4, 2))  # CHW -> HWC
        traj = observe(model.cell, embed, rollout["action"], rollout["is_init"][..., 0])
    assert err(traj.post.kl(traj.prior), kl_ref) <= TOL
    assert err(model.rssm.kl_terms(traj.post, traj.prior)[0], kl_ref) <= TOL
    assert err(unclamped, kl_ref) > 0.1


def test_defaults_are_torchrl_s_and_recorded(tmp_path: Path) -> None:
    net = make_net("gru", heads=False)  # its modules' unimix is 0.01; the loss's is not
    model = load_net(tmp_path / "absent", net, None)
    spec, assumed = model.spec, model.spec.config["assumed"]
    assert spec.config["kl_mode"] == "balanced" == LOSS_DEFAULTS["kl_mode"]
    balanced = {name: LOSS_DEFAULTS[name] for name in ("free_bits", "lambda_kl", "kl_alpha")}
    assert spec.config["loss"] == {"kl_mode": "balanced", **balanced}
    expected = {f"loss.{name}={value!r}" for name, value in balanced.items()}
    assert {"loss.kl_mode='balanced'", *expected} <= set(assumed)
    assert not any(a.startswith("loss.unimix") for a in assumed)  # balanced does not read it
    assert spec.config["unimix"] == 0.0 and spec.config["free_bits_per"] == "categorical"
    alpha = LOSS_DEFAULTS["kl_alpha"]
    assert spec.free_nats == LOSS_DEFAULTS["free_bits"]
    assert (spec.dyn_scale, spec.rep_scale) == pytest.approx((alpha / GROUPS, (1 - alpha) / GROUPS))

    model = load_net(tmp_path / "separate", make_net("gru", heads=False), {"kl_mode": "separate"})
    spec, assumed = model.spec, model.spec.config["assumed"]
    assert f"loss.unimix={LOSS_DEFAULTS['unimix']!r}" in assumed and spec.config["unimix"] == 0.0
    assert not any(a.startswith("loss.kl_mode") for a in assumed)
    assert (spec.dyn_scale, spec.rep_scale) == (1.0, 0.1) and spec.config["free_bits_per"] == "step"
    # the default loss unimix is TorchRL's 0.0, not the posterior module's 0.01
    ref = torchrl_mode_run(net, make_rollout())
    with torch.no_grad():
        rollout = make_rollout()
        embed = model.encode(rollout["next", "pixels"].permute(0, 1, 3, 4, 2))  # CHW -> HWC
        traj = observe(model.cell, embed, rollout["action"], rollout["is_init"][..., 0])
        kl = traj.post.kl(traj.prior)
    with_module_unimix = categorical_kl_terms(ref["post"][:1, :1], ref["prior"][:1, :1], 0, UNIMIX)
    default = categorical_kl_terms(ref["post"][:1, :1], ref["prior"][:1, :1], 0, 0.0)
    assert abs(float(kl[0, 0]) - float(default[0])) <= TOL
    assert abs(float(kl[0, 0]) - float(with_module_unimix[0])) > 10 * TOL

    complete = {**LOSS_DEFAULTS, "kl_mode": "separate"}
    model = load_net(tmp_path / "complete", make_net("gru", heads=False), complete)
    assert not any(a.startswith("loss.") for a in model.spec.config["assumed"])
    assert "kl_alpha" in model.spec.config["loss_unused"]  # TorchRL's separate KL ignores it


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        ({"kl_mode": "bogus"}, "loss.kl_mode='bogus' is not a kl_mode of TorchRL's"),
        ({"kl_mode": 3}, "loss.kl_mode=3 is not a kl_mode"),
        ({"kl_mod": "balanced"}, r"'loss' has arguments DreamerV3ModelLoss does not take"),
        ({"unimix": 1.5, "kl_mode": "separate"}, r"loss.unimix must be in \[0, 1\)"),
        ({"free_bits": "1"}, "loss.free_bits must be a number, not '1'"),
    ],
)
def test_bad_loss_settings_are_refused(tmp_path: Path, loss: dict, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as info:
        load_net(tmp_path, make_net("gru", heads=False), loss)
    text = str(info.value)
    assert "world_model.json" in text
    if "is not a kl_mode" in message:
        assert "known: " + ", ".join(repr(m) for m in TORCHRL_MODES) in text
    if "kl_mod" in loss:
        assert "'kl_mode'" in text and "kl_mod'" in text


def test_non_square_latents_need_the_split(tmp_path: Path) -> None:
    """6 x 10 latents: without the split the error says which keys to add; with one of them
    the model loads and its default (balanced) KL matches TorchRL's."""
    net = make_net("block_gru", heads=False, groups=6, classes=10)
    for part in ("prior", "posterior"):
        for name in ("num_categoricals", "num_classes"):
            net.config[part]["args"].pop(name, None)
    with pytest.raises(BadInputError) as info:
        load_net(tmp_path / "none", net, None)
    assert str(info.value).endswith(
        "world_model.json: world_model.json gives no latent split (num_categoricals x "
        "num_classes) and the state dict's 60 latent units are not a square: add "
        "num_categoricals and num_classes (their product is 60) to prior.args"
    )
    net.config["prior"]["args"]["num_categoricals"] = 7
    with pytest.raises(BadInputError, match=r"gives 7x\? .* the state dict has 60 latent units"):
        load_net(tmp_path / "seven", net, None)
    net.config["prior"]["args"]["num_categoricals"] = 6
    model = load_net(tmp_path / "six", net, None)
    assert (model.spec.groups, model.spec.classes) == (6, 10)
    rollout = make_rollout()
    ref = torchrl_mode_run(net, rollout)
    kl_ref = torchrl_terms(ref["post"], ref["prior"], torchrl_loss(ref["post"], ref["prior"]))
    with torch.no_grad():
        embed = model.encode(rollout["next", "pixels"].permute(0, 1, 3, 4, 2))  # CHW -> HWC
        traj = observe(model.cell, embed, rollout["action"], rollout["is_init"][..., 0])
    assert err(traj.post.kl(traj.prior), kl_ref[0]) <= TOL
    assert err(model.rssm.kl_terms(traj.post, traj.prior)[1], kl_ref[1]) <= TOL


def test_readme_json_describes_a_default_built_model(tmp_path: Path) -> None:
    """The README's `world_model.json` loads a TorchRL DreamerV3 world model built with the
    defaults, states its default loss truthfully and completely, and gives TorchRL's KL."""
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(), re.S)
    (config,) = [json.loads(block) for block in blocks if '"posterior"' in block]
    torch.manual_seed(0)
    actions, feat = config["prior"]["args"]["action_dim"], 32 * 32 + 512
    modules = nn.ModuleDict(
        {
            "encoder": DreamerV3ImageEncoder(),
            "prior": RSSMPriorV3(action_dim=actions, action_shape=(actions,)),
            "posterior": RSSMPosteriorV3(rnn_hidden_dim=512, obs_embed_dim=4096),
            "decoder": DreamerV3ImageDecoder(in_features=feat),
            "reward": DreamerV3MLP(feat, 255),
            "cont": DreamerV3MLP(feat, 1),
        }
    )
    (tmp_path / "world_model.json").write_text(json.dumps(config))
    torch.save(modules.state_dict(), tmp_path / "world_model.pt")
    (ref,) = discover(tmp_path)
    model = load(ref)
    assert not [a for a in model.spec.config["assumed"] if a.startswith("loss.")]
    assert model.heads == {"decode", "reward", "cont"}
    net = Net("gru", modules, config)
    rollout = make_rollout(actions=actions, side=64)
    ref_run = torchrl_mode_run(net, rollout)
    default_loss = torchrl_loss(ref_run["post"], ref_run["prior"])  # DreamerV3ModelLoss()
    assert {name: getattr(default_loss, name) for name in config["loss"]} == config["loss"]
    assert model.spec.config["loss"] == config["loss"]  # all a balanced KL reads
    kl_ref, dyn_ref, _ = torchrl_terms(ref_run["post"], ref_run["prior"], default_loss)
    with torch.no_grad():
        embed = model.encode(rollout["next", "pixels"].permute(0, 1, 3, 4, 2))  # CHW -> HWC
        traj = observe(model.cell, embed, rollout["action"], rollout["is_init"][..., 0])
        kl, dyn, _ = model.rssm.kl_terms(traj.post, traj.prior)
    assert err(traj.post.kl(traj.prior), kl_ref) <= TOL and err(kl, kl_ref) <= TOL
    assert err(dyn, dyn_ref) <= TOL


# --- end to end: `beliefscope ingest` of a model whose JSON says nothing about its loss --------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The exported traces of a default-loss block-GRU model and TorchRL's per-step terms."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("torchrl-kl")
    net, rollout = sharpen(make_net("block_gru"), SHARP), make_rollout()
    net.config.pop("loss")
    logdir = save_log_dir(tmp / "default-loss", net, rollout)
    url = f"sqlite:///{tmp / 'store.db'}"
    out = tmp / "traces.csv"
    with pytest.MonkeyPatch.context() as mp:
        from beliefscope.config import get_settings
        from beliefscope.store.engine import upgrade

        upgrade(url)
        mp.setenv("BELIEFSCOPE_HOME", str(tmp / "home"))
        get_settings.cache_clear()
        try:
            assert main(["ingest", str(logdir), "--store", url, "--threads", "1"]) == 0
            args = ["--run", logdir.name, "--variant", "filter", "--store", url, "--out", str(out)]
            assert main(["export", "traces", *args]) == 0
        finally:
            get_settings.cache_clear()
    ref = torchrl_mode_run(net, rollout)
    terms = torchrl_terms(ref["post"], ref["prior"], torchrl_loss(ref["post"], ref["prior"]))
    return pd.read_csv(out), [t.numpy() for t in terms]


def _worst(ingested, column: str, index: int) -> float:  # noqa: ANN001
    frame, terms = ingested
    worst = 0.0
    for key, trace in frame.groupby("episode_key"):
        _, _, r, t0 = str(key).split(":")
        expected = terms[index][int(r), int(t0) : int(t0) + len(trace)]
        got = trace.sort_values("t")[column].to_numpy()
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def test_ingest_kl_of_a_default_loss_matches_torchrl(ingested) -> None:
    assert len(ingested[0]["episode_key"].unique()) == 6
    assert _worst(ingested, "kl", 0) <= TOL


def test_ingest_kl_dyn_rep_of_a_default_loss_match_torchrl(ingested) -> None:
    assert _worst(ingested, "kl_dyn", 1) <= TOL and _worst(ingested, "kl_rep", 2) <= TOL
