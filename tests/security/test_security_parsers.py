"""Hypothesis property tests of every parser that sees untrusted text.

Bearer headers, JWTs (the server's own check and the Verifier), refresh tokens,
form and JSON bodies, Basic client credentials, and cookies. The property is
always the same two-sided one: garbage is refused with the documented error
type (never another exception, never accepted), and well-formed input round-trips.
"""

from __future__ import annotations

import asyncio
import base64
import json
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sec_helpers import FAST_ARGON2, PASSWORD, SPA_ORIGIN, USER
from starlette.requests import Request

from freshtoken.errors import InvalidToken
from freshtoken.server import http as server_http
from freshtoken.server.exceptions import OAuthError
from freshtoken.server.routes import auth as auth_routes
from freshtoken.server.tokens import (
    REFRESH_TOKEN_PATTERN,
    looks_like_refresh_token,
    new_refresh_token,
)
from freshtoken.testing import FakeClock, LiveServer
from freshtoken.verify import Verifier, parse_bearer

FAST = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

TOKEN68 = st.text(alphabet=string.ascii_letters + string.digits + "-._~+/=", min_size=1)
B64URL = string.ascii_letters + string.digits + "-_"
NASTY = st.one_of(
    st.text(),
    st.text(alphabet=string.printable),
    st.binary().map(lambda b: b.decode("latin-1")),
    st.sampled_from(["", " ", "\x00", "Bearer", "Bearer ", "bearer\t", "Basic x", "ftr_", "."]),
)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LiveServer, FakeClock]]:
    clock = FakeClock()
    with LiveServer(clock=clock, settings={**FAST_ARGON2, "cors_origins": [SPA_ORIGIN]}) as srv:
        srv.create_user(USER, PASSWORD)
        yield srv, clock


# --- bearer headers -------------------------------------------------------------------


@FAST
@given(NASTY)
def test_bearer_header_garbage_is_none_or_malformed(value: str) -> None:
    try:
        token = parse_bearer(value)
    except InvalidToken as exc:
        assert exc.code == "malformed"
        return
    if token is not None:
        assert token and token.isascii() and token.isprintable() and " " not in token


@FAST
@given(
    st.sampled_from(["Bearer", "bearer", "BEARER", "BeArEr"]),
    st.sampled_from([" ", "  ", "\t", " \t "]),
    TOKEN68,
    st.sampled_from(["", " ", "\t"]),
)
def test_bearer_header_round_trips(scheme: str, gap: str, token: str, tail: str) -> None:
    assert parse_bearer(f"{scheme}{gap}{token}{tail}") == token
    assert parse_bearer(f"{scheme}{gap}{token}".encode("ascii")) == token


@FAST
@given(st.binary(max_size=64))
def test_bearer_header_bytes(value: bytes) -> None:
    try:
        token = parse_bearer(value)
    except InvalidToken as exc:
        assert exc.code == "malformed"
        return
    assert token is None or value.decode("ascii").strip(" \t").endswith(token)


def test_bearer_header_length_is_capped() -> None:
    with pytest.raises(InvalidToken):
        parse_bearer("Bearer " + "a" * 20_000)


# --- JWTs -----------------------------------------------------------------------------


def _segments(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)) for s in token.split(".")]


def _mutations(token: str) -> st.SearchStrategy[str]:
    def flip(args: tuple[int, str]) -> str:
        pos, ch = args
        pos %= len(token)
        if token[pos] == ".":
            return token
        return token[:pos] + ch + token[pos + 1 :]

    def cut(n: int) -> str:
        return token[: n % len(token)]

    def swap_header(alg: str) -> str:
        header = base64.urlsafe_b64encode(
            json.dumps({"alg": alg, "typ": "at+jwt", "kid": "x"}).encode()
        )
        return header.decode().rstrip("=") + token[token.index(".") :]

    return st.one_of(
        st.tuples(st.integers(0, 10_000), st.sampled_from(list(B64URL))).map(flip),
        st.integers(0, 10_000).map(cut),
        st.sampled_from(["none", "HS256", "HS512", "RS256", "EdDSA", ""]).map(swap_header),
        st.just(token + "."),
        st.just(token.replace(".", "..", 1)),
    )


def test_jwt_mutations_never_verify(server: tuple[LiveServer, FakeClock]) -> None:
    srv, clock = server
    answer = srv.login(USER, PASSWORD)
    token = answer["access_token"]
    service = srv.service
    verifier = Verifier(
        issuer=srv.settings.issuer,
        audience=srv.settings.audience,
        keys=lambda: service.keyring.jwks(clock.now()),
        clock=clock,
        cache_size=0,
    )
    assert service.decode_access_token(token) is not None
    assert verifier.verify(token).sub

    @SLOW
    @given(_mutations(token))
    def prop(mutated: str) -> None:
        try:
            same = _segments(mutated) == _segments(token)
        except (ValueError, TypeError):
            same = False
        server_ok = service.decode_access_token(mutated) is not None
        try:
            verifier.verify(mutated)
            verifier_ok = True
        except InvalidToken:
            verifier_ok = False
        # Only a different spelling of the very same bytes may pass
        # (base64 padding bits), and then both checks agree.
        assert server_ok == verifier_ok
        if server_ok:
            assert same

    prop()


