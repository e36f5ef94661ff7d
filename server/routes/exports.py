"""Downloads of traces and flags as CSV or Parquet (the tables of `beliefscope.export`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from beliefscope.export.selection import Filters
from beliefscope.export.tables import (
    FLAG_SCHEMA,
    TRACE_SCHEMA,
    flag_batches,
    trace_batches,
    write_table,
)
from server.deps import ContextDep, VariantDep

router = APIRouter(prefix="/exports", tags=["exports"])

Name = Annotated[str | None, Query(max_length=500)]
MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}
}


def _download(
    kind: str, fmt: Literal["csv", "parquet"], write: Callable[[Path], object]
) -> FileResponse:
    """Write the table to a private temp folder, send it, then remove it."""
    folder = Path(tempfile.mkdtemp(prefix="beliefscope-export-"))
    out = folder / f"{kind}.{fmt}"

    def cleanup() -> None:
        shutil.rmtree(folder, ignore_errors=True)

    try:
        write(out)
    except BaseException:
        cleanup()
        raise

    return FileResponse(
        out, media_type=MEDIA[fmt], filename=out.name, background=BackgroundTask(cleanup)
    )


@router.get("/traces", response_class=FileResponse, responses=_FILE)
def export_traces(
    ctx: ContextDep,
    variant: VariantDep,
    run: Name = None,
    checkpoint: Name = None,
    episode: Name = None,
    posterior: Name = None,
    format: Literal["csv", "parquet"] = "csv",
) -> FileResponse:
    """Every step of the selected traces (run name; checkpoint step or id; episode key or
    id; trace variant; posterior), one row per step, one column per metric."""
    filters = Filters(run, checkpoint, episode, variant, posterior)
    return _download(
        "traces",
        format,
        lambda out: write_table(trace_batches(ctx.store, filters), TRACE_SCHEMA, format, out),
    )


@router.get("/flags", response_class=FileResponse, responses=_FILE)
def export_flags(
    ctx: ContextDep,
    run: Name = None,
    checkpoint: Name = None,
    episode: Name = None,
    format: Literal["csv", "parquet"] = "csv",
) -> FileResponse:
    filters = Filters(run, checkpoint, episode)
    return _download(
        "flags",
        format,
        lambda out: write_table(flag_batches(ctx.store, filters), FLAG_SCHEMA, format, out),
    )
