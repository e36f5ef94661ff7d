"""Presets: DreamerV3's published sizes, the CPU-sized one, and strict rebuilding from configs."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from beliefscope.errors import BadInputError
from beliefscope.rssm.native import NativeWorldModel
from beliefscope.rssm.presets import PRESETS, get_preset, preset_from_dict


def test_dreamerv3_sizes_follow_the_paper_table() -> None:
    table = {  # name: (deter, hidden, classes, cnn depth)
        "size12m": (2048, 256, 16, 16),
        "size25m": (3072, 384, 24, 24),
        "size50m": (4096, 512, 32, 32),
        "size100m": (6144, 768, 48, 48),
        "size200m": (8192, 1024, 64, 64),
        "size400m": (12288, 1536, 96, 96),
    }
    for name, sizes in table.items():
        p = get_preset(name)
        assert (p.deter, p.hidden, p.classes, p.depth) == sizes and p.groups == 32
        assert (p.free_nats, p.dyn_scale, p.rep_scale, p.unimix) == (1.0, 0.5, 0.1, 0.01)


def test_tiny_is_cpu_sized() -> None:
    model = NativeWorldModel(get_preset("tiny"), action_dim=3)
    assert 2e6 < model.parameter_count() < 4e6
    assert model.encoder.outdim == 128 * 4 * 4


def test_configs_rebuild_exactly_and_reject_unknown_fields() -> None:
    for preset in PRESETS.values():
        assert preset_from_dict(asdict(preset)) == preset
    with pytest.raises(BadInputError, match="unknown model config fields \\['wings'\\]"):
        preset_from_dict({"wings": 2})
    with pytest.raises(BadInputError, match="'groups' must be int"):
        preset_from_dict({"groups": 2.5})
    with pytest.raises(BadInputError, match="unknown preset 'huge'"):
        get_preset("huge")