@FAST
@given(NASTY)
def test_jwt_garbage_is_refused(server: tuple[LiveServer, FakeClock], value: str) -> None:
    srv, _ = server
    assert srv.service.decode_access_token(value) is None


# --- refresh tokens -------------------------------------------------------------------


@FAST
@given(NASTY)
def test_refresh_token_shape(value: str) -> None:
    assert looks_like_refresh_token(value) == bool(REFRESH_TOKEN_PATTERN.fullmatch(value))


@FAST
@given(st.integers(0, 1000))
def test_new_refresh_tokens_have_the_documented_shape(_: int) -> None:
    token = new_refresh_token()
    assert token.startswith("ftr_") and len(token) == 47 and looks_like_refresh_token(token)


def test_refresh_garbage_and_near_misses_are_invalid_grant(
    server: tuple[LiveServer, FakeClock],
) -> None:
    srv, _ = server
    service = srv.service
    live = srv.login(USER, PASSWORD)["refresh_token"]

    @SLOW
    @given(
        st.one_of(
            NASTY,
            st.text(alphabet=B64URL, min_size=43, max_size=43).map(lambda s: "ftr_" + s),
            st.tuples(st.integers(4, 46), st.sampled_from(list(B64URL))).map(
                lambda a: live[: a[0]] + a[1] + live[a[0] + 1 :]
            ),
        )
    )
    def prop(value: str) -> None:
        assume(value != live)
        with pytest.raises(OAuthError) as err:
            service.refresh(refresh_token=value)
        assert err.value.error == "invalid_grant"

    prop()
    # None of that touched the real session.
    assert service.refresh(refresh_token=live).refresh_token


# --- form and JSON bodies ----------------------------------------------------------------


def _request(
    body: bytes, content_type: str | None, headers: dict[str, str] | None = None
) -> Request:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode("latin-1")))
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/oauth/token",
        "headers": raw,
        "query_string": b"",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1234),
    }
    return Request(scope, receive)


def _read_form(body: bytes, content_type: str | None = "application/x-www-form-urlencoded"):
    return asyncio.run(server_http.read_form(_request(body, content_type), 16 * 1024))


@FAST
@given(st.binary(max_size=2048))
def test_form_garbage_is_a_dict_or_invalid_request(body: bytes) -> None:
    try:
        form = _read_form(body)
    except OAuthError as exc:
        assert exc.error == "invalid_request" and exc.status_code == 400
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())
    assert all("\x00" not in v for v in form.values())


KEYS = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))


@FAST
@given(st.dictionaries(KEYS, VALUES, max_size=32))
def test_form_round_trips(data: dict[str, str]) -> None:
    assert _read_form(urlencode(data).encode()) == data


@FAST
@given(st.lists(st.tuples(KEYS, VALUES), min_size=2, max_size=10))
def test_form_repeated_parameter_is_refused(pairs: list[tuple[str, str]]) -> None:
    pairs = [*pairs, pairs[0]]
    with pytest.raises(OAuthError) as err:
        _read_form(urlencode(pairs).encode())
    assert "repeated" in err.value.description


FORM_BYTES = st.one_of(
    st.binary(max_size=512),
    st.text(alphabet="ab=&%+;2F0\x00 ", max_size=200).map(str.encode),
    st.lists(
        st.tuples(st.text("abc_", max_size=4), st.text("ftr_xyz-=", max_size=8)), max_size=40
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode()),
)


@FAST
@given(FORM_BYTES)
def test_form_fast_path_agrees_with_parse_qsl(body: bytes) -> None:
    """parse_form_pairs skips parse_qsl for bodies with nothing to unquote; it must
    give the same pairs, and fail where parse_qsl fails."""
    try:
        expected: object = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=server_http.MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        expected = type(exc)
    try:
        got: object = server_http.parse_form_pairs(body)
    except (UnicodeDecodeError, ValueError) as exc:
        got = type(exc)
    assert got == expected


def test_form_limits() -> None:
    with pytest.raises(OAuthError) as err:
        _read_form(urlencode({f"k{i}": "v" for i in range(40)}).encode())
    assert err.value.status_code == 400
    with pytest.raises(OAuthError) as err:
        _read_form(b"a=" + b"x" * 17_000)
    assert err.value.status_code == 413
    with pytest.raises(OAuthError) as err:
        _read_form(b"a=b", "application/json")
    assert err.value.status_code == 415
    with pytest.raises(OAuthError) as err:
        _read_form(b"a=%FF")
    assert "UTF-8" in err.value.description


