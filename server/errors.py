"""One place that turns errors into answers: `{"detail": "...", "status": N}`, never a trace.

Validation errors name the field (`body.url: ...`). A malformed id in the URL path answers
404: `/episodes/..%2f..%2fetc` names no resource, whatever the parser thinks of it.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from beliefscope.errors import BeliefscopeError, TooManyRequestsError, UnauthorizedError

log = logging.getLogger("beliefscope.server")


def error_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"detail": detail, "status": status, **extra}, status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _validation(_request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    errors = [
        {"field": _field(e.get("loc", ())), "message": e.get("msg", "")} for e in err.errors()
    ]
    if errors and all(e["field"].startswith("path") for e in errors):
        return error_response(404, f"not found: bad {errors[0]['field']} ({errors[0]['message']})")
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return error_response(422, detail, errors=errors)


async def _http(_request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, StarletteHTTPException)
    return error_response(err.status_code, str(err.detail), getattr(err, "headers", None))


async def _beliefscope(_request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, BeliefscopeError)
    if err.status >= 500:
        log.error("%s: %s", type(err).__name__, err)
    headers = None
    if isinstance(err, UnauthorizedError):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(err, TooManyRequestsError):
        headers = {"Retry-After": str(err.retry_after)}
    return error_response(err.status, str(err), headers)


async def _database(_request: Request, err: Exception) -> JSONResponse:
    log.error("database error: %s", err)
    return error_response(503, "the store is unavailable; try again shortly")


async def _unexpected(request: Request, err: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=err)
    return error_response(500, "internal error (details are in the server log)")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(BeliefscopeError, _beliefscope)
    app.add_exception_handler(sa.exc.OperationalError, _database)
    app.add_exception_handler(sa.exc.InterfaceError, _database)
    app.add_exception_handler(Exception, _unexpected)
