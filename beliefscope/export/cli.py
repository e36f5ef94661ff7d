"""`beliefscope export traces|flags|tensorboard|wandb`: stored traces and flags out of the store.

beliefscope export traces --store URL --format parquet --out traces.parquet --run demo
beliefscope export flags --store URL --format csv --out flags.csv
beliefscope export tensorboard --store URL --out tb/ --checkpoint 710
beliefscope export wandb --store URL --out wandb-export/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from beliefscope.deprecations import old_option
from beliefscope.export.selection import Filters
from beliefscope.store.engine import open_store


def configure(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run", default=None, metavar="NAME", help="only this run")
    common.add_argument(
        "--checkpoint",
        default=None,
        metavar="STEP_OR_ID",
        help="only this checkpoint: a training step, else a checkpoint id (or step:N, id:N)",
    )
    common.add_argument(
        "--episode",
        default=None,
        metavar="ID_OR_KEY",
        help="only this episode: its key, else its id (or key:K, id:N)",
    )
    common.add_argument(
        "--variant",
        default=None,
        metavar="SPEC",
        help="only this trace variant (filter, openloop:5, ...)",
    )
    old_option(common, "--probe", "--variant", dest="variant")
    common.add_argument("--posterior", default=None, help="only this posterior (mode, sample:SEED)")
    sub = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    for what, help_text in (
        ("traces", "one row per trace step: ids, names, t and every per-step metric"),
        ("flags", "one row per review flag (rule and manual) with its review state"),
    ):
        p = sub.add_parser(what, parents=[common], help=help_text, description=help_text)
        p.add_argument(
            "--format",
            choices=["csv", "parquet"],
            default=None,
            help="table format (default: from the --out suffix)",
        )
        p.add_argument("--out", type=Path, required=True, metavar="FILE")
    for what, help_text in (
        ("tensorboard", "event files per (checkpoint, episode), per-step scalars (x = step)"),
        ("wandb", "an offline W&B run per run: per-step series and the flags as a table"),
    ):
        p = sub.add_parser(what, parents=[common], help=help_text, description=help_text)
        p.add_argument("--out", type=Path, required=True, metavar="DIR")


def run(args: argparse.Namespace) -> int:
    filters = Filters(
        run=args.run,
        checkpoint=args.checkpoint,
        episode=args.episode,
        variant=args.variant,
        posterior=args.posterior,
    )
    store = open_store(args.store)
    try:
        if args.what in ("traces", "flags"):
            from beliefscope.export import tables

            fmt = args.format or _format_from_suffix(args.out)
            if args.what == "traces":
                rows = tables.write_table(
                    tables.trace_batches(store, filters), tables.TRACE_SCHEMA, fmt, args.out
                )
            else:
                rows = tables.write_table(
                    tables.flag_batches(store, filters), tables.FLAG_SCHEMA, fmt, args.out
                )
            print(f"export {args.what}: {rows} rows -> {args.out}")
        elif args.what == "tensorboard":
            from beliefscope.export.tensorboard import export_tensorboard

            tb = export_tensorboard(store, filters, args.out)
            print(
                f"export tensorboard: {tb.traces} traces, {tb.points} scalars in "
                f"{tb.directories} event dirs -> {args.out} (tensorboard --logdir {args.out})"
            )
        else:
            from beliefscope.export.wandb_run import export_wandb

            wb = export_wandb(store, filters, args.out)
            print(
                f"export wandb: {wb.traces} traces, {wb.rows} history rows, {wb.flags} flags "
                f"in {len(wb.run_dirs)} offline runs -> {args.out} (wandb sync <run dir>)"
            )
            for directory in wb.run_dirs:
                print(f"  {directory}")
    finally:
        store.close()
    return 0


def _format_from_suffix(out: Path) -> str:
    from beliefscope.errors import BadInputError

    suffix = out.suffix.lower().lstrip(".")
    if suffix in ("csv", "parquet"):
        return suffix
    raise BadInputError(f"{out}: give --format csv|parquet (the file name does not say which)")
