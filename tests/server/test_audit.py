"""Audit events: a row and a structured log line each; no token or password in any log."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from freshtoken.testing import FakeClock, LiveServer

from .helpers import PASSWORD, USERNAME, audit_rows, claims_of, password_grant, refresh_grant

WRONG_PASSWORD = "hunter2-wrong-password"


def run_flow(http: httpx.Client, clock: FakeClock) -> dict[str, str]:
    """login failed, login ok (both APIs), refresh, grace, reuse, revoke."""
    assert password_grant(http, password=WRONG_PASSWORD).status_code == 400
    first = password_grant(http).json()
    second = refresh_grant(http, first["refresh_token"]).json()
    assert refresh_grant(http, first["refresh_token"]).status_code == 200  # grace
    clock.advance(30)
    assert refresh_grant(http, first["refresh_token"]).status_code == 400  # reuse
    other = http.post("/auth/login", json={"username": USERNAME, "password": PASSWORD}).json()
    assert (
        http.post("/auth/refresh", json={"refresh_token": other["refresh_token"]}).status_code
        == 200
    )
    revoke = http.post(
        "/oauth/revoke", data={"token": other["access_token"], "client_id": "default"}
    )
    assert revoke.status_code == 200
    return {
        "first_refresh": first["refresh_token"],
        "second_refresh": second["refresh_token"],
        "first_access": first["access_token"],
        "second_access": second["access_token"],
        "other_refresh": other["refresh_token"],
        "other_access": other["access_token"],
        "sid": claims_of(first["access_token"])["sid"],
        "other_sid": claims_of(other["access_token"])["sid"],
    }


def test_audit_rows_and_log_lines(
    http: httpx.Client, live: LiveServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="freshtoken.audit"):
        flow = run_flow(http, clock)

    rows = audit_rows(live.service.db)
    events = [r.event for r in rows]
    assert events == [
        "login_failed",
        "login_succeeded",
        "refresh_rotated",
        "refresh_grace_replay",
        "refresh_token_reuse_detected",
        "login_succeeded",
        "refresh_rotated",
        "session_revoked",
    ]
    by_event = {r.event: r for r in rows}
    reuse = by_event["refresh_token_reuse_detected"]
    assert reuse.session_id == flow["sid"] and reuse.client_id == "default"
    assert reuse.user_id == claims_of(flow["first_access"])["sub"]
    assert reuse.ip == "127.0.0.1"
    assert reuse.at == clock.now()
    assert by_event["session_revoked"].session_id == flow["other_sid"]
    assert by_event["login_failed"].user_id is not None  # the user exists, the password was wrong

    lines = [r for r in caplog.records if r.name == "freshtoken.audit"]
    logged = [json.loads(r.getMessage()) for r in lines]
    assert [entry["event"] for entry in logged] == events
    reuse_line = next(r for r in lines if "reuse" in r.getMessage())
    assert reuse_line.levelno == logging.WARNING
    assert json.loads(reuse_line.getMessage())["session_id"] == flow["sid"]


def test_no_token_or_password_in_any_log(
    http: httpx.Client, live: LiveServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything: uvicorn, httpx, the server...
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # ...and every SQL statement + params
    flow = run_flow(http, clock)
    live.service.create_user("bob", "bobs-own-password")
    names = {r.name for r in caplog.records}
    assert "freshtoken.audit" in names  # the capture really saw the server
    assert any(n.startswith("sqlalchemy") for n in names)  # SQL and parameters included
    secrets = [
        PASSWORD,
        WRONG_PASSWORD,
        "bobs-own-password",
        *(flow[k] for k in flow if k.endswith("refresh")),
        *(flow[k].removeprefix("ftr_") for k in flow if k.endswith("refresh")),
        *(flow[k].rsplit(".", 1)[1] for k in flow if k.endswith("access")),  # signatures
        *(flow[k] for k in flow if k.endswith("access")),
    ]
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.__dict__)
        for secret in secrets:
            assert secret not in text, (record.name, record.getMessage()[:200])
