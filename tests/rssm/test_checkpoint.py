"""Native checkpoints: discovered and loaded through the registry, shape-checked, atomic."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from beliefscope.errors import BadInputError
from beliefscope.rssm import formats
from beliefscope.rssm.checkpoint import save_checkpoint
from beliefscope.rssm.native import NativeWorldModel
from tests.rssm.conftest import MICRO


def _saved(tmp_path: Path, step: int = 7) -> tuple[NativeWorldModel, Path]:
    torch.manual_seed(0)
    model = NativeWorldModel(MICRO, 2, (16, 16, 3))
    return model, save_checkpoint(model, tmp_path / "run", step)


def test_round_trip_through_the_registry_gives_equal_outputs(tmp_path: Path) -> None:
    model, path = _saved(tmp_path)
    assert path.name == "ckpt-00000007.safetensors"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    refs = formats.discover(tmp_path, "native")
    assert [(r.format, r.path, r.step) for r in refs] == [("native", path, 7)]
    loaded = formats.load(refs[0])
    assert formats.get_format("native").content_files(refs[0]) == [path]
    assert loaded.spec == model.spec
    image = torch.randint(0, 256, (2, 5, 16, 16, 3), dtype=torch.uint8)
    action, is_first = torch.randn(2, 5, 2), torch.zeros(2, 5, dtype=torch.bool)
    is_first[:, 0] = True
    model.eval()
    with torch.no_grad():
        outs = [m.observe(m.encode(image), action, is_first) for m in (model, loaded)]
        decodes = [
            m.decode(m.feat(o.deter, o.stoch)) for m, o in zip((model, loaded), outs, strict=True)
        ]
    torch.testing.assert_close(outs[0].post.logits, outs[1].post.logits, rtol=0, atol=0)
    torch.testing.assert_close(decodes[0], decodes[1], rtol=0, atol=0)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    config = json.loads(meta["beliefscope"])
    assert config["kind"] == "native" and config["name"] == "micro"
    assert config["step"] == 7 and config["action_dim"] == 2 and config["deter"] == MICRO.deter


def _rewrite(path: Path, config_change: dict) -> None:
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    config = {**json.loads(meta["beliefscope"]), **config_change}
    save_file(load_file(str(path)), str(path), metadata={"beliefscope": json.dumps(config)})


def test_config_that_does_not_match_the_weights_is_rejected(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    _rewrite(path, {"deter": MICRO.deter * 2})
    with pytest.raises(BadInputError) as err:
        formats.load(formats.discover(tmp_path)[0])
    message = str(err.value)
    assert str(path) in message and "cell.gru.linear.weight" in message and "shape" in message


def test_missing_tensor_and_bad_config_are_rejected(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    _rewrite(path, {"head_layers": MICRO.head_layers + 1})
    with pytest.raises(BadInputError, match=r"missing tensor 'cont_head\.net\.1"):
        formats.load(formats.discover(tmp_path)[0])
    _rewrite(path, {"deter": "wide"})
    with pytest.raises(BadInputError, match="'deter' must be int"):
        formats.load(formats.discover(tmp_path)[0])


def test_truncated_or_foreign_files_are_rejected_naming_the_file(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(BadInputError, match=f"{path}: unreadable safetensors"):
        formats.load(formats.discover(tmp_path)[0])
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(BadInputError, match="not a native checkpoint"):
        formats.load(formats.discover(tmp_path)[0])


def test_saved_config_rebuilds_other_sizes(tmp_path: Path) -> None:
    """Loading follows the metadata, not a preset table: any sizes round-trip."""
    torch.manual_seed(0)
    model = NativeWorldModel(replace(MICRO, groups=3, classes=5, head_layers=2), 4, (32, 32, 1))
    path = save_checkpoint(model, tmp_path, 1)
    loaded = formats.load(formats.discover(tmp_path)[0])
    assert loaded.spec == model.spec and loaded.spec.image_shape == (32, 32, 1)
    assert path.stat().st_size > 0
