"""The dropout probe tells a model with memory from one without: trained on the occlusion
world, the model's prior carries the scene through a window of withheld frames better than
the same model with its memory ablated (fresh dynamics state at every step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beliefscope.replay.base import Episode, detect_format
from beliefscope.rssm import formats
from beliefscope.rssm.train import Stream, train
from beliefscope.world.generate import Generator, WorldConfig
from ingest.compute import compute_traces, pad_batch
from ingest.probes import ablate_memory, dropout_drift
from ingest.variants import parse
from tests.builders import MICRO


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Episode]]:
    root = tmp_path_factory.mktemp("memory")
    generator = Generator(root / "world", WorldConfig(seed=2, length=50, size=32))
    try:
        for _ in generator.episodes(8):
            pass
    finally:
        generator.close()
    fmt = detect_format(root / "world")
    episodes = [fmt.load(ref) for ref in fmt.list(root / "world")]
    train(
        Stream.join(episodes),
        root / "run",
        preset=MICRO,
        steps=300,
        save_every=300,
        batch=4,
        length=16,
        seed=0,
        progress=False,
    )
    return root / "run", episodes


@pytest.mark.slow
def test_dropout_drifts_less_with_memory(trained):
    run, episodes = trained
    (ref,) = formats.discover(run)
    model = formats.load(ref).eval()
    spec = parse("dropout:15-30")
    hidden = np.zeros(50, bool)
    hidden[15:30] = True
    drift = {}
    for name, m in (("memory", model), ("ablated", ablate_memory(model))):
        batch = pad_batch(episodes)
        plain = compute_traces(m, batch)
        withheld = compute_traces(m, spec.apply(batch, episodes))
        d = [
            dropout_drift(hidden, w.metrics, p.metrics)
            for w, p in zip(withheld, plain, strict=True)
        ]
        drift[name] = (
            np.mean([x.gap_pred_error for x in d]),
            np.mean([x.resume_correction for x in d]),
        )
    assert drift["memory"][0] < drift["ablated"][0], drift  # imagines the hidden frames better
    assert drift["memory"][1] < drift["ablated"][1], drift  # and needs less correction after
