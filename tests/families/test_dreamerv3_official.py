"""Official DreamerV3: parity with the JAX code's own outputs, read without JAX."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from beliefscope.errors import BadInputError
from beliefscope.replay.base import detect_format
from beliefscope.rssm.core import observe
from beliefscope.rssm.formats import discover, get_format
from tests.families.conftest import OFFICIAL_DIR, max_err, mode_mismatches

FOLDER = OFFICIAL_DIR / "ckpt" / "20261125T041410F078236"


def _inputs(model, ref):  # noqa: ANN001, ANN202 - embeddings, one-hot prev actions, B=1
    embed = model.encode(torch.as_tensor(ref["image"])[None])
    index = torch.as_tensor(ref["prev_action"]).float()[None, :, None]  # (1, T, 1)
    return embed, index


@torch.no_grad()
def test_posterior_samples_fed_back_reproduce_the_reference(official_model, official_ref) -> None:
    ref = official_ref
    embed, action = _inputs(official_model, ref)
    assert max_err(embed[0], ref["tokens"]) <= 1e-5
    is_first = torch.as_tensor(ref["is_first"])[None]
    samples = torch.as_tensor(ref["stoch"])[None]
    traj = observe(official_model.cell, embed, action, is_first, stoch_override=samples)
    assert max_err(traj.deter[0], ref["deter"]) <= 1e-5
    assert max_err(traj.post.logits[0], ref["post_logits"]) <= 1e-5
    assert max_err(traj.prior.logits[0], ref["prior_logits"]) <= 1e-5
    assert max_err(traj.post.log_probs[0], ref["post_logprobs_unimix"]) <= 1e-5
    assert max_err(traj.prior.log_probs[0], ref["prior_logprobs_unimix"]) <= 1e-5
    kl = traj.post.kl(traj.prior)[0]
    assert max_err(kl, ref["kl"]) <= 1e-5
    free = official_model.spec.free_nats
    assert max_err(kl.clamp(min=free), ref["dyn_loss"]) <= 1e-5
    assert max_err(kl.clamp(min=free), ref["rep_loss"]) <= 1e-5
    assert max_err(traj.post.entropy()[0], ref["post_entropy"]) <= 1e-4
    assert max_err(traj.prior.entropy()[0], ref["prior_entropy"]) <= 1e-4
    feat = official_model.feat(traj.deter, traj.stoch)
    assert max_err(official_model.decode(feat)[0], ref["recon_image_mean"]) <= 1e-4
    reward, cont = official_model.reward(feat)[0], official_model.cont(feat)[0]
    assert reward.shape == cont.shape == (32,) and bool(((cont > 0) & (cont < 1)).all())


@torch.no_grad()
def test_imagination_from_the_posterior_matches(official_model, official_ref) -> None:
    ref, cell = official_ref, official_model.cell
    embed, action = _inputs(official_model, ref)
    is_first = torch.as_tensor(ref["is_first"])[None]
    traj = observe(
        cell, embed, action, is_first, stoch_override=torch.as_tensor(ref["stoch"])[None]
    )
    start = int(ref["imagine_start"])
    state = traj.state(start - 1)
    onehot = cell.action_input(action)
    deters, logits = [], []
    for j, stoch in enumerate(torch.as_tensor(ref["img_stoch"])):
        deter, prior = cell.img_step(state, onehot[:, start + j])
        deters.append(deter[0])
        logits.append(prior.logits[0])
        state = {"deter": deter, "stoch": stoch[None]}  # teacher-forced prior samples
    assert max_err(torch.stack(deters), ref["img_deter"]) <= 1e-5
    assert max_err(torch.stack(logits), ref["img_prior_logits"]) <= 1e-5


@pytest.mark.parametrize("run", ["mode", "midreset_mode"])
@torch.no_grad()
def test_mode_posterior_runs_freely_and_matches(
    official_model, official_ref, official_mode_ref, run
) -> None:
    ref = official_mode_ref
    embed, action = _inputs(official_model, official_ref)
    is_first = torch.as_tensor(ref["midreset_is_first" if run != "mode" else "is_first"])[None]
    traj = observe(official_model.cell, embed, action, is_first, posterior="mode")
    assert max_err(traj.deter[0], ref[f"{run}_deter"]) <= 1e-5
    assert max_err(traj.post.logits[0], ref[f"{run}_post_logits"]) <= 1e-5
    assert max_err(traj.prior.logits[0], ref[f"{run}_prior_logits"]) <= 1e-5
    assert mode_mismatches(traj.stoch[0], ref[f"{run}_post_stoch"], traj.post.logits[0]) == 0
    kl = traj.post.kl(traj.prior)[0]
    assert max_err(kl, ref[f"{run}_kl"]) <= 1e-5
    assert max_err(kl.clamp(min=1.0), ref[f"{run}_dyn_loss"]) <= 1e-5
    assert max_err(traj.prior.entropy()[0], ref[f"{run}_prior_entropy"]) <= 1e-4
    assert max_err(traj.post.entropy()[0], ref[f"{run}_post_entropy"]) <= 1e-4


@torch.no_grad()
def test_log_dir_end_to_end_through_the_replay_reader(official_model, official_mode_ref) -> None:
    """The chunk reader's episode (crossing a chunk boundary) gives the reference mode run."""
    replay = detect_format(OFFICIAL_DIR)
    assert replay.name == "dreamerv3-chunks"
    crossing = next(r for r in replay.list(OFFICIAL_DIR) if len(r.extra) == 3)
    episode = replay.load(crossing)
    embed = official_model.encode(torch.as_tensor(episode.image)[None])
    traj = observe(
        official_model.cell,
        embed,
        torch.as_tensor(episode.action)[None],
        torch.as_tensor(episode.is_first)[None],
    )
    assert max_err(traj.deter[0, :32], official_mode_ref["mode_deter"]) <= 1e-5
    assert max_err(traj.post.logits[0, :32], official_mode_ref["mode_post_logits"]) <= 1e-5


