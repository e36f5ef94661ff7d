"""`beliefscope world generate` end to end, through the real command dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beliefscope.cli import main
from beliefscope.replay.base import detect_format


def test_generate_writes_episodes_an_ingest_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "replay"
    args = ["world", "generate", "--out", str(out), "--episodes", "2", "--seed", "3"]
    assert main([*args, "--length", "12"]) == 0
    assert "wrote 2 episodes (24 steps)" in capsys.readouterr().out
    fmt = detect_format(out)
    refs = fmt.list(out)
    assert fmt.name == "beliefscope" and [r.length for r in refs] == [12, 12]
    episode = fmt.load(refs[0])
    assert episode.image.shape == (12, 64, 64, 3)
    assert set(episode.truth) == {"qpos", "qvel", "visible_frac", "occluded", "slip"}
    assert np.array_equal(fmt.frame(refs[1], 11), fmt.load(refs[1]).image[11])

    # The same world can take more episodes; the manifest lists them all.
    assert main([*args, "--length", "12", "--seed", "4"]) == 0
    manifest = json.loads((out / "world.json").read_text())
    assert [e["seed"] for e in manifest["episodes"]] == [3, 3, 4, 4]
    assert len(list(out.glob("*.npz"))) == 4


def test_bad_arguments_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "replay"
    assert main(["world", "generate", "--out", str(out), "--episodes", "1", "--length", "1"]) == 2
    assert "--length must be at least 2" in capsys.readouterr().err
    assert main(["world", "generate", "--out", str(out), "--size", "1024"]) == 2
    assert "--size must be in [16, 512], got 1024" in capsys.readouterr().err
    assert main(["world", "generate", "--out", str(out), "--episodes", "1", "--length", "3"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in out.iterdir())
    code = main(["world", "generate", "--out", str(out), "--episodes", "1", "--size", "32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "world.json" in err and "different world configuration" in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before, "nothing written may be lost"
    (tmp_path / "file").write_text("x")
    code = main(["world", "generate", "--out", str(tmp_path / "file" / "sub"), "--episodes", "1"])
    assert code == 2 and "cannot create output directory" in capsys.readouterr().err
