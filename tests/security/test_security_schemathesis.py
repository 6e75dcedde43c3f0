"""Schemathesis against the server's own OpenAPI document.

Every operation, positive and negative inputs, then the stateful phase that
follows the document's links (login → refresh → refresh → logout / revoke).
Checks: no 5xx, every status code documented, every body matches its schema,
the documented headers are there, and the content type is the documented one.
"""

from __future__ import annotations

import random
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sec_helpers import PASSWORD, USER

from freshtoken.server.openapi import build_openapi

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
MAX_EXAMPLES = 40

schema = schemathesis.openapi.from_dict(build_openapi())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)

# Counted for the report (inputs tried).
TRIED: dict[str, int] = {}


def _known_credentials(case: Any) -> None:
    """Half of the logins use alice's real password, so the answers that follow
    (tokens, links to refresh) are exercised too, not only the refusals."""
    body = case.body
    if not isinstance(body, dict) or random.random() < 0.5:
        return
    label = case.operation.label
    if label == "POST /auth/login" or (
        label == "POST /oauth/token" and body.get("grant_type") == "password"
    ):
        body["username"], body["password"] = USER, PASSWORD
        body.pop("client_id", None)
        body.pop("scope", None)
        if label == "POST /oauth/token":
            body["client_id"] = "default"


def test_served_document_is_the_tested_one(live) -> None:
    served = httpx2.get(live.url + "/openapi.json").json()
    assert served == build_openapi()
    assert "application/x-www-form-urlencoded" in str(served["paths"]["/oauth/token"])
    cookie_params = {p["name"] for p in served["paths"]["/auth/refresh"]["post"]["parameters"]}
    assert {"freshtoken_rt", "X-Freshtoken-CSRF", "Origin"} <= cookie_params


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_conforms(case, live) -> None:
    if case.operation.label == "GET /demo" and not _demo_installed(live):
        pytest.skip("the demo page is not installed in this tree yet")
    _known_credentials(case)
    TRIED[case.operation.label] = TRIED.get(case.operation.label, 0) + 1
    case.call_and_validate(base_url=live.url, checks=CHECKS)


def _demo_installed(live) -> bool:
    return httpx2.get(live.url + "/demo").status_code == 200


def test_stateful_sessions(live) -> None:
    """Follows the links: login answers feed refresh, logout and revoke."""
    machine = schema.as_state_machine()
    calls: dict[str, int] = {}
    statuses: dict[str, set[int]] = {}

    class Machine(machine):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            _known_credentials(case)

        def call(self, case: Any, **kwargs: Any) -> Any:
            return case.call(base_url=live.url, **kwargs)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            label = case.operation.label
            calls[label] = calls.get(label, 0) + 1
            statuses.setdefault(label, set()).add(response.status_code)
            case.validate_response(response, checks=CHECKS)

    Machine.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
    )
    # The stateful phase really reached the session routes with real tokens.
    assert calls.get("POST /auth/refresh", 0) > 0
    assert 200 in statuses.get("POST /auth/login", set())
    assert sum(calls.values()) >= 25
    TRIED["stateful"] = sum(calls.values())


def test_inputs_tried_summary() -> None:
    """Runs last in this module: every operation was really exercised."""
    operations = [label for label in TRIED if label != "stateful"]
    if not operations:
        pytest.skip("run together with test_every_operation_conforms")
    print(f"\nschemathesis inputs tried: {sum(TRIED.values())} {dict(sorted(TRIED.items()))}")
    assert len(operations) >= 12
    assert all(TRIED[label] >= 1 for label in operations)
