"""Security review items, each as a test: secrets never logged, no user enumeration,
login throttling, cookie attributes and CSRF, security headers, constant-time
comparisons, documented argon2id parameters and refresh-token prefix."""

from __future__ import annotations

import base64
import logging
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sec_helpers import CONFIDENTIAL, FAST_ARGON2, PASSWORD, SPA_ORIGIN, USER

from freshtoken.client import MemoryStore, OAuth2Refresher, TokenAuth, TokenSet
from freshtoken.server.storage import repository as repo
from freshtoken.testing import FakeClock, LiveServer

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "freshtoken"
SECURITY_MD = ROOT / "SECURITY.md"


# --- secrets never logged ---------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, *, exclude: tuple[str, ...] = ()) -> str:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        parts = []
        for rec in self.records:
            if rec.name.startswith(exclude):
                continue
            parts.append(formatter.format(rec))
            parts.append(repr(rec.args))
            parts.append(repr({k: v for k, v in rec.__dict__.items() if k not in ("args", "msg")}))
        return "\n".join(parts)


@pytest.fixture
def debug_logs() -> Iterator[_Capture]:
    capture = _Capture()
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "freshtoken", "sqlalchemy"]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate)
        logger.setLevel(logging.DEBUG)
        if name:
            logger.propagate = True
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for name, (level, propagate) in saved.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate


def _leak_fragments(secret: str) -> list[str]:
    """The secret and recognisable pieces of it (a JWT's signature, a refresh
    token's random part) so a truncated or re-encoded leak is caught too."""
    fragments = [secret]
    if secret.startswith("ftr_"):
        fragments.append(secret[4:20])
    elif secret.count(".") == 2:
        fragments.append(secret.rsplit(".", 1)[1][:24])
    elif len(secret) >= 12:
        fragments.append(base64.b64encode(secret.encode()).decode()[:16])
    return fragments


