"""CSRF and CORS in a real browser: pages on other origins, allowed and not."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.browser

CSRF = "X-Freshtoken-CSRF"


def _cookie_value(context: Any) -> str | None:
    return next((c["value"] for c in context.cookies() if c["name"] == "freshtoken_rt"), None)


def test_a_page_on_a_non_allowed_origin_is_refused(
    make_server: Any, make_demo: Any, other_origin: Any
) -> None:
    srv = make_server()  # allows only its own origin
    demo = make_demo(srv)
    context = demo.context
    victim = demo.open()
    demo.login(victim)
    cookie = _cookie_value(context)
    assert cookie is not None
    rotated_before = srv.stats["refresh_rotated"]

    seen: list[tuple[str, str, int]] = []
    context.on(
        "response",
        lambda r: seen.append((r.request.method, urlsplit(r.url).path, r.status)),
    )
    evil = context.new_page()
    evil.goto(other_origin.origin + "/blank.html")

    # What the JS client does (credentials + CSRF header): the preflight is refused, so the
    # request never happens and the page learns nothing.
    outcome = evil.evaluate(
        """async (api) => {
            try {
                const r = await fetch(api + '/auth/refresh', {method: 'POST',
                    credentials: 'include', headers: {'X-Freshtoken-CSRF': '1'}});
                return 'status ' + r.status;
            } catch (e) { return e.name; }
        }""",
        srv.url,
    )
    assert outcome == "TypeError"
    # The API does not answer it either (no CORS grant for this origin).
    outcome = evil.evaluate(
        """async (api) => {
            try { const r = await fetch(api + '/api/me', {credentials: 'include'});
                  return 'status ' + r.status; }
            catch (e) { return e.name; }
        }""",
        srv.url,
    )
    assert outcome == "TypeError"

    # A "simple" request without the header needs no preflight, so it reaches the server
    # with the cookie (127.0.0.1 on another port is same-site): 403 csrf_rejected.
    with evil.expect_response(lambda r: urlsplit(r.url).path == "/auth/refresh") as info:
        evil.evaluate(
            "api => fetch(api + '/auth/refresh', "
            "{method: 'POST', credentials: 'include', mode: 'no-cors'}).catch(() => null)",
            srv.url,
        )
    assert info.value.status == 403

    # A cross-site form post: refused with a clear 403 the user can read.
    with evil.expect_navigation() as nav:
        evil.evaluate(
            """api => {
                const form = document.createElement('form');
                form.method = 'POST';
                form.action = api + '/auth/refresh';
                document.body.append(form);
                form.submit();
            }""",
            srv.url,
        )
    assert nav.value.status == 403
    assert json.loads(evil.inner_text("body"))["error"] == "csrf_rejected"

    # What the browser's preflight hid, the server refuses too: header + foreign Origin.
    answer = httpx.post(
        srv.url + "/auth/refresh",
        headers={CSRF: "1", "Origin": other_origin.origin},
        cookies={"freshtoken_rt": cookie},
    )
    assert answer.status_code == 403
    assert answer.json()["error"] == "csrf_rejected"
    assert "access-control-allow-origin" not in answer.headers

    # None of it rotated or ended the victim's session.
    assert ("POST", "/auth/refresh", 200) not in seen
    assert srv.stats["refresh_rotated"] == rotated_before
    assert _cookie_value(context) == cookie
    victim.click("#btn-call")
    assert demo.wait_api_results(victim, 1)[0]["status"] == 200


def test_an_allowed_origin_uses_the_cookie_flow_with_cors(app: Any) -> None:
    origin = app.site.origin
    page = app.open()
    app.login(page)
    assert page.evaluate("fetchMe()") == 200
    # The cookie was set through a credentialed CORS answer; a reload restores the session.
    assert _cookie_value(app.context) is not None
    page.reload()
    page.wait_for_function("() => document.body.dataset.ready === 'yes'", polling=50)
    assert page.evaluate("client.restore()") is True
    assert page.evaluate("fetchMe()") == 200
    assert "freshtoken_rt" not in page.evaluate("document.cookie")

    # The preflight for the cookie route: this origin exactly, with credentials, never '*'.
    preflight = httpx.options(
        app.srv.url + "/auth/refresh",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-freshtoken-csrf",
        },
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "x-freshtoken-csrf" in preflight.headers["access-control-allow-headers"].lower()
    # An origin that is not on the list gets no grant.
    refused = httpx.options(
        app.srv.url + "/auth/refresh",
        headers={
            "Origin": "http://127.0.0.1:9",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-freshtoken-csrf",
        },
    )
    assert refused.headers.get("access-control-allow-origin") in (None, "")
    # Actual answers name the origin, never '*'.
    me = httpx.get(app.srv.url + "/api/me", headers={"Origin": origin})
    assert me.headers["access-control-allow-origin"] == origin
    assert me.headers["access-control-allow-credentials"] == "true"