def test_spec_and_discovery(official_model) -> None:
    (ref,) = discover(OFFICIAL_DIR, "dreamerv3")
    assert ref.path == FOLDER and ref.step == 710
    spec = official_model.spec
    assert (spec.family, spec.deter, spec.groups, spec.classes, spec.action_dim) == (
        "dreamerv3",
        256,
        16,
        8,
        3,
    )
    assert (spec.free_nats, spec.dyn_scale, spec.rep_scale) == (1.0, 1.0, 0.1)
    assert spec.image_shape == (64, 64, 3)
    assert spec.config["blocks"] == 8 and spec.config["imglayers"] == 2
    files = get_format("dreamerv3").content_files(ref)
    assert files == [FOLDER / "agent.pkl", OFFICIAL_DIR / "config.yaml"]


def _copy_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(OFFICIAL_DIR / "ckpt", run / "ckpt")
    shutil.copy(OFFICIAL_DIR / "config.yaml", run)
    (run / "ckpt").chmod(0o755)
    for path in (run / "ckpt").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return run


def _agent() -> dict:
    with open(FOLDER / "agent.pkl", "rb") as file:
        return pickle.load(file)  # the fixture is trusted data


def test_agent_pickle_asking_for_other_globals_is_refused(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    marker = tmp_path / "marker"

    class Exploit:
        def __reduce__(self):  # noqa: ANN204
            import os

            return (os.system, (f"touch {marker}",))

    agent_file = run / "ckpt" / FOLDER.name / "agent.pkl"
    agent_file.write_bytes(pickle.dumps({"params": {"dyn/x": Exploit()}}))
    (ref,) = discover(run, "dreamerv3")
    with pytest.raises(
        BadInputError, match=r"global (os|posix)\.system, which is not allowed"
    ) as err:
        get_format("dreamerv3").load(ref)
    assert err.value.path == str(agent_file)
    assert not marker.exists()


def test_missing_and_extra_world_model_keys(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    agent_file = run / "ckpt" / FOLDER.name / "agent.pkl"
    agent = _agent()
    del agent["params"]["dyn/obslogit/bias"]
    agent_file.write_bytes(pickle.dumps(agent))
    (ref,) = discover(run, "dreamerv3")
    with pytest.raises(BadInputError, match="missing world-model key 'dyn/obslogit/bias'"):
        get_format("dreamerv3").load(ref)
    agent = _agent()
    agent["params"]["dyn/spare/kernel"] = np.zeros((5, 3), np.float32)
    agent_file.write_bytes(pickle.dumps(agent))
    with pytest.raises(BadInputError, match="unexpected world-model keys.*dyn/spare/kernel") as err:
        get_format("dreamerv3").load(ref)
    assert err.value.path == str(ref.path)
    del agent["params"]["dyn/spare/kernel"]
    agent["params"]["dec/conv9/kernel"] = np.zeros((5, 5, 3, 3), np.float32)
    agent_file.write_bytes(pickle.dumps(agent))
    with pytest.raises(BadInputError, match=r"numbered \[0, 1, 2, 9\]"):
        get_format("dreamerv3").load(ref)
    agent = _agent()
    agent["params"]["dyn/prior1/kernel"] = np.zeros((31, 32), np.float32)
    agent_file.write_bytes(pickle.dumps(agent))
    with pytest.raises(BadInputError, match="world-model tensors do not fit together"):
        get_format("dreamerv3").load(ref)


def test_unfinished_save_is_refused(tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    (run / "ckpt" / FOLDER.name / "done").unlink()
    (ref,) = discover(run, "dreamerv3")
    with pytest.raises(BadInputError, match="no 'done' marker"):
        get_format("dreamerv3").load(ref)


@torch.no_grad()
def test_late_2024_single_file_layout_is_read(tmp_path: Path, official_model) -> None:
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(OFFICIAL_DIR / "config.yaml", run)
    saved = {"step": 710, "agent": _agent(), "replay": None, "_timestamp": 1.0}
    (run / "checkpoint.pkl").write_bytes(pickle.dumps(saved))
    (ref,) = discover(run, "dreamerv3")
    model = get_format("dreamerv3").load(ref)
    assert model.spec == official_model.spec
    assert torch.equal(
        model.cell.nets.p.get("dyn/dyngru/kernel"),
        official_model.cell.nets.p.get("dyn/dyngru/kernel"),
    )


def test_2023_layout_is_detected_and_refused_precisely(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text("{}")
    (run / "checkpoint.ckpt").write_bytes(b"\x80\x04N.")
    (ref,) = discover(run, "dreamerv3")
    with pytest.raises(
        BadInputError, match="2023/2024 single-file layout `checkpoint.ckpt`.*not supported yet"
    ):
        get_format("dreamerv3").load(ref)


def test_action_sizes_and_indices_are_checked(official_model) -> None:
    cell = official_model.cell
    embed = torch.zeros(1, 3, official_model.spec.config["tokens"])
    is_first = torch.tensor([[True, False, False]])
    with pytest.raises(BadInputError, match="2 columns but this checkpoint's model takes 3") as err:
        observe(cell, embed, torch.zeros(1, 3, 2), is_first)
    assert err.value.path == str(FOLDER)
    with pytest.raises(BadInputError, match=r"integers in \[0, 3\)"):
        observe(cell, embed, torch.tensor([[[0.0], [3.0], [1.0]]]), is_first)
    onehot = cell.action_input(torch.tensor([[[0.0], [2.0]]]))
    assert torch.equal(onehot, torch.tensor([[[1.0, 0, 0], [0, 0, 1.0]]]))
