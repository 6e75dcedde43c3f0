"""freshtoken.js on an app page of its own origin: the fetch client and the axios adapter
(axios from the npm registry, a test-only dependency), against a real server."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.browser


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)


@pytest.mark.usefixtures("axios_available")
def test_axios_burst_after_expiry_refreshes_once(app: Any) -> None:
    page = app.open()
    app.login(page)
    app.wait_token_expired(page)
    before = app.net.refreshes()
    results = page.evaluate("burst(10, () => axiosMe())")
    assert results == [{"status": 200}] * 10, dump(results)
    assert app.net.refreshes() - before == 1
    assert app.net.count("/api/me", "GET") == 10
    # The fetch client and axios share the one token: no refresh for a fetch call now.
    assert page.evaluate("fetchMe()") == 200
    assert app.net.refreshes() - before == 1


@pytest.mark.usefixtures("axios_available")
def test_axios_401_refreshes_once_and_retries_once(app: Any) -> None:
    page = app.open(proactive=False)
    app.login(page)
    app.wait_token_expired(page)
    before = app.net.refreshes()
    assert page.evaluate("axiosMe()") == 200
    assert app.net.refreshes() - before == 1
    assert app.net.count("/api/me", "GET") == 2  # the 401, then the retry
    assert len(app.events(page, "unauthorized")) == 1
    assert len(app.events(page, "retry")) == 1

    # Expired again: ten axios calls all get 401s, share one refresh, each retries once.
    app.wait_token_expired(page)
    results = page.evaluate("burst(10, () => axiosMe())")
    assert results == [{"status": 200}] * 10, dump(results)
    assert app.net.refreshes() - before == 2
    assert app.net.count("/api/me", "GET") == 2 + 20


@pytest.mark.usefixtures("axios_available")
def test_a_second_401_goes_back_to_the_caller(app: Any) -> None:
    page = app.open()
    app.login(page)
    before = app.net.refreshes()
    # fetch-compatible client: the second 401 is returned as the response.
    assert page.evaluate("fetchMe('/api/always-401')") == 401
    assert app.net.refreshes() - before == 1
    assert app.net.count("/api/always-401", "GET") == 2
    # axios: the promise rejects with the second 401.
    result = page.evaluate("burst(1, () => axiosMe('/api/always-401'))")
    assert result == [{"error": "AxiosError", "status": 401}]
    assert app.net.refreshes() - before == 2
    assert app.net.count("/api/always-401", "GET") == 4
    # The session itself is fine.
    assert page.evaluate("fetchMe()") == 200
    assert page.evaluate("window.__expired.length") == 0


def test_transient_refresh_failures_keep_the_session(app: Any) -> None:
    page = app.open()
    app.login(page)
    app.wait_token_expired(page)

    # Two 503s, then success: retried with backoff inside one refresh.
    app.faults.refresh_failures = 2
    before = app.faults.refresh_attempts
    assert page.evaluate("fetchMe()") == 200
    assert app.faults.refresh_attempts - before == 3
    assert len(app.events(page, "refresh-retry")) == 2

    # The server stays down past the retries: the call fails, the session is kept.
    app.wait_token_expired(page)
    app.faults.refresh_failures = 100
    outcome = page.evaluate("fetchMe().then(s => 'status ' + s, e => e.name)")
    assert outcome == "RefreshFailedError"
    assert page.evaluate("client.isAuthenticated") is True
    assert page.evaluate("window.__expired.length") == 0

    # The server is back: the same session carries on.
    app.faults.refresh_failures = 0
    assert page.evaluate("fetchMe()") == 200
    assert page.evaluate("window.__expired.length") == 0


def test_invalid_grant_ends_the_session_once(app: Any) -> None:
    page = app.open()
    app.login(page)
    sid = page.evaluate("client.claims.sid")
    app.srv.service.revoke_session(sid, reason="admin")
    app.wait_token_expired(page)
    results = page.evaluate("burst(5, () => fetchMe())")
    assert results == [{"error": "SessionExpiredError", "status": 0}] * 5, dump(results)
    expired = page.evaluate("window.__expired")
    assert len(expired) == 1  # onSessionExpired fires once, not once per call
    assert expired[0]["reason"] == "invalid_grant"
    assert page.evaluate("client.isAuthenticated") is False
    # The server cleared the cookie with its invalid_grant answer.
    assert all(c["name"] != "freshtoken_rt" for c in app.context.cookies())


def test_no_token_in_web_storage(app: Any) -> None:
    page = app.open()
    app.login(page)
    assert page.evaluate("fetchMe()") == 200
    stored = page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert stored == "[{},{}]"
    # Nor is the token reachable as a property of the client.
    exposed = page.evaluate(
        "Object.values(Object.getOwnPropertyDescriptors(client))"
        ".map(d => String(d.get ? d.get.call(client) : d.value))"
        ".filter(v => v.startsWith('ey')).length"
    )
    assert exposed == 0