def test_secrets_never_logged(debug_logs: _Capture) -> None:
    secrets_seen: set[str] = set()
    wrong_passwords = ["hunter2-wrong-password", "another wrong password!"]
    with LiveServer(
        settings={**FAST_ARGON2, "log_level": "DEBUG", "cors_origins": [SPA_ORIGIN]}
    ) as srv:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).propagate = True
        srv.create_user(USER, PASSWORD)
        srv.create_client(
            CONFIDENTIAL[0], secret=CONFIDENTIAL[1], grant_types=("client_credentials",)
        )
        secrets_seen |= {PASSWORD, CONFIDENTIAL[1], *wrong_passwords}
        assert srv.settings.secret_key
        secrets_seen.add(srv.settings.secret_key)

        def keep(answer: dict[str, Any]) -> dict[str, Any]:
            for field in ("access_token", "refresh_token"):
                if answer.get(field):
                    secrets_seen.add(answer[field])
            return answer

        with httpx2.Client(base_url=srv.url, timeout=10) as http:
            form = {"grant_type": "password", "username": USER, "client_id": "default"}
            first = keep(http.post("/oauth/token", data={**form, "password": PASSWORD}).json())
            for bad in wrong_passwords:
                assert http.post("/oauth/token", data={**form, "password": bad}).status_code == 400
                assert (
                    http.post("/auth/login", json={"username": USER, "password": bad}).status_code
                    == 400
                )
            assert (
                http.post("/auth/login", json={"username": "nobody", "password": PASSWORD})
            ).status_code == 400
            rt = first["refresh_token"]
            chain = [rt]
            for _ in range(3):
                answer = keep(
                    http.post(
                        "/oauth/token",
                        data={
                            "grant_type": "refresh_token",
                            "refresh_token": rt,
                            "client_id": "default",
                        },
                    ).json()
                )
                rt = answer["refresh_token"]
                chain.append(rt)
            # grace replay of the parent, then reuse of an old token (revokes the session)
            grace = http.post(
                "/oauth/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": chain[-2],
                    "client_id": "default",
                },
            )
            assert keep(grace.json())["refresh_token"] == chain[-1]
            reuse = http.post(
                "/oauth/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": chain[0],
                    "client_id": "default",
                },
            )
            assert reuse.json()["error"] == "invalid_grant"
            # JSON + cookie delivery
            login = http.post("/auth/login", json={"username": USER, "password": PASSWORD})
            keep(login.json())
            cookie_login = http.post(
                "/auth/login",
                json={"username": USER, "password": PASSWORD},
                headers={"x-freshtoken-csrf": "1", "origin": SPA_ORIGIN},
            )
            keep(cookie_login.json())
            cookie = cookie_login.cookies.get("freshtoken_rt") or ""
            assert cookie.startswith("ftr_")
            secrets_seen.add(cookie)
            refreshed = http.post(
                "/auth/refresh",
                headers={
                    "x-freshtoken-csrf": "1",
                    "origin": SPA_ORIGIN,
                    "cookie": f"freshtoken_rt={cookie}",
                },
            )
            keep(refreshed.json())
            secrets_seen.add(refreshed.cookies.get("freshtoken_rt") or "")
            # bearer use, good and bad; introspection; client credentials; revoke
            access = login.json()["access_token"]
            assert http.get("/api/me", headers={"authorization": f"Bearer {access}"}).is_success
            assert (
                http.get("/api/me", headers={"authorization": f"Bearer {access}x"}).status_code
                == 401
            )
            cc = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=CONFIDENTIAL,
            )
            keep(cc.json())
            assert http.post("/oauth/introspect", data={"token": access}, auth=CONFIDENTIAL).json()[
                "active"
            ]
            assert http.post(
                "/oauth/revoke",
                data={"token": login.json()["refresh_token"], "client_id": "default"},
            ).is_success
            assert http.post(
                "/auth/logout",
                json={"refresh_token": refreshed.json().get("refresh_token") or cookie},
            ).is_success

        # The Python client at DEBUG too: login, proactive refresh, 401-driven refresh.
        clock = FakeClock()
        answer = keep(srv.login(USER, PASSWORD))
        auth = TokenAuth(
            refresher=OAuth2Refresher(srv.token_url, client_id="default"),
            store=MemoryStore(
                TokenSet(
                    access_token=answer["access_token"],
                    refresh_token=answer["refresh_token"],
                    expires_at=clock.now() + 1,
                )
            ),
            clock=clock,
        )
        with httpx2.Client(auth=auth, timeout=10) as api:
            assert api.get(srv.url + "/api/me").is_success
        tokens = auth.store.load()
        assert tokens is not None and tokens.generation >= 1  # it did refresh
        secrets_seen |= {tokens.access_token, tokens.refresh_token or ""}

        with srv.service.db.transaction() as conn:
            audit_rows = repo.tail_audit_events(conn, 1000)

    secrets_seen.discard("")
    # The HTTP client library's own wire trace (httpcore at DEBUG logs response headers,
    # Set-Cookie included) is the test harness's, not freshtoken's: see SECURITY.md.
    logged = debug_logs.text(exclude=("httpcore", "httpx", "hpack"))
    # Not vacuous: DEBUG output from the server, the audit trail and SQL are all in there.
    assert len(debug_logs.records) > 50
    assert "refresh_token_reuse_detected" in logged
    assert "login_failed" in logged
    assert len(secrets_seen) > 15
    for secret in secrets_seen:
        for fragment in _leak_fragments(secret):
            assert fragment not in logged, f"a secret ({secret[:6]}…) appears in the logs"
    audit_text = "\n".join(repr(tuple(row)) for row in audit_rows)
    assert "refresh_rotated" in audit_text
    for secret in secrets_seen:
        assert secret not in audit_text


# --- user enumeration ---------------------------------------------------------------------


