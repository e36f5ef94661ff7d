"""Real data for tests: MuJoCo world episodes, a briefly trained native model, an ingest.

Each builder runs the product's own code path (the world generator, `train`, the ingest
service) at sizes small enough for a 2-core CI machine.
"""

from __future__ import annotations

from pathlib import Path

from beliefscope.replay.base import detect_format
from beliefscope.rssm.presets import Preset
from beliefscope.rssm.train import Stream, train
from beliefscope.store.engine import Store, open_store
from beliefscope.world.generate import Generator, WorldConfig
from ingest.executors import Executor
from ingest.request import IngestReport, IngestRequest, ProgressSink
from ingest.service import Ingestor

MICRO = Preset(name="micro", depth=4, deter=32, hidden=32, groups=4, classes=4, units=32)
"""A model small enough that a test trains and ingests it in seconds."""


def make_world(out: Path, *, episodes: int = 4, length: int = 40, seed: int = 0) -> Path:
    generator = Generator(out, WorldConfig(seed=seed, length=length))
    try:
        for _ in generator.episodes(episodes):
            pass
    finally:
        generator.close()
    return out


def make_run(
    out: Path,
    replay: Path,
    *,
    steps: int = 2,
    save_every: int = 1,
    preset: Preset = MICRO,
    seed: int = 0,
) -> list[Path]:
    fmt = detect_format(replay)
    stream = Stream.join([fmt.load(ref) for ref in fmt.list(replay)])
    return train(
        stream,
        out,
        preset=preset,
        steps=steps,
        save_every=save_every,
        batch=2,
        length=8,
        seed=seed,
        progress=False,
    )


def ingest(
    store: Store,
    request: IngestRequest,
    progress: ProgressSink | None = None,
    executor: Executor | None = None,
) -> IngestReport:
    """Submit and run an ingest job, as the CLI does."""
    ingestor = Ingestor(store, request)
    return ingestor.run(ingestor.submit(started_by="tests").id, progress, executor)


def ingest_run(store_url: str, run_dir: Path, replay: Path, **request: object) -> IngestReport:
    req = IngestRequest(logdir=run_dir, replay=(replay,), **request)  # type: ignore[arg-type]
    return ingest(open_store(store_url), req)
