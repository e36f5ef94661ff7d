"""Episodes: records, their traces, and frames (overlays, comparisons, ground truth).

Frames are addressed by episode id and step only; the frame service maps them to files inside
the registered data roots.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from beliefscope.errors import BadInputError
from server.deps import ContextDep, IdPath, IdQuery, PageDep, QueriesDep, StepPath, VariantDep
from server.frame_service import Rendered
from server.frames import PANELS, STRIP_PANELS
from server.schemas import EpisodePublic, TracesPublic

router = APIRouter(prefix="/episodes", tags=["episodes"])

_IMAGE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "the frame"}
}
Format = Literal["jpeg", "png"]
ALL_PANELS = ",".join(PANELS)
Scale = Annotated[int, Query(ge=1, le=8)]
PanelsQuery = Annotated[
    str, Query(max_length=100, description=f"comma-separated, any of {', '.join(PANELS)}")
]


def _panels(text: str, known: tuple[str, ...] = PANELS) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in names if p not in known]
    if unknown:
        raise BadInputError(f"panels: unknown {unknown}; use any of {list(known)}")
    return names


def _image(rendered: Rendered) -> Response:
    return Response(
        rendered.data, media_type=rendered.media_type, headers={"Cache-Control": "no-cache"}
    )


@router.get("/{episode_id}")
def get_episode(queries: QueriesDep, episode_id: IdPath) -> EpisodePublic:
    return EpisodePublic.model_validate(queries.get_episode(episode_id=episode_id))


@router.get("/{episode_id}/traces")
def episode_traces(
    queries: QueriesDep,
    episode_id: IdPath,
    page: PageDep,
    variant: VariantDep,
    checkpoint_id: IdQuery = None,
) -> TracesPublic:
    queries.get_episode(episode_id=episode_id)
    found = queries.list_traces(
        episode_id=episode_id,
        checkpoint_id=checkpoint_id,
        variant=variant,
        limit=page.limit,
        offset=page.offset,
    )
    return TracesPublic.of(found)


@router.get("/{episode_id}/frames/{t}", response_class=Response, responses=_IMAGE)
def frame(
    ctx: ContextDep,
    episode_id: IdPath,
    t: StepPath,
    panels: PanelsQuery = "",
    checkpoint: IdQuery = None,
    format: Format = "jpeg",
    scale: Scale = 4,
) -> Response:
    """Step t: the observation and the requested panels (posterior recon, prior one-step
    prediction, error heat map) with a text strip (step, KL, correction, flag state) and a
    border colored by the covering flag's review state. `checkpoint` defaults to the newest one
    with a trace on this episode."""
    rendered = ctx.frames.step_frame(
        episode_id, t, panels=_panels(panels), checkpoint_id=checkpoint, fmt=format, scale=scale
    )
    return _image(rendered)


@router.get("/{episode_id}/strip/{t0}", response_class=Response, responses=_IMAGE)
def strip(
    ctx: ContextDep,
    episode_id: IdPath,
    t0: StepPath,
    n: Annotated[int, Query(ge=1, le=256, description="steps in the strip")] = 32,
    panels: Annotated[
        str, Query(max_length=100, description=f"comma-separated, any of {', '.join(STRIP_PANELS)}")
    ] = ",".join(STRIP_PANELS),
    checkpoint: IdQuery = None,
    format: Format = "png",
) -> Response:
    """Steps t0 .. t0+n-1 as one image: a row per step, a column per panel (observation,
    posterior recon, prior one-step prediction, error heat map), each at the frames' own size
    and without text, for a client that scales and captions them itself. `checkpoint` as for
    `frames`."""
    chosen = _panels(panels, STRIP_PANELS) or STRIP_PANELS
    rendered = ctx.frames.strip(
        episode_id, t0, n, panels=chosen, checkpoint_id=checkpoint, fmt=format
    )
    return _image(rendered)


@router.get("/{episode_id}/compare/{t}", response_class=Response, responses=_IMAGE)
def compare(
    ctx: ContextDep,
    episode_id: IdPath,
    t: StepPath,
    a: Annotated[int, Query(ge=1, le=2**31 - 1, description="first checkpoint id")],
    b: Annotated[int, Query(ge=1, le=2**31 - 1, description="second checkpoint id")],
    panels: PanelsQuery = ALL_PANELS,
    format: Format = "jpeg",
    scale: Scale = 4,
) -> Response:
    """The same step under two checkpoints: one row of panels each."""
    chosen = _panels(panels) or PANELS
    rendered = ctx.frames.compare_frame(
        episode_id, t, (a, b), panels=chosen, fmt=format, scale=scale
    )
    return _image(rendered)


@router.get("/{episode_id}/truth/{t}", response_class=Response, responses=_IMAGE)
def truth(
    ctx: ContextDep,
    episode_id: IdPath,
    t: StepPath,
    camera: Annotated[str, Query(pattern=r"^[A-Za-z0-9_]{1,50}$")] = "overview",
    size: Annotated[int, Query(ge=64, le=512)] = 256,
    format: Format = "jpeg",
    checkpoint: Annotated[
        int | None,
        Query(
            ge=1,
            le=2**31 - 1,
            description="also draw this checkpoint's decoded belief of the box's position and "
            "the spread of its imagined futures (where `beliefscope probe decode` ran)",
        ),
    ] = None,
    caption: Annotated[bool, Query(description="the text strip under the render")] = True,
) -> Response:
    """The saved MuJoCo state at step t re-rendered from the overview camera (which sees the
    box the robot's camera could not), the box's true position marked."""
    rendered = ctx.frames.truth_frame(
        episode_id,
        t,
        camera=camera,
        size=size,
        fmt=format,
        checkpoint_id=checkpoint,
        caption=caption,
    )
    return _image(rendered)
