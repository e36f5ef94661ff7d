"""Who is asking and what they may do, framework-free: the policy (`policy`: tokens, scopes,
sessions, the same-origin check), allowed hosts (`hosts`), the failure throttle (`throttle`)
and token lifetimes (`lifetime`). The server and the dashboard use the same `Authorizer`."""

from beliefscope.access.policy import (
    COOKIE,
    Authorizer,
    Presented,
    check_may_delete,
    check_same_origin,
    is_loopback,
    terminal_user,
)

__all__ = [
    "COOKIE",
    "Authorizer",
    "Presented",
    "check_may_delete",
    "check_same_origin",
    "is_loopback",
    "terminal_user",
]
