"""An offline Weights & Biases run per Beliefscope run: the per-step series of every selected
trace and the review flags as a table, written under `OUT/wandb/` with no network at all
(`wandb sync` uploads it later, if the user wants).

Series keys are `<checkpoint>/<episode>/<variant>/<metric>` (`step-710/episode-3/filter/kl`),
plotted against a custom x axis `t` (the episode step), since W&B's own `_step` only grows. A
`traces` table maps each `episode-N` to its episode key. Needs the optional `wandb` package
(`pip install 'beliefscope[wandb]'`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beliefscope.errors import BadInputError
from beliefscope.export.selection import Filters, SelectedTrace, select_traces
from beliefscope.export.tables import BATCH_ROWS, FLAG_SCHEMA, flag_batches, series_tag
from beliefscope.store.engine import Store

PROJECT = "beliefscope"


@dataclass
class WandbReport:
    run_dirs: list[Path] = field(default_factory=list)  # one offline run directory per run
    traces: int = 0
    rows: int = 0  # history rows logged
    flags: int = 0


def series_prefix(sel: SelectedTrace) -> str:
    ckpt = sel.checkpoint
    checkpoint = f"step-{ckpt.step}" if ckpt.step is not None else f"checkpoint-{ckpt.id}"
    return f"{checkpoint}/episode-{sel.episode.id}"


def export_wandb(
    store: Store, filters: Filters, out: Path, window: int = BATCH_ROWS
) -> WandbReport:
    try:
        import wandb
    except ImportError:
        raise BadInputError(
            "the W&B export needs the wandb package: pip install 'beliefscope[wandb]'"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    report = WandbReport()
    by_run: dict[str, list[SelectedTrace]] = {}
    for sel in select_traces(store, filters):  # trace infos only: the steps stream below
        by_run.setdefault(sel.run.name, []).append(sel)
    for run_name, selected in by_run.items():
        settings = wandb.Settings(
            silent=True,
            console="off",
            disable_git=True,
            disable_code=True,
            x_disable_stats=True,
            x_disable_machine_info=True,
        )
        run = wandb.init(
            mode="offline",
            dir=str(out),
            project=PROJECT,
            name=run_name,
            config={"beliefscope_run": run_name, "store": store.url},
            settings=settings,
        )
        try:
            run.define_metric("t")
            run.define_metric("*", step_metric="t")
            traces = wandb.Table(
                columns=[
                    "series",
                    "checkpoint",
                    "checkpoint_step",
                    "episode_id",
                    "episode_key",
                    "variant",
                    "posterior",
                    "length",
                ]
            )
            for sel in selected:
                report.rows += _log_trace(store, run, sel, window)
                report.traces += 1
                traces.add_data(
                    series_prefix(sel),
                    sel.checkpoint.id,
                    sel.checkpoint.step,
                    sel.episode.id,
                    sel.episode.key,
                    sel.trace.variant,
                    sel.trace.posterior,
                    sel.trace.length,
                )
            run.log({"traces": traces})
            flags = _flag_table(wandb, store, Filters(**{**vars(filters), "run": run_name}))
            report.flags += len(flags.data)
            run.log({"flags": flags})
            report.run_dirs.append(Path(run.dir).parent)
        finally:
            run.finish()
    # finish() can return while W&B's service process is still writing the run's transaction
    # log; teardown waits for it, so the offline runs are complete when the export says done
    wandb.teardown()
    return report


def _log_trace(store: Store, run: Any, sel: SelectedTrace, window: int) -> int:
    prefix = series_prefix(sel)
    rows = 0
    for t0 in range(0, sel.trace.length, window):
        t1 = min(sel.trace.length, t0 + window) - 1
        series = store.queries.read_trace(trace_id=sel.trace.id, t0=t0, t1=t1).series
        if not series:
            continue
        keys = [f"{prefix}/{series_tag(sel.trace.variant, sel.trace.posterior, m)}" for m in series]
        columns = [s.values.tolist() for s in series.values()]
        for i, t in enumerate(next(iter(series.values())).t.tolist()):
            run.log({"t": t, **{key: column[i] for key, column in zip(keys, columns, strict=True)}})
            rows += 1
    return rows


def _flag_table(wandb: Any, store: Store, filters: Filters) -> Any:
    columns = FLAG_SCHEMA.names
    data = [
        [_plain(row[c]) for c in columns]
        for batch in flag_batches(store, filters, require=False)
        for row in batch.to_pylist()
    ]
    return wandb.Table(columns=columns, data=data)


def _plain(value: Any) -> Any:
    """Timestamps as ISO text: W&B tables hold JSON values."""
    return value.isoformat() if hasattr(value, "isoformat") else value