def test_login_failures_are_the_same_for_unknown_user_and_wrong_password() -> None:
    """Same status, body and headers; the same argon2 work (timing) either way.

    Uses the production argon2id parameters, so the time is dominated by the hash."""
    with LiveServer() as srv:
        srv.create_user(USER, PASSWORD)
        with httpx2.Client(base_url=srv.url, timeout=10) as http:

            def attempt(path: str, username: str) -> tuple[httpx2.Response, float]:
                t0 = time.perf_counter()
                if path == "/oauth/token":
                    r = http.post(
                        path,
                        data={
                            "grant_type": "password",
                            "username": username,
                            "password": "wrong password",
                            "client_id": "default",
                        },
                    )
                else:
                    r = http.post(path, json={"username": username, "password": "wrong password"})
                return r, time.perf_counter() - t0

            for path in ("/oauth/token", "/auth/login"):
                wrong, _ = attempt(path, USER)
                unknown, _ = attempt(path, "no-such-user")
                assert wrong.status_code == unknown.status_code == 400
                assert wrong.content == unknown.content
                assert wrong.json() == {
                    "error": "invalid_grant",
                    "error_description": "invalid username or password",
                }
                strip = {"date", "content-length"}
                assert {k: v for k, v in wrong.headers.items() if k not in strip} == {
                    k: v for k, v in unknown.headers.items() if k not in strip
                }

            attempt("/oauth/token", USER)  # warm up
            known_times, unknown_times = [], []
            for _ in range(15):
                known_times.append(attempt("/oauth/token", USER)[1])
                unknown_times.append(attempt("/oauth/token", "no-such-user")[1])
    known, unknown = statistics.median(known_times), statistics.median(unknown_times)
    # Both pay one argon2id verification (~10+ ms); the difference is noise.
    assert min(known, unknown) > 0.005
    assert abs(known - unknown) < max(0.004, 0.25 * min(known, unknown)), (known, unknown)


# --- login throttling -------------------------------------------------------------------------


def test_login_throttling_per_username_and_per_ip() -> None:
    with LiveServer(
        settings={
            **FAST_ARGON2,
            "ratelimit_enabled": True,
            "ratelimit_login_per_username": "5/minute",
            "ratelimit_login_per_ip": "12/minute",
        }
    ) as srv:
        srv.create_user(USER, PASSWORD)
        with httpx2.Client(base_url=srv.url, timeout=10) as http:

            def login(username: str, password: str, json_route: bool = False) -> httpx2.Response:
                if json_route:
                    return http.post(
                        "/auth/login", json={"username": username, "password": password}
                    )
                return http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "password",
                        "username": username,
                        "password": password,
                        "client_id": "default",
                    },
                )

            # Five guesses against alice (both routes share the counter) ...
            statuses = [
                login(USER, f"guess-{i}", json_route=i % 2 == 1).status_code for i in range(5)
            ]
            assert statuses == [400] * 5
            # ... then even the right password is refused: guessing is stopped.
            blocked = login(USER, PASSWORD)
            assert blocked.status_code == 429
            assert int(blocked.headers["retry-after"]) >= 1
            assert blocked.json()["error"] == "rate_limited"
            assert login(USER, PASSWORD, json_route=True).status_code == 429
            # Another user from the same IP is not blocked by alice's limit ...
            srv.create_user("bob", PASSWORD)
            assert login("bob", PASSWORD).status_code == 200
            # ... but spraying many usernames from one IP hits the per-IP limit.
            answers = [login(f"user{i}", "pw").status_code for i in range(10)]
            assert 429 in answers
            assert answers.index(429) <= 12 - 8 + 1
            assert srv.service.stats["login"] == 1


# --- cookies, CSRF, CORS ----------------------------------------------------------------------


def _cookie_attrs(header: str) -> dict[str, str]:
    parts = [p.strip() for p in header.split(";")]
    attrs = {}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        attrs[key.lower()] = value
    return attrs


