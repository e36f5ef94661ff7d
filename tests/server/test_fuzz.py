"""Schema fuzzing: schemathesis generates requests from the app's own OpenAPI (with a valid
write token, so write endpoints are exercised too) and no answer may be a 5xx.

Driven through hypothesis directly (one `given` per operation) rather than schemathesis's
pytest plugin, which does not load under pytest 9.
"""

from __future__ import annotations

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

MAX_EXAMPLES = 25
"""Examples per operation: bounded so the whole run stays around a minute on 2 cores."""


def test_no_server_errors(app: FastAPI, token: str) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500, (
                case.operation.label,
                case.formatted_path,
                case.query,
                case.body,
                response.status_code,
                response.text[:500],
            )
            if response.status_code >= 400:
                body = response.json()
                assert body["status"] == response.status_code and body["detail"], body

        check()
