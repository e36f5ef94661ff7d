"""Typed dependencies: the server context, the read layer, who is asking, pagination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from beliefscope.access import Authorizer, Presented
from beliefscope.config import Settings
from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store
from beliefscope.store.queries import Queries
from beliefscope.values.access import Principal

if TYPE_CHECKING:
    from server.frame_service import FrameService
    from server.jobs import IngestJobs
    from server.webhooks import WebhookWorker

MAX_PAGE = 1000


@dataclass
class ServerContext:
    """Everything a request may need, built once by `create_app`."""

    settings: Settings
    store: Store
    reviews: ReviewService
    access: Authorizer
    frames: FrameService
    jobs: IngestJobs
    webhooks: WebhookWorker


def get_context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[ServerContext, Depends(get_context)]


def get_queries(ctx: ContextDep) -> Queries:
    return ctx.store.queries


QueriesDep = Annotated[Queries, Depends(get_queries)]


def presented(request: Request) -> Presented:
    return Presented.of(request.headers, request.cookies)


PresentedDep = Annotated[Presented, Depends(presented)]


def reader(ctx: ContextDep, creds: PresentedDep) -> Principal:
    return ctx.access.authorize(creds, write=False)


def writer(ctx: ContextDep, creds: PresentedDep) -> Principal:
    return ctx.access.authorize(creds, write=True)


def known_query(request: Request) -> None:
    """Refuse query parameters the route does not declare, with a 422 naming the ones it
    accepts: a misspelt or invented filter (`/flags?episode=52`) must not silently answer as if
    no filter had been given. One dependency of the whole app, so every documented route
    behaves so (the catch-all for unknown paths, outside the schema, answers its 404)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return
    accepted = accepted_query(route)
    unknown = sorted(set(request.query_params) - set(accepted))
    if unknown:
        where = f"{request.method} {request.url.path}"
        hint = f"{where} accepts: {', '.join(accepted)}" if accepted else f"{where} takes none"
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": f"unknown query parameter; {hint}", "type": "extra"}
                for name in unknown
            ]
        )


def accepted_query(route: APIRoute) -> tuple[str, ...]:
    """The query parameters `route` declares, its dependencies' included (by their URL names;
    a walk over a handful of dependants, cheap enough for every request)."""

    def names(dependant: Dependant) -> set[str]:
        own = {field.alias for field in dependant.query_params}
        return own.union(*(names(d) for d in dependant.dependencies))

    return tuple(sorted(names(route.dependant)))


ReaderDep = Annotated[Principal, Depends(reader)]
WriterDep = Annotated[Principal, Depends(writer)]


def variant_query(
    variant: Annotated[
        str | None, Query(max_length=100, description="trace variant: filter, openloop:5, ...")
    ] = None,
    probe: Annotated[
        str | None, Query(max_length=100, deprecated=True, description="old name of `variant`")
    ] = None,
) -> str | None:
    return variant if variant is not None else probe


VariantDep = Annotated[str | None, Depends(variant_query)]
"""A trace-variant filter, still accepting its old name `probe`."""


@dataclass(frozen=True)
class Pagination:
    limit: int
    offset: int


def pagination(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Pagination:
    return Pagination(limit, offset)


PageDep = Annotated[Pagination, Depends(pagination)]


MAX_ID = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
"""A resource id in the URL (out of range answers 404, like any id that names nothing)."""
StepPath = Annotated[int, Path(ge=0, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
