"""Typed dependencies: the server context, the read layer, who is asking (and whether their
token's scope allows the route), pagination.

A route declares the scope it needs by the principal it takes: `ReviewerDep` (flags, notes,
reviews) or `AdminDep` (rules, webhooks, tokens, ingest jobs, the activity log); the API router
adds `read` to every route. The scopes are FastAPI security scopes of the `token` scheme, so
the OpenAPI document lists what each operation needs (the access test walks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Query, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from beliefscope.access import Authorizer, Presented
from beliefscope.config import Settings
from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store
from beliefscope.store.queries import Queries
from beliefscope.values.access import SCOPES, Principal, Scope

if TYPE_CHECKING:
    from server.frame_service import FrameService
    from server.guards import ContentPolicy
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
    content_policy: ContentPolicy


def get_context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[ServerContext, Depends(get_context)]


def get_queries(ctx: ContextDep) -> Queries:
    return ctx.store.queries


QueriesDep = Annotated[Queries, Depends(get_queries)]


def presented(request: Request) -> Presented:
    client = request.client.host if request.client else ""
    return Presented.of(request.headers, request.cookies, client)


PresentedDep = Annotated[Presented, Depends(presented)]

token_scheme = HTTPBearer(
    scheme_name="token",
    description="an API token (`beliefscope token create NAME --scope read|review|admin`); "
    "the dashboard's session cookie works too",
    auto_error=False,
)


def identity(ctx: ContextDep, creds: PresentedDep) -> Principal | None:
    """Who presented what (once per request, however many scopes are checked)."""
    return ctx.access.identify(creds)


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


def principal(
    scopes: SecurityScopes,
    ctx: ContextDep,
    creds: PresentedDep,
    who: Annotated[Principal | None, Depends(identity)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(token_scheme)],
) -> Principal:
    """Who is asking, if their scope is the strongest one the route and its router need."""
    need: Scope = max((s for s in scopes.scopes if s in SCOPES), key=SCOPES.index, default="read")
    return ctx.access.permit(who, creds, need=need)


def scope(name: Scope) -> Any:
    """The dependency of a route (or router) that needs scope `name`."""
    return Security(principal, scopes=[name])


ReaderDep = Annotated[Principal, scope("read")]
ReviewerDep = Annotated[Principal, scope("review")]
AdminDep = Annotated[Principal, scope("admin")]


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
