"""The demo page in real Chromium, against a real server on a loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

Demo = Any  # the driver from conftest.py (fixtures `demo` / `make_demo`)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)


def _refresh_cookie(context: Any) -> dict[str, Any] | None:
    for cookie in context.cookies():
        if cookie["name"] == "freshtoken_rt":
            return dict(cookie)
    return None


def test_login_then_ten_calls_share_one_refresh(
    make_server: Any, make_demo: Any, refresh_delay: Any, artifacts: Any, access_ttl: int
) -> None:
    demo = make_demo(make_server(app_wrapper=refresh_delay))
    context = demo.context
    page = demo.open()
    assert demo.state(page) == "signed-out"
    page.screenshot(path=str(artifacts / "demo-login.png"))

    login = demo.login(page)
    body = login.json()
    assert set(body) >= {"access_token", "token_type", "expires_in"}
    assert "refresh_token" not in body, "cookie delivery: the body has the access token only"
    assert body["expires_in"] == access_ttl

    # The refresh token: HttpOnly, Secure, SameSite=Strict cookie on /auth, Max-Age = session left.
    set_cookie = login.header_value("set-cookie") or ""
    assert "freshtoken_rt=" in set_cookie
    max_age = int(set_cookie.lower().split("max-age=")[1].split(";")[0])
    assert abs(max_age - demo.srv.settings.session_max_ttl) <= 5
    cookie = _refresh_cookie(context)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["secure"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/auth"
    assert abs(cookie["expires"] - (time.time() + demo.srv.settings.session_max_ttl)) < 60

    # Page script sees neither token anywhere.
    assert "freshtoken_rt" not in page.evaluate("document.cookie")
    assert cookie["value"] not in page.evaluate("document.cookie")
    storage = page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert body["access_token"] not in storage
    assert cookie["value"] not in storage

    page.click("#btn-call")
    assert demo.wait_api_results(page, 1)[0]["status"] == 200

    # Past the token's lifetime, ten calls at once: exactly one refresh, shared by all.
    demo.wait_token_expired(page)
    before = demo.net.refreshes()
    refresh_delay.seconds = 1.0  # hold the refresh so the picture catches it in flight
    page.click("#btn-burst")
    page.wait_for_function(
        "() => window.__freshtoken_events.filter(e => e.type === 'refresh-join').length === 9",
        polling=50,
    )
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "demo-mid-refresh.png"), full_page=True)
    results = demo.wait_api_results(page, 11)[1:]
    refresh_delay.seconds = 0
    assert [r["status"] for r in results] == [200] * 10, dump(results)
    assert demo.net.refreshes() - before == 1, dump(demo.net.requests)
    assert demo.net.count("/api/me", "GET") == 11
    assert demo.srv.stats["refresh_reuse"] == 0

    # The cookie rotated, and is still invisible to the page.
    rotated = _refresh_cookie(context)
    assert rotated is not None and rotated["value"] != cookie["value"]
    assert "freshtoken_rt" not in page.evaluate("document.cookie")

    # Proactive refresh off, token expired: the call gets a 401, refreshes once, retries once.
    page.click(".switch")
    demo.wait_token_expired(page)
    page.click("#btn-call")
    results = demo.wait_api_results(page, 12)
    assert results[-1]["status"] == 200
    assert len(demo.events(page, "unauthorized")) == 1
    assert len(demo.events(page, "retry")) == 1
    assert demo.net.refreshes() - before == 2
    page.wait_for_timeout(300)  # let the newest timeline row's highlight fade for the picture
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "demo-logged-in.png"), full_page=True)
    # The page runs under its strict CSP without a single violation or uncaught error.
    assert demo.problems == []


def test_reload_restores_the_session_through_the_cookie(demo: Demo) -> None:
    page = demo.open()
    demo.login(page)
    sid = demo.claims(page)["sid"]
    before = demo.net.refreshes()
    page.reload()
    demo.wait_ready(page)
    assert demo.state(page) == "signed-in"
    assert demo.net.refreshes() - before == 1
    assert demo.events(page, "restore")[0]["source"] == "cookie"
    assert demo.claims(page)["sid"] == sid  # the same session, not a new login
    page.click("#btn-call")
    assert demo.wait_api_results(page, 1)[0]["status"] == 200


def test_two_tabs_expiring_together_refresh_once(
    make_server: Any, make_demo: Any, refresh_delay: Any
) -> None:
    # Slow the refresh route down so that the second tab surely asks while the first
    # tab's refresh is still in flight: the Web Lock, not luck, must keep it to one.
    refresh_delay.seconds = 0.4
    srv = make_server(app_wrapper=refresh_delay)
    demo = make_demo(srv)
    context = demo.context
    first = demo.open()
    demo.login(first)
    before = demo.net.refreshes()  # (the first tab's restore attempt before login)

    with context.expect_page() as opened:
        first.click("#btn-tab")
    second = opened.value
    demo.watch(second)
    demo.wait_ready(second)
    assert demo.state(second) == "signed-in"
    # The new tab took the token from the first one (BroadcastChannel), no refresh needed.
    assert demo.events(second, "restore")[0]["source"] == "other-tab"
    assert demo.net.refreshes() == before
    expiry = first.evaluate("window.freshtokenDemo.client.expiresAt")
    assert second.evaluate("window.freshtokenDemo.client.expiresAt") == expiry

    demo.wait_token_expired(first)
    first.evaluate("document.getElementById('btn-call').click()")
    second.evaluate("document.getElementById('btn-call').click()")
    assert demo.wait_api_results(first, 1)[0]["status"] == 200
    assert demo.wait_api_results(second, 1)[0]["status"] == 200
    assert demo.net.refreshes() - before == 1, dump(demo.net.requests)
    # One tab refreshed; the other waited for the lock and then used the shared token.
    started = [
        e
        for e in demo.events(first, "refresh-request") + demo.events(second, "refresh-request")
        if e["reason"] != "restore"
    ]
    assert len(started) == 1, dump(started)
    skipped = demo.events(first, "refresh-skipped") + demo.events(second, "refresh-skipped")
    assert len(skipped) == 1

    # The session survived: both tabs keep working. The server never saw the same refresh
    # token twice (no grace-window answer, no reuse).
    refresh_delay.seconds = 0
    first.click("#btn-call")
    second.click("#btn-call")
    assert demo.wait_api_results(first, 2)[-1]["status"] == 200
    assert demo.wait_api_results(second, 2)[-1]["status"] == 200
    assert srv.stats["refresh_reuse"] == 0
    assert srv.stats["refresh_grace"] == 0

    # Signing out in one tab signs the other one out too.
    first.click("#btn-logout")
    second.wait_for_function("() => document.body.dataset.state === 'signed-out'", polling=50)
    assert "another tab" in second.inner_text("#session-notice")
    assert demo.problems == []


def test_logout_clears_the_cookie_and_ends_the_session(demo: Demo, context: Any) -> None:
    page = demo.open()
    demo.login(page)
    cookie = _refresh_cookie(context)
    assert cookie is not None
    page.click("#btn-call")
    assert demo.wait_api_results(page, 1)[0]["status"] == 200

    with page.expect_response(lambda r: r.url.endswith("/auth/logout")) as info:
        page.click("#btn-logout")
    assert info.value.status == 200
    page.wait_for_function("() => document.body.dataset.state === 'signed-out'", polling=50)
    assert _refresh_cookie(context) is None

    # API calls through the client now fail: no token, and no cookie to get one.
    outcome = page.evaluate(
        "window.freshtokenDemo.client('/api/me').then(r => 'status ' + r.status, e => e.name)"
    )
    assert outcome == "SessionExpiredError"
    # The session is revoked on the server, not just forgotten by the browser.
    answer = httpx.post(demo.srv.url + "/auth/refresh", json={"refresh_token": cookie["value"]})
    assert answer.status_code in (400, 401)
    assert answer.json()["error"] == "invalid_grant"
    # After a reload the page stays signed out.
    page.reload()
    demo.wait_ready(page)
    assert demo.state(page) == "signed-out"


def test_session_revoked_by_the_cli_sends_the_page_back_to_login(demo: Demo) -> None:
    page = demo.open()
    demo.login(page)
    sid = demo.claims(page)["sid"]
    env = {
        **os.environ,
        "FRESHTOKEN_DATABASE_URL": demo.srv.database_url,
        "FRESHTOKEN_SECRET_KEY": demo.srv.settings.secret_key or "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "freshtoken.cli", "sessions", "revoke", sid],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    demo.wait_token_expired(page)
    page.click("#btn-call")
    page.wait_for_function("() => document.body.dataset.state === 'signed-out'", polling=50)
    expired = demo.events(page, "demo:session-expired")
    assert len(expired) == 1
    assert expired[0]["reason"] == "invalid_grant"
    assert page.is_visible("#login-form")
    assert "ended" in page.inner_text("#session-notice")
    assert demo.api_results(page)[-1]["error"] == "SessionExpiredError"


def test_replaying_an_old_refresh_token_ends_the_session(demo: Demo, artifacts: Any) -> None:
    page = demo.open()
    demo.login(page)
    page.click("#btn-call")
    demo.wait_api_results(page, 1)
    page.click("#btn-replay")
    page.wait_for_function(
        "() => window.__freshtoken_events.some(e => e.type === 'demo:replay')", polling=50
    )
    replay = demo.events(page, "demo:replay")
    assert replay[0]["status"] == 200, dump(replay)
    page.wait_for_function("() => document.body.dataset.state === 'signed-out'", polling=50)
    assert replay[0]["reuse_detected"] is True
    assert replay[0]["session_revoked"] is True
    assert demo.srv.stats["refresh_reuse"] >= 1
    assert len(demo.events(page, "demo:session-expired")) == 1
    assert "reuse" in page.inner_text("#session-notice")
    page.screenshot(path=str(artifacts / "demo-reuse-detected.png"))
    # Reloading does not bring the session back.
    page.reload()
    demo.wait_ready(page)
    assert demo.state(page) == "signed-out"
