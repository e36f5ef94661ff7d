"""`beliefscope demo`: the whole product on one machine, in one command.

It generates the MuJoCo occlusion world, lays out two runs (the shipped pretrained checkpoints
of a `tiny` model, and a `mini` model that trains live and writes a checkpoint every few
minutes), follows both with the ingest service, applies the default review rules and scores
them against the world's ground truth after every ingest, and serves the dashboard.

Why pretrained checkpoints: a CPU model needs ~800 updates (20+ minutes on 2 cores) before
its KL means anything, so the demo ships the checkpoints of a documented, reproducible
training command (`scripts/make-demo-checkpoints.sh`) and still trains live beside them.
Threads: the trainer runs niced with one torch thread and the ingest with one, so the server
stays responsive on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
import webbrowser
from dataclasses import dataclass, replace
from pathlib import Path

import torch

import server
from beliefscope.config import Settings, get_settings
from beliefscope.errors import NotFoundError
from beliefscope.replay.native import MANIFEST
from beliefscope.review.cli_score import HEADER, format_row
from beliefscope.review.evaluate import rescore
from beliefscope.review.service import ReviewService
from beliefscope.review.truth import TruthCache
from beliefscope.store.engine import Store, open_store, upgrade
from beliefscope.world.generate import Generator, WorldConfig
from ingest.planner import SnapshotCache
from ingest.probes_cli import decode_checkpoint, variant_traces
from ingest.request import IngestRequest
from ingest.service import Ingestor
from ingest.stored import load_episode

ASSETS = Path(server.__file__).parent / "demo_checkpoints"
"""Checkpoints of `scripts/make-demo-checkpoints.sh` (tiny preset, world seed 0), shipped as
the server package's data."""

WORLD_SEED = 0
PRETRAINED_RUN = "pretrained-tiny"
LIVE_RUN = "live-mini"
DROPOUT = "dropout:occluded"
DROPOUT_EPISODES = 4
"""Held-out episodes of the pretrained run that also get the `dropout:occluded` trace variant
(frames withheld while the box is hidden), so the episode page's variant selector has one."""


@dataclass(frozen=True)
class DemoConfig:
    home: Path
    episodes: int = 64
    """The first 48 are the pretrained model's training episodes; the rest are held out."""
    length: int = 150
    live_steps: int = 1000
    live_save_every: int = 50
    """A new live checkpoint every minute or two on a 2-core machine."""
    pretrained: int = 0
    """How many shipped checkpoints to use (0: all)."""
    interval: float = 3.0
    store: str = ""
    """The store's URL; empty: the demo's own, `home/beliefscope.db`, so deleting `home`
    removes the demo and leaves the user's own store (`~/.beliefscope/beliefscope.db`) alone."""

    @classmethod
    def quick(cls, home: Path) -> DemoConfig:
        return cls(
            home, episodes=4, length=50, live_steps=4, live_save_every=2, pretrained=2, interval=0.5
        )

    @property
    def world(self) -> Path:
        return self.home / "world"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.home / 'beliefscope.db'}"


def prepare(config: DemoConfig) -> Store:
    """The store (migrated), the world and the pretrained run; idempotent."""
    config.home.mkdir(parents=True, exist_ok=True)
    upgrade(config.store_url)
    store = open_store(config.store_url)
    print(
        f"demo: store {store.url}; to sign in and review, make a token for it with\n"
        f"demo:   beliefscope token create NAME --store {store.url}",
        flush=True,
    )
    ReviewService(store).ensure_default_rules(who="demo")
    if not (config.world / MANIFEST).exists():
        print(f"demo: generating {config.episodes} episodes of the occlusion world ...", flush=True)
        generator = Generator(config.world, WorldConfig(seed=WORLD_SEED, length=config.length))
        try:
            for _ in generator.episodes(config.episodes):
                pass
        finally:
            generator.close()
    shipped = sorted(ASSETS.glob("ckpt-*.safetensors"))
    if not shipped:
        raise FileNotFoundError(f"no demo checkpoints in {ASSETS}")
    chosen = shipped[-config.pretrained :] if config.pretrained else shipped
    pretrained = config.runs / PRETRAINED_RUN
    pretrained.mkdir(parents=True, exist_ok=True)
    for path in chosen:
        if not (pretrained / path.name).exists():
            shutil.copyfile(path, pretrained / path.name)
    return store


def start_trainer(config: DemoConfig) -> subprocess.Popen[bytes] | None:
    """The live run, niced, one torch thread; None when it already finished earlier."""
    out = config.runs / LIVE_RUN
    if any(out.glob("ckpt-*.safetensors")):
        print(f"demo: {out} already holds a live run; delete it to train again", flush=True)
        return None
    cmd = [
        sys.executable, "-m", "beliefscope.cli", "train", "--replay", str(config.world),
        "--out", str(out), "--steps", str(config.live_steps),
        "--save-every", str(config.live_save_every), "--preset", "mini", "--seed", "1",
        "--threads", "1",
    ]  # fmt: skip
    log = (config.home / "train.log").open("ab")
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(10)
    )


