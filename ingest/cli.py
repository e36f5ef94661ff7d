"""`beliefscope ingest RUN_DIR`: recompute belief traces of every checkpoint x episode."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from beliefscope.access import terminal_user
from beliefscope.deprecations import old_option
from beliefscope.errors import BadInputError
from beliefscope.store.engine import open_store
from ingest.compute import ComputeOptions
from ingest.executors import Executor, LocalExecutor
from ingest.planner import NothingToIngestError, survey
from ingest.progress import Progress
from ingest.request import IngestRequest
from ingest.service import Ingestor
from ingest.units import default_threads


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the episodes and checkpoints come from and what computes on them: the flags of
    every command that re-runs checkpoints over a log dir (`ingest`, `watch`, `audit`)."""
    parser.add_argument(
        "--replay",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="replay directory (repeatable); default: every one found under the log dir",
    )
    parser.add_argument("--run-name", default=None, help="run name (default: the log dir's name)")
    parser.add_argument(
        "--format",
        dest="checkpoint_format",
        default=None,
        help="checkpoint format (default: detected from the files)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (default: the cores left free: cores less the current load, at "
        "least one left for the rest)",
    )


def set_up_torch(args: argparse.Namespace) -> None:
    """Refuse a CUDA device torch cannot see, then set the thread count asked for."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"--device {args.device}: no CUDA device is available here")
    torch.set_num_threads(args.threads or default_threads())


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by `ingest` and `watch`."""
    add_source_arguments(parser)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="SPEC",
        help="trace variant besides `filter`: openloop:K, dropout:A-B, dropout:occluded, delay:D",
    )
    old_option(parser, "--probe", "--variant", dest="variant", append=True)
    parser.add_argument(
        "--posterior",
        choices=["mode", "sample"],
        default="mode",
        help="latent fed forward: the posterior's mode (deterministic) or a seeded sample",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --posterior sample")
    parser.add_argument("--batch-size", type=int, default=16, help="episodes per model batch")
    parser.add_argument(
        "--openloop", type=int, default=5, help="open-loop horizon k of the filter trace"
    )
    parser.add_argument(
        "--metrics",
        choices=["all", "belief"],
        default="all",
        help="belief: the filter's statistics only (KL, correction, entropies, deter; no "
        "decoder or head runs, several times faster); all: every metric (a later `all` "
        "ingest fills in what a `belief` one left out)",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: encoder and decoder under bf16 autocast (faster on CPUs with AVX-512 BF16; "
        "the filter stays fp32; `bench/ingest.py --profile --precision bf16` reports the "
        "deviation); traces already stored are kept either way",
    )
    parser.add_argument(
        "--train-replay",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="replay the checkpoints trained on (repeatable), so scores split training and "
        "held-out episodes; native checkpoints record this themselves",
    )


def request_from(args: argparse.Namespace, logdir: Path) -> IngestRequest:
    set_up_torch(args)
    if not logdir.exists():
        raise BadInputError("log dir does not exist", path=logdir)
    return IngestRequest(
        logdir=logdir,
        replay=tuple(args.replay),
        run_name=args.run_name,
        variants=("filter", *args.variant),
        posterior=args.posterior,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        checkpoint_format=args.checkpoint_format,
        options=ComputeOptions(
            openloop=args.openloop, metrics=args.metrics, precision=args.precision
        ),
        train_replay=tuple(args.train_replay),
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="training log dir")
    add_request_arguments(parser)
    parser.add_argument(
        "--executor",
        choices=["local", "dask"],
        default="local",
        help="where work units run: this process, or a Dask cluster (beliefscope[cluster])",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="URL",
        help="Dask scheduler, e.g. tcp://head:8786 (default: start a local cluster)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="workers of the local Dask cluster (default 2)"
    )


def executor_from(args: argparse.Namespace) -> Executor:
    if args.executor == "local":
        if args.address:
            raise BadInputError("--address needs --executor dask")
        return LocalExecutor()
    from ingest.executors import DaskExecutor

    return DaskExecutor(address=args.address, workers=args.workers, threads=args.threads)


def open_ingestor(request: IngestRequest, store_url: str | None) -> Ingestor:
    """An ingestor of `request` on the store at `store_url`, created on first use, once the
    log dir is known to hold something to ingest: one that holds nothing fails before any
    store is opened (or created)."""
    found = survey(request)
    if (why := found.nothing(request)) is not None:
        raise NothingToIngestError(why)
    return Ingestor(open_store(store_url, create=True), request, found=found)


def run(args: argparse.Namespace) -> int:
    request = request_from(args, args.run_dir)
    executor = executor_from(args)
    ingestor = open_ingestor(request, args.store)
    try:
        job = ingestor.submit(started_by=terminal_user())
        with Progress(f"ingest {request.name}") as progress:
            report = ingestor.run(job.id, progress, executor=executor)
    finally:
        ingestor.store.close()
    print(
        f"ingest {request.name}: {report.written} traces written, {report.skipped} already stored, "
        f"{len(report.errors)} errors (job {report.job_id})"
    )
    for line in report.errors[:20]:
        print(f"  error: {line}")
    if report.failed:
        print(
            f"ingest {request.name}: failed, nothing ingested; the run stays in the store as "
            f"failed (`beliefscope runs delete {request.name}` removes it)"
        )
    return 1 if report.failed else 0
