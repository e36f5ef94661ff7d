"""User-facing errors: one line that names the file (or thing) and the problem."""

from __future__ import annotations

from pathlib import Path


class BeliefscopeError(Exception):
    """An error a user can act on; the CLI prints it as one line and exits non-zero.

    `status` is the HTTP status the API answers with when the same error reaches a route.
    """

    status: int = 400

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class BadInputError(BeliefscopeError):
    """A file or value that cannot be used as given (corrupt, wrong keys, wrong shapes)."""


class NotFoundError(BeliefscopeError):
    """Something asked for by id or path does not exist."""

    status = 404


class ConflictError(BeliefscopeError):
    """A request the current state forbids for now (deleting a run while it is ingested)."""

    status = 409


class SchemaOutOfDateError(BeliefscopeError):
    """The store's schema is older than this code; `beliefscope db upgrade` fixes it."""

    status = 503


class StoreUnavailableError(BeliefscopeError):
    """The store's database cannot be reached (server down, file locked past the timeout)."""

    status = 503


class StoreFullError(StoreUnavailableError):
    """The store's disk (or quota) is full: the write was rolled back whole, so the store
    stays consistent, and the same command completes once there is space again."""


class UnauthorizedError(BeliefscopeError):
    """No valid API token where one is needed (answered with `WWW-Authenticate: Bearer`)."""

    status = 401


class ForbiddenError(BeliefscopeError):
    """A valid token, used where it may not be (a scope it lacks, a cookie session writing
    from another site)."""

    status = 403


class TooManyRequestsError(BeliefscopeError):
    """Too many failed attempts from one client (answered with `Retry-After`)."""

    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
