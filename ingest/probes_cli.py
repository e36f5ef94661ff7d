"""`beliefscope probe KIND RUN_DIR`: what-if replays of recorded episodes, stored like traces.

- `dropout` / `delay` run through the ingest service as trace variants (`dropout:A-B`,
  `dropout:occluded`, `delay:D`) beside the plain `filter` trace, then summarise the drift per
  checkpoint (and, with `--control`, the same for the model with its memory ablated);
- `openloop` stores each checkpoint's horizon curve;
- `decode` fits the belief probe per checkpoint, stores its error against steps since
  occlusion, and a `decode` trace per episode carrying the decoded position and the spread of
  imagined futures (`extra:decoded_pos`, `extra:futures_mean`, `extra:futures_spread`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from beliefscope.access import terminal_user
from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.replay.base import Episode
from beliefscope.review.service import ReviewService
from beliefscope.rssm.core import WorldModel
from beliefscope.store.engine import Store
from beliefscope.values.traces import BELIEF_VARIANT, CheckpointInfo, EpisodeInfo
from ingest import probes
from ingest.cli import add_request_arguments, open_ingestor, request_from
from ingest.compute import ComputeOptions, compute_traces, pad_batch
from ingest.progress import Progress
from ingest.stored import load_episode, load_model
from ingest.variants import parse


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    kinds = {
        "dropout": "withhold frames (a window or the occluded steps) and measure the drift",
        "delay": "show frame t - D at step t",
        "openloop": "decode error vs imagination horizon 1..H",
        "decode": "belief decoding of the hidden object + imagined futures",
    }
    for kind, help_text in kinds.items():
        p = sub.add_parser(kind, help=help_text, description=help_text)
        p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="training log dir")
        add_request_arguments(p)
        if kind == "dropout":
            group = p.add_mutually_exclusive_group(required=True)
            group.add_argument("--window", metavar="A-B", help="withhold frames of steps A..B-1")
            group.add_argument("--occluded", action="store_true", help="withhold occluded steps")
            p.add_argument(
                "--control", action="store_true", help="also measure the memory-ablated model"
            )
        elif kind == "delay":
            p.add_argument("--steps", type=int, required=True, metavar="D", help="delay in steps")
        elif kind == "openloop":
            p.add_argument("--horizon", type=int, default=15)
            p.add_argument("--stride", type=int, default=5, help="steps between start points")
        else:
            p.add_argument(
                "--train-frac",
                type=float,
                default=0.5,
                help="episodes to fit on when the checkpoint does not record its training ones",
            )
            p.add_argument(
                "--fit",
                choices=["known", "visible"],
                default="known",
                help="steps the probe fits: wherever the position is knowable (view and "
                "memory), or visible steps only",
            )
            p.add_argument("--samples", type=int, default=8, help="imagined rollouts per step")
            p.add_argument("--future", type=int, default=10, help="imagined steps per rollout")
            p.add_argument("--alpha", type=float, default=1.0, help="ridge regularisation")


def run(args: argparse.Namespace) -> int:
    spec = None
    if args.kind == "dropout":
        spec = "dropout:occluded" if args.occluded else f"dropout:{args.window}"
    elif args.kind == "delay":
        spec = f"delay:{args.steps}"
    if spec is not None:
        parse(spec)  # a bad window is an error before anything runs
    args.variant = [*args.variant, spec] if spec else args.variant
    request = request_from(args, args.run_dir)
    ingestor = open_ingestor(request, args.store)
    store = ingestor.store
    try:
        job = ingestor.submit(started_by=terminal_user())
        with Progress(f"probe {args.kind} {request.name}") as progress:
            report = ingestor.run(job.id, progress)
        for line in report.errors[:20]:
            print(f"  error: {line}")
        run_id = store.queries.find_run(name=request.name).id
        checkpoints = store.queries.list_checkpoints(run_id=run_id, limit=10_000).items
        episodes = store.queries.list_episodes(run_id=run_id, limit=10_000).items
        if spec is not None:
            _summarise_variant(store, args, spec, checkpoints, episodes)
        elif args.kind == "openloop":
            _openloop(store, args, checkpoints, episodes)
        else:
            _decode(store, args, checkpoints, episodes)
    finally:
        store.close()
    return 0


def _hidden(spec: str, ep: Episode) -> np.ndarray:
    variant = parse(spec)
    if variant.kind != "dropout":
        return np.zeros(ep.length, bool)
    if variant.args:
        a, b = variant.args
        t = np.arange(ep.length)
        return (t >= a) & (t < b) & ~ep.is_first
    return np.asarray(ep.truth["occluded"], bool) & ~ep.is_first


def _summarise_variant(
    store: Store,
    args: argparse.Namespace,
    spec: str,
    checkpoints: tuple[CheckpointInfo, ...],
    episodes: tuple[EpisodeInfo, ...],
) -> None:
    """Drift per checkpoint from the stored traces (and the ablated control, recomputed)."""
    loaded = {e.id: load_episode(e) for e in episodes}
    print(f"{spec}: checkpoint step, resume correction, gap decode error (filter on those steps)")
    for ckpt in checkpoints:
        drifts = []
        for info in episodes:
            try:
                what_if = store.queries.find_trace(
                    checkpoint_id=ckpt.id, episode_id=info.id, variant=spec
                )
                plain = store.queries.find_trace(checkpoint_id=ckpt.id, episode_id=info.id)
            except NotFoundError:
                continue
            p = store.queries.read_trace(trace_id=what_if.id, metrics=["correction", "recon_error"])
            f = store.queries.read_trace(trace_id=plain.id, metrics=["correction", "recon_error"])
            drifts.append(
                probes.dropout_drift(
                    _hidden(spec, loaded[info.id]),
                    {k: v.values for k, v in p.series.items()},
                    {k: v.values for k, v in f.series.items()},
                )
            )
        summary = _mean_drift(drifts)
        if getattr(args, "control", False):
            summary["control"] = _mean_drift(
                _control_drift(load_model(ckpt, args.device), spec, list(loaded.values()))
            )
        store.reviews.save_probe_summary(checkpoint_id=ckpt.id, probe=spec, data=summary)
        control = summary.get("control")
        extra = f"  ablated memory: {control['resume_correction']:.3f}" if control else ""
        print(
            f"  {ckpt.step}: {summary['resume_correction']:.3f}, {summary['gap_pred_error']:.4f} "
            f"({summary['filter_pred_error']:.4f}){extra}"
        )


def _mean_drift(drifts: list[probes.Drift]) -> dict:
    out: dict = {"episodes": len(drifts)}
    for key in ("gap_steps", "resume_correction", "gap_pred_error", "filter_pred_error"):
        values = [getattr(d, key) for d in drifts if not math.isnan(getattr(d, key))]
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


def _control_drift(model: WorldModel, spec: str, eps: list[Episode]) -> list[probes.Drift]:
    ablated = probes.ablate_memory(model)
    variant = parse(spec)
    out = []
    with torch.inference_mode():
        for ep in eps:
            batch = pad_batch([ep])
            (plain,) = compute_traces(ablated, batch)
            (what_if,) = compute_traces(ablated, variant.apply(batch, [ep]))
            out.append(probes.dropout_drift(_hidden(spec, ep), what_if.metrics, plain.metrics))
    return out


def _openloop(
    store: Store,
    args: argparse.Namespace,
    checkpoints: tuple[CheckpointInfo, ...],
    episodes: tuple[EpisodeInfo, ...],
) -> None:
    eps = [load_episode(e) for e in episodes]
    for ckpt in checkpoints:
        curve = probes.horizon_curve(load_model(ckpt, args.device), eps, args.horizon, args.stride)
        data = {k: np.asarray(v).tolist() for k, v in asdict(curve).items()}
        store.reviews.save_probe_summary(checkpoint_id=ckpt.id, probe="openloop", data=data)
        shown = " ".join(f"{e:.4f}" for e in curve.error[:: max(1, args.horizon // 5)])
        print(f"  {ckpt.step}: error by horizon {shown}")


def decode_split(
    ckpt: CheckpointInfo,
    infos: Sequence[EpisodeInfo],
    episodes: Sequence[Episode],
    train_frac: float,
) -> tuple[list[int], list[int]]:
    """Indices of the episodes to fit the probe on and to test it on: the checkpoint's own
    training episodes against the rest where it records them, else `train_frac` of them.
    The fraction is taken evenly from the episodes with hidden steps and from those without
    (each ordered by file key), so the test side holds occlusions to report on whatever
    order the store or the renderer gave."""
    trained = set(ckpt.config.get("train_episodes") or ())
    fit = [i for i, e in enumerate(infos) if e.fingerprint in trained]
    if fit and len(fit) < len(infos):
        return fit, [i for i in range(len(infos)) if i not in set(fit)]
    n_train = int(round(len(infos) * train_frac))
    if n_train < 1 or n_train >= len(infos):
        raise BadInputError(
            f"belief decoding needs episodes with ground truth to fit and to test: {len(infos)} "
            f"found, --train-frac {train_frac} gives {n_train} to fit"
        )
    hidden = [bool(np.any(ep.truth["occluded"])) for ep in episodes]
    order = sorted(range(len(infos)), key=lambda i: (not hidden[i], infos[i].key))
    test_frac = 1.0 - n_train / len(infos)
    share = [math.floor(k * test_frac + 0.5) for k in range(len(order) + 1)]
    to_test = {i for k, i in enumerate(order) if share[k + 1] > share[k]}
    return [i for i in order if i not in to_test], [i for i in order if i in to_test]


@dataclass(frozen=True)
class DecodeOptions:
    alpha: float = 1.0
    fit: probes.FitSteps = "known"
    samples: int = 8
    future: int = 10
    train_frac: float = 0.5
    device: str = "cpu"


def decode_checkpoint(
    store: Store,
    ckpt: CheckpointInfo,
    infos: Sequence[EpisodeInfo],
    episodes: Sequence[Episode],
    options: DecodeOptions = DecodeOptions(),
) -> dict:
    """Fit the belief probe for one checkpoint, store its memory report as the `decode`
    summary and a `decode` trace per episode (the filter's metrics plus `belief_jump`, the
    decoded positions and the imagined futures), then apply the rules to those traces.
    `infos`/`episodes`: the run's episodes with ground truth, in the same order."""
    model = load_model(ckpt, options.device)
    fit, test = decode_split(ckpt, infos, episodes, options.train_frac)
    mean = np.concatenate([probes.occlusions(episodes[i]).position for i in fit]).mean(0)
    probe = probes.fit_decoder(model, [episodes[i] for i in fit], options.alpha, options.fit)
    report = probes.memory_report(model, probe, [episodes[i] for i in test], mean)
    data = {
        **report.to_dict(),
        "fit": options.fit,
        "train_episodes": [infos[i].key for i in fit],
        "test_episodes": [infos[i].key for i in test],
    }
    store.reviews.save_probe_summary(checkpoint_id=ckpt.id, probe="decode", data=data)
    for info, ep in zip(infos, episodes, strict=True):
        (trace,) = compute_traces(model, pad_batch([ep]))
        beliefs = probes.decode_episode(model, probe, ep)
        futures = probes.imagined_futures(model, probe, ep, options.samples, options.future)
        trace.metrics["belief_jump"] = beliefs.jump
        trace.extra.update(
            decoded_pos=beliefs.post.astype(np.float32),
            decoded_prior_pos=beliefs.prior.astype(np.float32),
            futures_mean=futures.mean,
            futures_spread=futures.spread,
        )
        store.writer.write_trace(ckpt.id, info.id, BELIEF_VARIANT, "mode", trace)
    ReviewService(store).apply_rules(who="probe", checkpoint_ids=[ckpt.id])
    return data