def test_cookie_attributes_and_csrf(live: LiveServer) -> None:
    cookie_headers = {"x-freshtoken-csrf": "1", "origin": SPA_ORIGIN}
    with httpx2.Client(base_url=live.url, timeout=10) as http:
        login = http.post(
            "/auth/login", json={"username": USER, "password": PASSWORD}, headers=cookie_headers
        )
        assert login.status_code == 200
        assert "refresh_token" not in login.json()  # only in the cookie
        set_cookie = login.headers["set-cookie"]
        name_value = set_cookie.split(";", 1)[0]
        assert name_value.startswith("freshtoken_rt=ftr_")
        attrs = _cookie_attrs(set_cookie)
        assert "httponly" in attrs
        assert "secure" in attrs
        assert attrs["samesite"].lower() == "strict"
        assert attrs["path"] == "/auth"
        assert abs(int(attrs["max-age"]) - live.settings.session_max_ttl) <= 2
        assert "domain" not in attrs
        cookie = name_value.split("=", 1)[1]

        # Without the CSRF header or from another origin: 403, whatever the body.
        jar = {"cookie": f"freshtoken_rt={cookie}"}
        for headers in (
            jar,
            {**jar, "x-freshtoken-csrf": "1"},
            {**jar, "x-freshtoken-csrf": "1", "origin": "http://evil.example"},
            {**jar, "origin": SPA_ORIGIN},
        ):
            refused = http.post("/auth/refresh", headers=headers)
            assert refused.status_code == 403
            assert refused.json()["error"] == "csrf_rejected"

        refreshed = http.post("/auth/refresh", headers={**cookie_headers, **jar})
        assert refreshed.status_code == 200
        assert "refresh_token" not in refreshed.json()
        new_cookie = refreshed.headers["set-cookie"]
        attrs = _cookie_attrs(new_cookie)
        assert {"httponly", "secure"} <= attrs.keys() and attrs["path"] == "/auth"
        rotated = new_cookie.split(";", 1)[0].split("=", 1)[1]
        assert rotated != cookie

        out = http.post(
            "/auth/logout", headers={**cookie_headers, "cookie": f"freshtoken_rt={rotated}"}
        )
        assert out.status_code == 200
        cleared = _cookie_attrs(out.headers["set-cookie"])
        assert cleared.get("max-age") == "0" or "1970" in cleared.get("expires", "")
        assert cleared["path"] == "/auth"
        # The session is over: the cookie's token is dead.
        dead = http.post(
            "/auth/refresh", headers={**cookie_headers, "cookie": f"freshtoken_rt={rotated}"}
        )
        assert dead.status_code == 400
        assert _cookie_attrs(dead.headers["set-cookie"]).get("max-age") == "0"


def test_cors_allow_list_never_wildcard(live: LiveServer) -> None:
    with httpx2.Client(base_url=live.url, timeout=10) as http:
        preflight = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-freshtoken-csrf",
        }
        ok = http.options("/auth/refresh", headers={**preflight, "origin": SPA_ORIGIN})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == SPA_ORIGIN
        assert ok.headers["access-control-allow-credentials"] == "true"
        bad = http.options("/auth/refresh", headers={**preflight, "origin": "http://evil.example"})
        assert bad.headers.get("access-control-allow-origin") in (None, "")
        simple = http.post("/auth/logout", json={}, headers={"origin": "http://evil.example"})
        assert simple.headers.get("access-control-allow-origin") is None
        assert "*" not in ok.headers.get("access-control-allow-origin", "")


# --- security headers --------------------------------------------------------------------------


def test_security_headers_on_the_demo_page_and_static(live: LiveServer) -> None:
    with httpx2.Client(base_url=live.url, timeout=10) as http:
        for path in ("/demo", "/static/freshtoken.js"):
            r = http.get(path)
            csp = r.headers["content-security-policy"]
            directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
            assert directives["script-src"] == ["'self'"]
            assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
            assert directives["frame-ancestors"] == ["'none'"]
            assert directives["object-src"] == ["'none'"]
            assert directives["base-uri"] == ["'none'"]
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["x-frame-options"] == "DENY"
        # API answers: nosniff and no-referrer too.
        api = http.get("/healthz")
        assert api.headers["x-content-type-options"] == "nosniff"
        assert api.headers["referrer-policy"] == "no-referrer"


