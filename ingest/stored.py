"""Checkpoints and episodes the store knows, loaded back from their files (the checkpoint from
its snapshot, the episode through its replay format): what the probes and the audit re-run."""

from __future__ import annotations

from pathlib import Path

import torch

from beliefscope.replay.base import Episode, EpisodeRef, get_format
from beliefscope.rssm import formats as ckpt_formats
from beliefscope.rssm.core import WorldModel
from beliefscope.values.traces import CheckpointInfo, EpisodeInfo


def load_model(ckpt: CheckpointInfo, device: str = "cpu") -> WorldModel:
    model = ckpt_formats.load(
        ckpt_formats.CheckpointRef(ckpt.format, Path(ckpt.source_path), ckpt.step)
    )
    if isinstance(model, torch.nn.Module):
        model.to(device).eval()
    return model


def load_episode(info: EpisodeInfo) -> Episode:
    return get_format(info.format).load(EpisodeRef.stored(info))
