"""/auth/login, /auth/refresh, /auth/logout: the JSON API and cookie delivery with CSRF checks."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx
import pytest

from freshtoken.testing import FakeClock, LiveServer

from .helpers import PASSWORD, USERNAME, assert_oauth_error, claims_of, live_tokens


def login_json(http: httpx.Client, **extra: object) -> httpx.Response:
    return http.post("/auth/login", json={"username": USERNAME, "password": PASSWORD, **extra})


def test_json_login_refresh_logout(http: httpx.Client, live: LiveServer, clock: FakeClock) -> None:
    login = login_json(http)
    assert login.status_code == 200
    assert login.headers["cache-control"] == "no-store"
    body = login.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    sid = claims_of(body["access_token"])["sid"]

    refreshed = http.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["refresh_token"] != body["refresh_token"]
    clock.advance(1)
    retry = http.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert retry.json()["refresh_token"] == new["refresh_token"]  # grace window

    narrowed = http.post(
        "/auth/refresh", json={"refresh_token": new["refresh_token"], "scope": "read"}
    )
    assert narrowed.json()["scope"] == "read"
    latest = narrowed.json()["refresh_token"]

    out = http.post("/auth/logout", json={"refresh_token": latest})
    assert out.status_code == 200 and out.json() == {"status": "logged_out"}
    assert live_tokens(live.service.db, sid) == []
    gone = http.post("/auth/refresh", json={"refresh_token": latest})
    assert_oauth_error(gone, 400, "invalid_grant")
    # Logout is idempotent: the same or an unknown token answers 200 again.
    for token in (latest, "ftr_" + "q" * 43, "junk"):
        again = http.post("/auth/logout", json={"refresh_token": token})
        assert again.status_code == 200 and again.json() == {"status": "logged_out"}


def test_json_login_errors(http: httpx.Client) -> None:
    assert_oauth_error(login_json(http, password="x"), 400, "invalid_grant")
    response = http.post("/auth/login", json={"username": USERNAME, "password": "wrong"})
    assert_oauth_error(response, 400, "invalid_grant")
    assert_oauth_error(login_json(http, client_id="ghost"), 401, "invalid_client")
    assert_oauth_error(login_json(http, scope="admin"), 400, "invalid_scope")
    missing = http.post("/auth/login", json={"username": USERNAME})
    assert "password" in assert_oauth_error(missing, 400, "invalid_request")["error_description"]
    no_token = http.post("/auth/refresh", json={})
    assert_oauth_error(no_token, 400, "invalid_request")
    empty = http.post("/auth/refresh")  # no body at all
    assert_oauth_error(empty, 400, "invalid_request")
    garbage = http.post("/auth/refresh", json={"refresh_token": "ftr_garbage"})
    assert_oauth_error(garbage, 400, "invalid_grant")


def cookie_headers(live: LiveServer, cookie: str | None = None) -> dict[str, str]:
    headers = {"X-Freshtoken-CSRF": "1", "Origin": live.url}
    if cookie is not None:
        headers["Cookie"] = f"freshtoken_rt={cookie}"
    return headers


def refresh_cookie(response: httpx.Response) -> tuple[str, dict[str, str | bool]]:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    morsel = jar["freshtoken_rt"]
    raw = response.headers["set-cookie"].lower()
    attrs: dict[str, str | bool] = {
        "path": morsel["path"],
        "max-age": morsel["max-age"],
        "samesite": morsel["samesite"].lower(),
        "httponly": "httponly" in raw,
        "secure": "secure" in raw,
    }
    return morsel.value, attrs


def test_cookie_delivery(live: LiveServer, clock: FakeClock) -> None:
    # A jar-less client: the test hands the cookie over explicitly.
    with httpx.Client(base_url=live.url, cookies=None) as http:
        login = http.post(
            "/auth/login",
            json={"username": USERNAME, "password": PASSWORD},
            headers=cookie_headers(live),
        )
        assert login.status_code == 200
        assert "refresh_token" not in login.json()
        token, attrs = refresh_cookie(login)
        assert token.startswith("ftr_")
        assert attrs == {
            "path": "/auth",
            "max-age": str(30 * 86_400),
            "samesite": "strict",
            "httponly": True,
            "secure": True,
        }
        http.cookies.clear()

        clock.advance(86_400)
        refreshed = http.post("/auth/refresh", headers=cookie_headers(live, token))
        assert refreshed.status_code == 200, refreshed.text
        assert "refresh_token" not in refreshed.json()
        new_token, attrs = refresh_cookie(refreshed)
        assert new_token != token
        assert attrs["max-age"] == str(29 * 86_400)  # the session's remaining lifetime
        http.cookies.clear()

        out = http.post("/auth/logout", headers=cookie_headers(live, new_token))
        assert out.status_code == 200
        assert (
            'freshtoken_rt=""' in out.headers["set-cookie"]
            or "Max-Age=0" in out.headers["set-cookie"]
        )
        http.cookies.clear()
        dead = http.post("/auth/refresh", headers=cookie_headers(live, new_token))
        assert_oauth_error(dead, 400, "invalid_grant")
        assert "set-cookie" in dead.headers  # the dead cookie is cleared
        http.cookies.clear()
        no_cookie = http.post("/auth/refresh", headers=cookie_headers(live))
        assert_oauth_error(no_cookie, 400, "invalid_grant")


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": "freshtoken_rt=ftr_" + "a" * 43},  # cookie without the CSRF header
        {"X-Freshtoken-CSRF": "1", "Cookie": "freshtoken_rt=x"},  # no Origin
        {"X-Freshtoken-CSRF": "1", "Origin": "https://evil.example", "Cookie": "freshtoken_rt=x"},
    ],
)
@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
def test_csrf_rejections(live: LiveServer, headers: dict[str, str], path: str) -> None:
    with httpx.Client(base_url=live.url) as http:
        response = http.post(path, headers=headers)
    assert_oauth_error(response, 403, "csrf_rejected")


def test_cookie_login_from_another_origin_is_refused(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as http:
        response = http.post(
            "/auth/login",
            json={"username": USERNAME, "password": PASSWORD},
            headers={"X-Freshtoken-CSRF": "1", "Origin": "https://evil.example"},
        )
    assert_oauth_error(response, 403, "csrf_rejected")
    assert "set-cookie" not in response.headers