@FAST
@given(st.one_of(st.binary(max_size=512), st.from_type(dict).map(lambda d: json.dumps(d).encode())))
def test_json_garbage_is_an_object_or_invalid_request(body: bytes) -> None:
    req = _request(body, "application/json")
    try:
        data = asyncio.run(server_http.read_json_object(req, 16 * 1024))
    except OAuthError as exc:
        assert exc.error == "invalid_request" and exc.status_code == 400
        return
    assert isinstance(data, dict)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["username", "password", "refresh_token", "client_id", "scope"]),
        st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text()), st.booleans()),
    ),
    st.sampled_from(["username", "password", "refresh_token", "client_id", "scope"]),
)
def test_string_field_is_a_string_or_invalid_request(data: dict[str, Any], name: str) -> None:
    try:
        value = server_http.string_field(data, name, required=False, max_len=64)
    except OAuthError as exc:
        assert exc.error == "invalid_request"
        return
    assert value is None or (isinstance(value, str) and len(value) <= 64 and "\x00" not in value)


# --- client authentication (Basic) -------------------------------------------------------


@FAST
@given(
    st.text(alphabet=string.printable),
    st.dictionaries(st.sampled_from(["client_id", "client_secret"]), st.text(max_size=8)),
)
def test_basic_header_garbage(value: str, form: dict[str, str]) -> None:
    req = _request(b"", None, {"authorization": "Basic " + value})
    try:
        cid, secret, used = server_http.client_credentials(req, form)
    except OAuthError as exc:
        assert exc.error in ("invalid_client", "invalid_request")
        return
    assert used and isinstance(cid, str) and isinstance(secret, str)


@FAST
@given(
    st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=1),
    st.text(alphabet=string.ascii_letters + string.digits + "-._~:", max_size=40),
)
def test_basic_header_round_trips(client_id: str, secret: str) -> None:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    req = _request(b"", None, {"authorization": "Basic " + raw})
    assert server_http.client_credentials(req, {}) == (client_id, secret, True)


# --- cookies, CSRF header and Origin -----------------------------------------------------


COOKIE_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


@FAST
@given(
    COOKIE_TEXT,
    st.one_of(
        st.none(), st.sampled_from([SPA_ORIGIN, "http://evil.example", "null", ""]), COOKIE_TEXT
    ),
    st.one_of(st.none(), st.sampled_from(["1", "", "yes"])),
    st.booleans(),
)
def test_cookie_mode_never_lets_a_foreign_origin_in(
    server: tuple[LiveServer, FakeClock],
    cookie: str,
    origin: str | None,
    csrf: str | None,
    body_has_token: bool,
) -> None:
    srv, _ = server
    headers = {"cookie": cookie, "host": "auth.example"}
    if origin is not None:
        headers["origin"] = origin
    if csrf is not None:
        headers["x-freshtoken-csrf"] = csrf
    req = _request(b"", None, headers)
    ctx = srv.app.state.ctx
    try:
        cookies = req.cookies
    except Exception as exc:  # Starlette's cookie parser must never raise
        raise AssertionError(f"cookie parser raised {exc!r}") from exc
    assert all(isinstance(k, str) for k in cookies)
    try:
        use_cookie = auth_routes.cookie_mode(req, ctx, body_has_token)
    except OAuthError as exc:
        assert exc.status_code == 403 and exc.error == "csrf_rejected"
        return
    if use_cookie:
        assert csrf is not None and origin is not None
        assert origin.rstrip("/") in {SPA_ORIGIN, "http://auth.example"}
    elif ctx.settings.cookie_name in cookies:
        assert body_has_token


def test_cookie_routes_over_http_never_5xx(server: tuple[LiveServer, FakeClock]) -> None:
    srv, _ = server
    with httpx2.Client(base_url=srv.url, timeout=10) as http:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            st.sampled_from(["/auth/refresh", "/auth/logout"]),
            st.text(alphabet=B64URL + '=;, "\\%', max_size=120),
            st.sampled_from([None, SPA_ORIGIN, "http://evil.example"]),
            st.booleans(),
        )
        def prop(path: str, cookie_value: str, origin: str | None, csrf: bool) -> None:
            headers = {"cookie": f"freshtoken_rt={cookie_value}".strip()}
            if origin:
                headers["origin"] = origin
            if csrf:
                headers["x-freshtoken-csrf"] = "1"
            response = http.post(path, headers=headers)
            assert response.status_code in (200, 400, 403), response.text
            assert response.json()["error" if response.status_code != 200 else "status"]
            if not (csrf and origin == SPA_ORIGIN):
                assert response.status_code == 403

        prop()
