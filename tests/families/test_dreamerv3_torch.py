"""dreamerv3-torch: parity with the repo's own outputs, and loading from shapes alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from beliefscope.errors import BadInputError
from beliefscope.replay.base import detect_format
from beliefscope.rssm.core import observe
from beliefscope.rssm.formats import CheckpointRef, discover, get_format
from tests.families.conftest import TORCH_DIR, max_err, mode_mismatches

EPISODE = next((TORCH_DIR / "episodes").glob("*.npz"))


def _inputs(model, ref):  # noqa: ANN001, ANN202 - the episode's embeddings and actions, B=1
    embed = model.encode(torch.as_tensor(np.load(EPISODE)["image"])[None])
    action = torch.as_tensor(ref["action"])[None]
    return embed, action


@torch.no_grad()
def test_embed_and_learned_initial_state_are_bit_exact(torch_model, torch_ref) -> None:
    embed, _ = _inputs(torch_model, torch_ref)
    assert max_err(embed[0], torch_ref["embed"]) <= 1e-5
    init = torch_model.cell.initial(1)
    # tanh of the stored weight: one op, a few ULP apart across CPUs' vector math at most
    assert max_err(init["deter"][0], torch_ref["init_deter"]) <= 1e-6
    assert max_err(init["stoch"][0], torch_ref["init_stoch"]) == 0.0  # a one-hot: exact


@torch.no_grad()
def test_mode_posterior_matches_the_repo(torch_model, torch_ref) -> None:
    embed, action = _inputs(torch_model, torch_ref)
    is_first = torch.as_tensor(torch_ref["is_first"]).bool()[None]
    traj = observe(torch_model.cell, embed, action, is_first, posterior="mode")
    assert max_err(traj.deter[0], torch_ref["mode_deter"]) <= 1e-5
    assert max_err(traj.prior.logits[0], torch_ref["mode_prior_logit"]) <= 1e-5
    assert max_err(traj.post.logits[0], torch_ref["mode_post_logit"]) <= 1e-5
    assert mode_mismatches(traj.stoch[0], torch_ref["mode_post_stoch"], traj.post.logits[0]) == 0
    kl = traj.post.kl(traj.prior)[0]
    assert max_err(kl, torch_ref["mode_kl"]) <= 1e-5
    free = torch_model.spec.free_nats
    assert max_err(kl.clamp(min=free), torch_ref["mode_dyn_loss"]) <= 1e-5
    assert max_err(kl.clamp(min=free), torch_ref["mode_rep_loss"]) <= 1e-5


@torch.no_grad()
def test_reference_samples_fed_back_reproduce_every_output(torch_model, torch_ref) -> None:
    embed, action = _inputs(torch_model, torch_ref)
    is_first = torch.as_tensor(torch_ref["is_first"]).bool()[None]
    samples = torch.as_tensor(torch_ref["post_stoch"])[None]
    traj = observe(torch_model.cell, embed, action, is_first, stoch_override=samples)
    assert max_err(traj.deter[0], torch_ref["deter"]) <= 1e-5
    assert max_err(traj.prior.logits[0], torch_ref["prior_logit"]) <= 1e-5
    assert max_err(traj.post.logits[0], torch_ref["post_logit"]) <= 1e-5
    kl = traj.post.kl(traj.prior)[0]
    spec = torch_model.spec
    assert max_err(kl, torch_ref["kl"]) <= 1e-5
    dyn, rep = kl.clamp(min=spec.free_nats), kl.clamp(min=spec.free_nats)
    assert max_err(dyn, torch_ref["dyn_loss"]) <= 1e-5
    assert max_err(rep, torch_ref["rep_loss"]) <= 1e-5
    assert max_err(spec.dyn_scale * dyn + spec.rep_scale * rep, torch_ref["kl_loss"]) <= 1e-5
    assert (torch.as_tensor(torch_ref["kl"]) < spec.free_nats).any()  # both clip branches run
    assert max_err(traj.prior.entropy()[0], torch_ref["prior_entropy"]) <= 1e-5
    assert max_err(traj.post.entropy()[0], torch_ref["post_entropy"]) <= 1e-5
    feat = torch_model.feat(traj.deter, traj.stoch)
    # feat is [flat stoch, deter] in the reference's order: as close as deter itself (a wrong
    # order or layout would be off by O(1))
    assert max_err(feat[0], torch_ref["feat"]) <= 1e-5
    assert max_err(torch_model.reward(feat)[0], torch_ref["reward_mean"][:, 0]) <= 1e-5
    assert max_err(torch_model.cont(feat)[0], torch_ref["cont_prob"][:, 0]) <= 1e-5
    assert max_err(torch_model.decode(feat)[0], torch_ref["recon_image"]) <= 1e-4


@torch.no_grad()
def test_mid_episode_resets_full_and_partial(torch_model, torch_ref) -> None:
    embed, action = _inputs(torch_model, torch_ref)
    is_first = torch.as_tensor(torch_ref["midreset_is_first"]).bool()[None]
    traj = observe(torch_model.cell, embed, action, is_first, posterior="mode")
    assert max_err(traj.deter[0], torch_ref["midreset_mode_deter"]) <= 1e-5
    assert max_err(traj.post.logits[0], torch_ref["midreset_mode_post_logit"]) <= 1e-5
    assert max_err(traj.prior.logits[0], torch_ref["midreset_mode_prior_logit"]) <= 1e-5
    assert (
        mode_mismatches(traj.stoch[0], torch_ref["midreset_mode_post_stoch"], traj.post.logits[0])
        == 0
    )
    assert max_err(traj.post.kl(traj.prior)[0], torch_ref["midreset_mode_kl"]) <= 1e-5
    # a reset restores the initial state: the same ops on the same inputs, though GEMM kernels
    # may round differently at another offset in memory
    torch.testing.assert_close(traj.deter[0, 20], traj.deter[0, 0], atol=1e-6, rtol=0)

    batch2 = torch.as_tensor(torch_ref["batch2_is_first"]).bool()
    traj = observe(
        torch_model.cell,
        embed.expand(2, -1, -1),
        action.expand(2, -1, -1),
        batch2,
        posterior="mode",
    )
    assert max_err(traj.deter, torch_ref["batch2_mode_deter"]) <= 1e-5
    assert max_err(traj.prior.logits, torch_ref["batch2_mode_prior_logit"]) <= 1e-5
    assert max_err(traj.post.logits, torch_ref["batch2_mode_post_logit"]) <= 1e-5
    assert mode_mismatches(traj.stoch, torch_ref["batch2_mode_post_stoch"], traj.post.logits) == 0
    assert max_err(traj.post.kl(traj.prior), torch_ref["batch2_mode_kl"]) <= 1e-5


def test_spec_is_inferred_from_shapes_and_config(torch_model) -> None:
    spec = torch_model.spec
    assert (spec.family, spec.deter, spec.groups, spec.classes, spec.action_dim) == (
        "dreamerv3-torch",
        64,
        8,
        8,
        3,
    )
    assert (spec.free_nats, spec.dyn_scale, spec.rep_scale) == (1.0, 0.5, 0.1)
    assert spec.image_shape == (64, 64, 3)
    assert spec.config["compiled"] and spec.config["learned_initial"]
    assert spec.config["embed"] == 512 and spec.config["cnn_depth"] == 4
    assert spec.config["assumed"] == []


@torch.no_grad()
def test_without_a_config_the_assumptions_are_listed_and_parity_holds(
    tmp_path: Path, torch_ref
) -> None:
    logdir = tmp_path / "run"
    (logdir / "train_eps").mkdir(parents=True)
    shutil.copy(TORCH_DIR / "latest.pt", logdir)
    shutil.copy(EPISODE, logdir / "train_eps")
    (ref,) = discover(logdir, "dreamerv3-torch")
    model = get_format("dreamerv3-torch").load(ref)
    assert "dyn_stoch=dyn_discrete=8 (square split of 64 units)" in model.spec.config["assumed"]
    assert model.spec.config["config_file"] is None
    replay = detect_format(logdir)
    assert replay.name == "dreamerv3-torch"
    (episode_ref,) = replay.list(logdir)
    assert episode_ref.key.startswith("dreamerv3-torch:train_eps/")
    episode = replay.load(episode_ref)
    embed = model.encode(torch.as_tensor(episode.image)[None])
    traj = observe(
        model.cell,
        embed,
        torch.as_tensor(episode.action)[None],
        torch.as_tensor(episode.is_first)[None],
    )
    assert max_err(traj.deter[0], torch_ref["mode_deter"]) <= 1e-5
    assert max_err(traj.post.logits[0], torch_ref["mode_post_logit"]) <= 1e-5


def _save_variant(tmp_path: Path, edit) -> CheckpointRef:  # noqa: ANN001
    raw = torch.load(TORCH_DIR / "latest.pt", weights_only=True)
    edit(raw["agent_state_dict"])
    path = tmp_path / "latest.pt"
    torch.save(raw, path)
    return CheckpointRef("dreamerv3-torch", path, None)


def test_missing_world_model_key_names_key_and_file(tmp_path: Path) -> None:
    ref = _save_variant(tmp_path, lambda sd: sd.pop("_wm._orig_mod.dynamics._obs_stat_layer.bias"))
    with pytest.raises(
        BadInputError, match="missing world-model key 'dynamics._obs_stat_layer.bias'"
    ) as err:
        get_format("dreamerv3-torch").load(ref)
    assert err.value.path == str(ref.path)


def test_extra_world_model_key_is_refused(tmp_path: Path) -> None:
    def add(sd: dict) -> None:
        sd["_wm._orig_mod.dynamics._extra_layer.weight"] = torch.zeros(2, 2)

    ref = _save_variant(tmp_path, add)
    with pytest.raises(BadInputError, match="unexpected world-model keys.*_extra_layer") as err:
        get_format("dreamerv3-torch").load(ref)
    assert err.value.path == str(ref.path)


def test_uncompiled_checkpoint_reads_the_plain_wm_prefix(tmp_path: Path, torch_model) -> None:
    def strip(sd: dict) -> None:
        for key in [k for k in sd if k.startswith("_wm._orig_mod.")]:
            sd["_wm." + key[len("_wm._orig_mod.") :]] = sd.pop(key)

    model = get_format("dreamerv3-torch").load(_save_variant(tmp_path, strip))
    assert not model.spec.config["compiled"]
    assert torch.equal(model.cell.gru.weight, torch_model.cell.gru.weight)


def test_mismatched_action_width_names_the_checkpoint(torch_model, torch_ref) -> None:
    embed, _ = _inputs(torch_model, torch_ref)
    action = torch.zeros(1, embed.shape[1], 5)
    is_first = torch.zeros(1, embed.shape[1], dtype=torch.bool)
    with pytest.raises(BadInputError, match="5 columns but this checkpoint's model takes 3") as err:
        observe(torch_model.cell, embed, action, is_first)
    assert err.value.path == str(TORCH_DIR / "latest.pt")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "latest.pt"
    torch.save({"agent_state_dict": {"x": _Exploit(marker)}}, path)
    with pytest.raises(BadInputError, match="weights_only=True") as err:
        get_format("dreamerv3-torch").load(CheckpointRef("dreamerv3-torch", path, None))
    assert err.value.path == str(path)
    assert not marker.exists()


def test_content_files_are_the_checkpoint_and_its_config() -> None:
    ref = CheckpointRef("dreamerv3-torch", TORCH_DIR / "latest.pt", None)
    files = get_format("dreamerv3-torch").content_files(ref)
    assert files == [TORCH_DIR / "latest.pt", TORCH_DIR / "config_used.json"]


def test_the_step_comes_from_metrics_jsonl_else_the_training_episodes(tmp_path: Path) -> None:
    """What `dreamer.py` records: `tools.Logger.write` appends `{"step": ...}` lines to
    metrics.jsonl; without it, the step it starts from is action_repeat x the transitions of
    `train_eps/` (each `<time>-<uuid>-<length>.npz` holds length - 1)."""
    logdir = tmp_path / "run"
    (logdir / "train_eps").mkdir(parents=True)
    shutil.copy(TORCH_DIR / "latest.pt", logdir)
    shutil.copy(TORCH_DIR / "config_used.json", logdir)  # action_repeat: 2
    (episode,) = (TORCH_DIR / "episodes").glob("*.npz")  # 40 entries: 39 transitions
    shutil.copy(episode, logdir / "train_eps")
    shutil.copy(episode, logdir / "train_eps" / episode.name.replace("c056", "d056"))
    (ref,) = discover(logdir, "dreamerv3-torch")
    assert ref.step == 2 * 2 * 39
    lines = ['{"step": 1000, "train_return": 3.5}', '{"step": 1400, "fps": 12.0}', '{"step": 14']
    (logdir / "metrics.jsonl").write_text("\n".join(lines))  # the last line is still written
    (ref,) = discover(logdir, "dreamerv3-torch")
    assert ref.step == 1400
    shutil.rmtree(logdir / "train_eps")
    (logdir / "metrics.jsonl").unlink()
    (ref,) = discover(logdir, "dreamerv3-torch")
    assert ref.step is None