class Follower(threading.Thread):
    """Ingests new checkpoints and episodes of every run (which flags them), then re-scores."""

    def __init__(self, store: Store, config: DemoConfig, stop: threading.Event) -> None:
        super().__init__(name="demo-ingest", daemon=True)
        self.store, self.config, self.stop = store, config, stop
        self.caches: dict[str, SnapshotCache] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        torch.set_num_threads(1)
        try:
            while not self.stop.is_set():
                self.cycle()
                self.stop.wait(self.config.interval)
        except BaseException as err:  # reported by the main thread
            self.error = err

    def cycle(self) -> int:
        written = 0
        for run_dir in sorted(p for p in self.config.runs.iterdir() if p.is_dir()):
            request = IngestRequest(
                logdir=run_dir,
                replay=(self.config.world,),
                batch_size=8,
                snapshots=self.config.home / "snapshots",
            )
            ingestor = Ingestor(self.store, request, self.caches.setdefault(run_dir.name, {}))
            if not ingestor.pending():
                continue
            report = ingestor.run(ingestor.submit(started_by="demo").id)
            written += report.written
            run_id = self.store.queries.find_run(name=request.name).id
            if run_dir.name == PRETRAINED_RUN:
                self._decode(run_id)
            self._score(run_id)
            print(
                f"demo: {request.name}: +{report.written} traces, flags and scores updated",
                flush=True,
            )
        return written

    def _decode(self, run_id: int) -> None:
        """The belief probe for each checkpoint that lacks it: memory report, decode traces
        with the belief jump, and their flags; and the dropout variant of a few episodes."""
        q = self.store.queries
        infos = [e for e in q.list_episodes(run_id=run_id, limit=10_000).items if e.has_truth]
        episodes = None
        few = infos[-DROPOUT_EPISODES:]
        for ckpt in q.list_checkpoints(run_id=run_id, limit=10_000).items:
            episodes = episodes or [load_episode(e) for e in infos]
            if not q.list_traces(checkpoint_id=ckpt.id, variant=DROPOUT, limit=1).total:
                variant_traces(self.store, ckpt, few, episodes[-DROPOUT_EPISODES:], DROPOUT)
            try:
                self.store.reviews.get_probe_summary(checkpoint_id=ckpt.id, probe="decode")
                continue
            except NotFoundError:
                pass
            decode_checkpoint(self.store, ckpt, infos, episodes)
            print(f"demo: step {ckpt.step}: belief probe and belief jump stored", flush=True)

    def _score(self, run_id: int) -> None:
        truth = TruthCache(self.store)
        for ckpt in self.store.queries.list_checkpoints(run_id=run_id, limit=10_000).items:
            rescore(self.store, checkpoint_id=ckpt.id, truth=truth, resamples=200)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home", type=Path, default=None, help="demo directory (default: BELIEFSCOPE_HOME/demo)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small world and a few updates; ingest, flag, score, exit (no server)",
    )
    parser.add_argument("--no-browser", action="store_true", help="don't open a browser")


def run(args: argparse.Namespace) -> int:
    home = args.home or get_settings().home / "demo"
    config = replace(
        DemoConfig.quick(home) if args.quick else DemoConfig(home), store=args.store or ""
    )
    started = time.monotonic()
    store = prepare(config)
    stop = threading.Event()
    trainer = start_trainer(config)
    if args.quick:
        if trainer is not None and trainer.wait() != 0:
            print(f"demo: live training failed, see {home / 'train.log'}", file=sys.stderr)
            return 1
        follower = Follower(store, config, stop)
        follower.cycle()
        _summary(store, time.monotonic() - started)
        return 0
    follower = Follower(store, config, stop)
    follower.start()
    try:
        return _serve(config, store, args, follower)
    finally:
        stop.set()
        if trainer is not None and trainer.poll() is None:
            trainer.terminate()
            trainer.wait(timeout=30)
        follower.join(timeout=60)


def _serve(config: DemoConfig, store: Store, args: argparse.Namespace, follower: Follower) -> int:
    import uvicorn

    from beliefscope.cli.serve import build_app

    settings = Settings(home=config.home, store=config.store_url, host=args.host, port=args.port)
    app = build_app(settings, store=store)
    url = f"http://{args.host}:{args.port}/"
    print(
        f"demo: dashboard at {url} (Ctrl-C to stop); sign in with a token from "
        f"`beliefscope token create NAME --store {store.url}`",
        flush=True,
    )
    if not args.no_browser and os.environ.get("DISPLAY"):
        threading.Timer(2.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    if follower.error is not None:
        raise follower.error
    return 0


def _summary(store: Store, elapsed: float) -> None:
    q = store.queries
    for run_info in q.list_runs().items:
        print(
            f"demo: run {run_info.name}: {run_info.n_checkpoints} checkpoints, "
            f"{run_info.n_traces} traces"
        )
        print(f"demo: {HEADER}")
        for info in store.reviews.list_scores(run_id=run_info.id, split=None):
            print(f"demo: {format_row(info.step, info.score, info.split)}")
    print(f"demo: done in {elapsed:.0f} s")