def test_demo_page_has_no_inline_script() -> None:
    """The CSP forbids inline script; the page must not need any."""
    pages = list((SRC / "web" / "static").rglob("*.html"))
    if not pages:
        pytest.skip("no demo HTML in this tree yet")
    for page in pages:
        html = page.read_text(encoding="utf-8")
        for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I):
            attrs, body = match.groups()
            assert "src=" in attrs and not body.strip(), f"inline <script> in {page.name}"
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), f"inline handler in {page.name}"
        assert "javascript:" not in html.lower()


# --- constant-time comparisons --------------------------------------------------------------


SECRETISH = re.compile(
    r"(secret|password|passwd|digest|hmac|mac|signature|token_hash|csrf)", re.IGNORECASE
)


def test_secret_comparisons_are_constant_time() -> None:
    """No ``==``/``!=`` between a secret-looking value and anything, in the server and
    verifier; the places that compare secrets use hmac.compare_digest (or a library
    that does: argon2, cryptography's signature checks)."""
    offenders = []
    probe = re.search(r"([\w.\[\]\"']+)\s*(==|!=)\s*([\w.\[\]\"']+)", "if stored_secret == given:")
    assert probe and SECRETISH.search(probe.group(1))  # the scanner would catch one
    for path in [*(SRC / "server").rglob("*.py"), *(SRC / "verify").rglob("*.py")]:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for m in re.finditer(r"([\w.\[\]\"']+)\s*(==|!=)\s*([\w.\[\]\"']+)", code):
                left, _, right = m.groups()
                if ".c." in left:  # an SQL expression on a hash column, not a comparison
                    continue
                if (SECRETISH.search(left) or SECRETISH.search(right)) and not re.search(
                    r"None|\"\"|''|^\d+$|status|type|_len|len\(|alg|name|kind|method|hint",
                    left + right,
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    passwords_src = (SRC / "server" / "passwords.py").read_text()
    assert "hmac.compare_digest" in passwords_src
    tokens_src = (SRC / "server" / "tokens.py").read_text()
    assert re.search(r"hmac\.(new|digest)\(", tokens_src) and "sha256" in tokens_src
    # Refresh tokens are found by the SHA-256 of the presented value: the database
    # index compares hashes, never the secret itself.
    service_src = (SRC / "server" / "service.py").read_text()
    assert "find_refresh_token(conn, hash_refresh_token(" in service_src


# --- documented parameters ----------------------------------------------------------------------


def test_argon2id_parameters_are_the_documented_ones(live: LiveServer) -> None:
    from freshtoken.server.settings import Settings

    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.password_time_cost, defaults.password_memory_kib) == (2, 19 * 1024)
    assert defaults.password_parallelism == 1
    with live.service.db.transaction() as conn:
        stored = repo.find_user_by_name(conn, USER).password_hash
    assert stored.startswith("$argon2id$v=19$")
    text = SECURITY_MD.read_text()
    assert "argon2id" in text
    assert "m=19456" in text and "t=2" in text and "p=1" in text


def test_refresh_token_prefix_is_documented_for_secret_scanners(live: LiveServer) -> None:
    text = SECURITY_MD.read_text()
    match = re.search(r"`(ftr_\[A-Za-z0-9_-\]\{43\})`", text)
    assert match, "SECURITY.md must give the scanner regex for refresh tokens"
    token = live.login(USER, PASSWORD)["refresh_token"]
    assert re.fullmatch(match.group(1), token)
    assert "ftr_" in (ROOT / "docs" / "http-api.md").read_text()
