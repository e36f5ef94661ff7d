"""TensorBoard event files: one directory (a TensorBoard "run") per (checkpoint, episode),
`OUT/<run>/<checkpoint>/<episode>/`, with one scalar series per trace variant and metric (tag
`<variant>/<metric>`, `<variant>@<posterior>/<metric>` for sampled posteriors) and x = the
episode step `t`, so a user can open them next to their training curves.

Written with TensorBoard's own event-file writer (the optional `tensorboard` package,
`pip install 'beliefscope[tensorboard]'`): one event per step holding that step's metrics. NaN
and +/-inf are written as such (TensorBoard stores scalars as float32).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from beliefscope.errors import BadInputError
from beliefscope.export.selection import Filters, SelectedTrace, select_traces
from beliefscope.export.tables import BATCH_ROWS, series_tag
from beliefscope.store.engine import Store


@dataclass
class TensorBoardReport:
    directories: int = 0  # (checkpoint, episode) event-file directories written
    traces: int = 0
    points: int = 0  # scalar values written


def run_dir(out: Path, sel: SelectedTrace) -> Path:
    """Where one (checkpoint, episode) pair's event file goes."""
    ckpt = sel.checkpoint
    checkpoint = f"step-{ckpt.step}" if ckpt.step is not None else f"checkpoint-{ckpt.id}"
    episode = f"episode-{sel.episode.id}-{_safe(sel.episode.key)}"
    return out / _safe(sel.run.name) / checkpoint / episode


def export_tensorboard(
    store: Store, filters: Filters, out: Path, window: int = BATCH_ROWS
) -> TensorBoardReport:
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise BadInputError(
            "the TensorBoard export needs the tensorboard package: "
            "pip install 'beliefscope[tensorboard]'"
        ) from None
    report = TensorBoardReport()
    writers: dict[Path, Any] = {}
    try:
        for sel in select_traces(store, filters):
            directory = run_dir(out, sel)
            if directory not in writers:
                # traces come grouped by checkpoint: close the previous checkpoint's files
                for old in [d for d in writers if d.parent != directory.parent]:
                    writers.pop(old).close()
                directory.mkdir(parents=True, exist_ok=True)
                writers[directory] = EventFileWriter(str(directory))
                report.directories += 1
            report.points += _write_trace(
                store, sel, writers[directory], window, event_pb2.Event, summary_pb2.Summary
            )
            report.traces += 1
    finally:
        for writer in writers.values():
            writer.close()
    return report


def _write_trace(
    store: Store, sel: SelectedTrace, writer: Any, window: int, Event: Any, Summary: Any
) -> int:
    """Write one trace's steps, `window` at a time, as `Event`s of `Summary` values."""
    points = 0
    wall = time.time()
    for t0 in range(0, sel.trace.length, window):
        t1 = min(sel.trace.length, t0 + window) - 1
        series = store.queries.read_trace(trace_id=sel.trace.id, t0=t0, t1=t1).series
        if not series:
            continue
        tags = [series_tag(sel.trace.variant, sel.trace.posterior, m) for m in series]
        t = next(iter(series.values())).t
        table = np.stack([s.values for s in series.values()], axis=1)  # (n, M)
        assert table.shape == (len(t), len(tags)), (table.shape, len(t), len(tags))
        for step, row in zip(t.tolist(), table.tolist(), strict=True):
            values = [
                Summary.Value(tag=tag, simple_value=v) for tag, v in zip(tags, row, strict=True)
            ]
            writer.add_event(Event(wall_time=wall, step=step, summary=Summary(value=values)))
        points += table.size
    return points


def _safe(name: str) -> str:
    """A path component: letters, digits, `.`, `_`, `-`, `=`; anything else becomes `_`."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", name).strip(".") or "_"
