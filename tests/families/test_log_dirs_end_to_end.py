"""Log dirs laid out as each project's own code writes them go through `beliefscope ingest`
with no format flags and come out of `beliefscope export traces` with the reference's numbers.

- NM512/dreamerv3-torch: `latest.pt`, `train_eps/*.npz`, `metrics.jsonl` in one folder;
- official DreamerV3: `ckpt/latest`, `ckpt/<timestamp>/{agent,step,replay}.pkl` + `done`,
  `config.yaml`, `replay/*.npz` chunks (one episode crosses the chunk boundary);
- the native model (`beliefscope train` on world episodes), for the open-loop probe.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import pytest

from beliefscope.cli import main
from beliefscope.store.engine import open_store, upgrade
from ingest.sources import replay_dirs
from tests.builders import make_run, make_world
from tests.families.conftest import OFFICIAL_DIR, TORCH_DIR

OPENLOOP_K = 5  # the filter trace's default open-loop horizon


def torch_log_dir(root: Path) -> Path:
    logdir = root / "dreamerv3-torch-run"
    (logdir / "train_eps").mkdir(parents=True)
    shutil.copy(TORCH_DIR / "latest.pt", logdir)
    for episode in (TORCH_DIR / "episodes").glob("*.npz"):
        shutil.copy(episode, logdir / "train_eps")
    (logdir / "metrics.jsonl").write_text('{"step": 312, "fps": 0}\n')
    return logdir


def official_log_dir(root: Path) -> Path:
    logdir = root / "dreamerv3-run"
    logdir.mkdir()
    for name in ("ckpt", "replay"):
        shutil.copytree(OFFICIAL_DIR / name, logdir / name)
    shutil.copy(OFFICIAL_DIR / "config.yaml", logdir)
    (logdir / "metrics.jsonl").write_text('{"step": 710}\n')
    return logdir


def native_log_dir(root: Path) -> Path:
    logdir = root / "native-run"
    make_world(logdir / "replay", episodes=2, length=24)
    make_run(logdir / "checkpoints", logdir / "replay", steps=1, save_every=1)
    return logdir


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Path]]]:
    """One store holding the three log dirs, each ingested twice: plain, then with a variant."""
    root = tmp_path_factory.mktemp("logdirs")
    with pytest.MonkeyPatch.context() as mp:
        from beliefscope.config import get_settings

        mp.setenv("BELIEFSCOPE_HOME", str(root / "home"))
        get_settings.cache_clear()
        url = f"sqlite:///{root / 'store.db'}"
        upgrade(url)
        dirs = {
            "dreamerv3-torch": torch_log_dir(root),
            "dreamerv3": official_log_dir(root),
            "native": native_log_dir(root),
        }
        for logdir in dirs.values():
            assert main(["ingest", str(logdir), "--store", url, "--threads", "1"]) == 0
            variant = ["--variant", "openloop:3"]
            assert main(["ingest", str(logdir), "--store", url, "--threads", "1", *variant]) == 0
        yield url, dirs
    get_settings.cache_clear()


def test_dreamerv3_torch_checkpoint_has_the_step_its_log_dir_records(ingested) -> None:
    """`latest.pt` has no step; the run's metrics.jsonl does (the dashboard showed "step ?")."""
    url, dirs = ingested
    store = open_store(url)
    try:
        run = store.queries.find_run(name=dirs["dreamerv3-torch"].name)
        (ckpt,) = store.queries.list_checkpoints(run_id=run.id).items
        assert ckpt.step == 312
    finally:
        store.close()


def export(url: str, out: Path, *flags: str) -> pd.DataFrame:
    assert main(["export", "traces", "--store", url, "--out", str(out), *flags]) == 0
    return pa_csv.read_csv(out).to_pandas() if out.suffix == ".csv" else pd.read_parquet(out)


def test_each_log_dir_is_recognised_and_recorded(ingested) -> None:
    url, dirs = ingested
    store = open_store(url)
    try:
        for family, logdir in dirs.items():
            run = store.queries.find_run(name=logdir.name)
            assert (run.format, run.family) == (family, family)
            (ckpt,) = store.queries.list_checkpoints(run_id=run.id).items
            assert (ckpt.format, ckpt.family) == (family, family)
            episodes = store.queries.list_episodes(run_id=run.id).items
            assert episodes and run.n_traces == 2 * len(episodes)  # filter + openloop:3
    finally:
        store.close()


def test_dreamerv3_torch_mode_kl_matches_the_reference(ingested, tmp_path: Path) -> None:
    url, dirs = ingested
    frame = export(
        url,
        tmp_path / "t.parquet",
        "--run",
        dirs["dreamerv3-torch"].name,
        "--variant",
        "filter",
        "--posterior",
        "mode",
    )
    with np.load(TORCH_DIR / "reference.npz") as ref:
        assert len(frame) == len(ref["mode_kl"])
        assert np.abs(frame["kl"].to_numpy() - ref["mode_kl"]).max() <= 1e-4
        assert np.abs(frame["kl_dyn"].to_numpy() - ref["mode_dyn_loss"]).max() <= 1e-4
        assert np.abs(frame["kl_rep"].to_numpy() - ref["mode_rep_loss"]).max() <= 1e-4
    assert frame["t"].tolist() == list(range(len(frame)))


def test_official_mode_kl_matches_the_reference(ingested, tmp_path: Path) -> None:
    url, dirs = ingested
    # the episode that runs across the chunk boundary, listed as the ingest lists it
    ((directory, replay),) = replay_dirs(dirs["dreamerv3"])
    (crossing,) = [r for r in replay.list(directory) if len(r.extra) == 3]  # row + 2 chunks
    frame = export(
        url,
        tmp_path / "t.csv",
        "--run",
        dirs["dreamerv3"].name,
        "--variant",
        "filter",
        "--episode",
        crossing.key,
        "--checkpoint",
        "710",
    )
    assert set(frame["episode_key"]) == {crossing.key} and set(frame["checkpoint_step"]) == {710}
    with np.load(OFFICIAL_DIR / "reference_mode.npz") as ref:
        n = len(ref["mode_kl"])  # the reference covers the episode's first 32 steps
        assert len(frame) >= n
        for column, key in (
            ("kl", "mode_kl"),
            ("kl_dyn", "mode_dyn_loss"),
            ("kl_rep", "mode_rep_loss"),
            ("prior_entropy", "mode_prior_entropy"),
            ("post_entropy", "mode_post_entropy"),
        ):
            err = np.abs(frame[column].to_numpy()[:n] - ref[key]).max()
            assert err <= 1e-4, (column, err)


@pytest.mark.parametrize("family", ["dreamerv3-torch", "dreamerv3", "native"])
def test_open_loop_probe_works_for_every_family(ingested, tmp_path: Path, family: str) -> None:
    url, dirs = ingested
    frame = export(url, tmp_path / "t.parquet", "--run", dirs[family].name)
    for (variant, _), trace in frame.groupby(["variant", "episode_id"]):
        k = 3 if variant == "openloop:3" else OPENLOOP_K
        error = trace.sort_values("t")["openloop_error"].to_numpy()
        assert np.isnan(error[:k]).all(), (variant, error[:k])
        assert np.isfinite(error[k:]).all() and (error[k:] > 0).all(), (family, variant)