def variant_traces(
    store: Store,
    ckpt: CheckpointInfo,
    infos: Sequence[EpisodeInfo],
    episodes: Sequence[Episode],
    spec: str,
    device: str = "cpu",
) -> int:
    """Store the `spec` trace variant of the checkpoint on the given episodes (say, a few for
    a demo) and flag them; returns how many traces were new."""
    variant = parse(spec)
    model = load_model(ckpt, device)
    written = 0
    with torch.inference_mode():
        for info, ep in zip(infos, episodes, strict=True):
            batch = pad_batch([ep])
            (trace,) = compute_traces(
                model, variant.apply(batch, [ep]), variant.options(ComputeOptions())
            )
            written += store.writer.write_trace(ckpt.id, info.id, spec, "mode", trace) is not None
    ReviewService(store).apply_rules(who="probe", checkpoint_ids=[ckpt.id])
    return written


def _cm(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _decode(
    store: Store,
    args: argparse.Namespace,
    checkpoints: tuple[CheckpointInfo, ...],
    episodes: tuple[EpisodeInfo, ...],
) -> None:
    with_truth = [e for e in episodes if e.has_truth]
    eps = [load_episode(e) for e in with_truth]
    options = DecodeOptions(
        args.alpha, args.fit, args.samples, args.future, args.train_frac, args.device
    )
    print("belief error (cm) on held-out plain occlusions by steps since hidden (the last")
    print("visible position is exact there); training-mean baseline; slips and their last-seen")
    print("position error")
    for ckpt in checkpoints:
        data = decode_checkpoint(store, ckpt, with_truth, eps, options)
        plain = " ".join(_cm(e) for e in data["plain_error"][:9])
        slip = " ".join(_cm(e) for e in data["slip_error"][:5])
        seen = " ".join(_cm(e) for e in data["last_seen_slip_error"][:5])
        print(
            f"  {ckpt.step}: visible {_cm(data['visible_error'])}, plain {plain} "
            f"(mean {_cm(data['mean_baseline_error'])}); slip {slip} (last seen {seen}); "
            f"fit on {len(data['train_episodes'])}, tested on {len(data['test_episodes'])}"
        )
