"""Every JWT attack from the issue: refused with the right error, answered 401, never 500.

Each case runs twice: against ``Verifier.verify`` (the precise error code) and
through ``BearerAuthMiddleware`` (401, RFC 6750 header, JSON body).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from verify_helpers import AUDIENCE, ISSUER, Minter, SigningKey, b64, b64json, new_key

from freshtoken.errors import InvalidToken
from freshtoken.testing import FakeClock
from freshtoken.verify import BearerAuthMiddleware, Verifier

NOW = 1_700_000_000


@dataclass
class Ctx:
    minter: Minter
    es_key: SigningKey
    rs_key: SigningKey
    evil: SigningKey
    attacker_url: str


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64json(header)}.{b64json(claims)}.{signature}"


def alg_none(c: Ctx) -> str:
    return _unsigned({"typ": "at+jwt", "alg": "none", "kid": "es-1"}, c.minter.claims())


def alg_none_upper(c: Ctx) -> str:
    return _unsigned({"typ": "at+jwt", "alg": "NONE"}, c.minter.claims(), "c2ln")


def hmac_confusion(c: Ctx) -> str:
    """HS256 'signed' with the server's public key as the HMAC secret."""
    for key in (c.es_key, c.rs_key):
        pem = key.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    header = b64json({"typ": "at+jwt", "alg": "HS256", "kid": "rs-1"})
    signing_input = f"{header}.{b64json(c.minter.claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def same_kid_other_key(c: Ctx) -> str:
    return c.minter.token(key=c.evil)  # evil has kid "es-1" too


def kid_path_traversal(c: Ctx) -> str:
    return c.minter.token(header={"kid": "../../../../etc/passwd"})


def kid_sql(c: Ctx) -> str:
    return c.minter.token(header={"kid": "es-1' OR '1'='1'; DROP TABLE keys; --"})


def kid_long_300(c: Ctx) -> str:
    return c.minter.token(header={"kid": "k" * 300})


def kid_10kb(c: Ctx) -> str:
    return c.minter.token(header={"kid": "k" * 10_240})


def kid_int(c: Ctx) -> str:
    return c.minter.token(header={"kid": 1})


def kid_list(c: Ctx) -> str:
    return c.minter.token(header={"kid": ["es-1"]})


def kid_object(c: Ctx) -> str:
    return c.minter.token(header={"kid": {"$ne": ""}})


def jku_elsewhere(c: Ctx) -> str:
    return c.minter.token(key=c.evil, header={"jku": c.attacker_url + "/jwks.json"})


def jku_unknown_kid(c: Ctx) -> str:
    return c.minter.token(
        key=c.evil, header={"kid": "evil-1", "jku": c.attacker_url + "/jwks.json"}
    )


def x5u_elsewhere(c: Ctx) -> str:
    return c.minter.token(key=c.evil, header={"x5u": c.attacker_url + "/cert.pem"})


def embedded_jwk(c: Ctx) -> str:
    return c.minter.token(key=c.evil, header={"jwk": c.evil.jwk()})


def embedded_jwk_no_kid(c: Ctx) -> str:
    return c.minter.token(key=c.evil, header={"jwk": c.evil.jwk()}, drop_header=("kid",))


def tampered_payload(c: Ctx) -> str:
    header, _, signature = c.minter.token(scope="read").split(".")
    forged = b64json(c.minter.claims(scope="read write admin", sub="admin"))
    return f"{header}.{forged}.{signature}"


def tampered_header(c: Ctx) -> str:
    _, payload, signature = c.minter.token().split(".")
    return (
        f"{b64json({'typ': 'at+jwt', 'alg': 'ES256', 'kid': 'es-1', 'x': 1})}.{payload}.{signature}"
    )


def truncated_signature(c: Ctx) -> str:
    return c.minter.token()[:-4]


def expired_outside_leeway(c: Ctx) -> str:
    return c.minter.token(exp=NOW - 30, iat=NOW - 330)


def nbf_outside_leeway(c: Ctx) -> str:
    return c.minter.token(nbf=NOW + 31)


def iat_in_future(c: Ctx) -> str:
    return c.minter.token(iat=NOW + 31)


def wrong_iss(c: Ctx) -> str:
    return c.minter.token(iss="https://evil.test")


def iss_trailing_slash(c: Ctx) -> str:
    return c.minter.token(iss=ISSUER + "/")


def wrong_aud(c: Ctx) -> str:
    return c.minter.token(aud="https://other-api.test")


def aud_list_without_ours(c: Ctx) -> str:
    return c.minter.token(aud=["https://a.test", "https://b.test"])


def id_token_shaped(c: Ctx) -> str:
    return c.minter.token(header={"typ": "JWT"}, aud="default", nonce="n-0S6_WzA2Mj", auth_time=NOW)


def id_token_no_typ(c: Ctx) -> str:
    return c.minter.token(drop_header=("typ",), aud="default", nonce="abc")


def non_base64(c: Ctx) -> str:
    return "eyJ0eXAi$%.eyJzdWIi!.c2ln"


def non_base64_padding(c: Ctx) -> str:
    h, p, s = c.minter.token().split(".")
    return f"{h}.{p}=.{s}"


def bad_base64_length(c: Ctx) -> str:
    h, p, s = c.minter.token().split(".")
    return f"{h}{'A' * ((1 - len(h)) % 4)}.{p}.{s}"  # length % 4 == 1: impossible base64


def header_not_json(c: Ctx) -> str:
    return f"{b64(b'not json')}.{b64json(c.minter.claims())}.c2ln"


def header_json_array(c: Ctx) -> str:
    return f"{b64(b'[1,2]')}.{b64json(c.minter.claims())}.c2ln"


def duplicate_header_members(c: Ctx) -> str:
    raw = b'{"typ":"at+jwt","alg":"ES256","alg":"none","kid":"es-1"}'
    return f"{b64(raw)}.{b64json(c.minter.claims())}.c2ln"


def crit_header(c: Ctx) -> str:
    return c.minter.token(header={"crit": ["b64"], "b64": False})


def two_segments(c: Ctx) -> str:
    return ".".join(c.minter.token().split(".")[:2])


def four_segments(c: Ctx) -> str:
    return c.minter.token() + ".c2ln"


def empty_string(c: Ctx) -> str:
    return ""


def dots_only(c: Ctx) -> str:
    return ".."


def one_megabyte(c: Ctx) -> str:
    return "A" * (1024 * 1024)


def payload_not_object(c: Ctx) -> str:
    header = b64json({"typ": "at+jwt", "alg": "ES256", "kid": "es-1"})
    signing_input = f"{header}.{b64(b'[1]')}"
    return f"{signing_input}.{b64(c.es_key.sign(signing_input.encode()))}"


ATTACKS: list[tuple[Callable[[Ctx], str], str]] = [
    (alg_none, "wrong_algorithm"),
    (alg_none_upper, "wrong_algorithm"),
    (hmac_confusion, "wrong_algorithm"),
    (same_kid_other_key, "bad_signature"),
    (kid_path_traversal, "unknown_key"),
    (kid_sql, "unknown_key"),
    (kid_long_300, "unknown_key"),
    (kid_10kb, "malformed"),
    (kid_int, "malformed"),
    (kid_list, "malformed"),
    (kid_object, "malformed"),
    (jku_elsewhere, "bad_signature"),
    (jku_unknown_kid, "unknown_key"),
    (x5u_elsewhere, "bad_signature"),
    (embedded_jwk, "bad_signature"),
    (embedded_jwk_no_kid, "unknown_key"),
    (tampered_payload, "bad_signature"),
    (tampered_header, "bad_signature"),
    (truncated_signature, "bad_signature"),
    (expired_outside_leeway, "expired"),
    (nbf_outside_leeway, "not_yet_valid"),
    (iat_in_future, "not_yet_valid"),
    (wrong_iss, "wrong_issuer"),
    (iss_trailing_slash, "wrong_issuer"),
    (wrong_aud, "wrong_audience"),
    (aud_list_without_ours, "wrong_audience"),
    (id_token_shaped, "wrong_type"),
    (id_token_no_typ, "wrong_type"),
    (non_base64, "malformed"),
    (non_base64_padding, "malformed"),
    (bad_base64_length, "malformed"),
    (header_not_json, "malformed"),
    (header_json_array, "malformed"),
    (duplicate_header_members, "malformed"),
    (crit_header, "malformed"),
    (two_segments, "malformed"),
    (four_segments, "malformed"),
    (empty_string, "malformed"),
    (dots_only, "malformed"),
    (one_megabyte, "malformed"),
    (payload_not_object, "malformed"),
]


@pytest.fixture
def ctx(es_key, rs_key, attacker_server) -> Ctx:
    clock = FakeClock(NOW)
    return Ctx(
        minter=Minter(clock, es_key),
        es_key=es_key,
        rs_key=rs_key,
        evil=new_key("ES256", "es-1"),
        attacker_url=attacker_server.url,
    )


@pytest.fixture
def verifier(ctx, auth_server) -> Verifier:
    """Keys fetched over HTTP, so a verifier that *would* fetch a jku had the machinery to."""
    v = Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=auth_server.jwks_url,
        clock=ctx.minter.clock,
        leeway=30,
    )
    assert v.keys.refresh()  # type: ignore[attr-defined]
    return v


def protected_app(verifier: Verifier) -> BearerAuthMiddleware:
    async def me(request: Request) -> JSONResponse:
        claims = request.scope["freshtoken.claims"]
        assert request.state.claims is claims
        return JSONResponse({"sub": claims.sub, "scope": claims.scope})

    return BearerAuthMiddleware(Starlette(routes=[Route("/api/me", me)]), verifier)


CHALLENGE = re.compile(r'^Bearer error="invalid_token", error_description="[ !#-\[\]-~]{1,200}"$')


@pytest.mark.parametrize(("attack", "code"), ATTACKS, ids=[a.__name__ for a, _ in ATTACKS])
async def test_attack_is_refused(ctx, verifier, auth_server, attacker_server, attack, code):
    token = attack(ctx)
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    assert info.value.code == code
    with pytest.raises(InvalidToken) as ainfo:
        await verifier.averify(token)
    assert ainfo.value.code == code

    transport = httpx2.ASGITransport(app=protected_app(verifier))
    async with httpx2.AsyncClient(transport=transport, base_url="http://rs") as client:
        response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert CHALLENGE.match(response.headers["www-authenticate"]), response.headers
    assert response.json()["error"] == "invalid_token"
    assert response.json()["error_description"]

    # Never fetched anything from the attacker, nor any kid-derived URL from us.
    assert sum(attacker_server.hits.values()) == 0
    assert set(auth_server.hits) <= {"/.well-known/jwks.json"}
    assert auth_server.hits["/.well-known/jwks.json"] <= 2  # initial + at most one refetch


def test_legit_token_with_foreign_jku_is_accepted_and_jku_ignored(ctx, verifier, attacker_server):
    token = ctx.minter.token(header={"jku": ctx.attacker_url + "/jwks.json", "x5u": "http://x"})
    assert verifier.verify(token).sub == "user-1"
    assert sum(attacker_server.hits.values()) == 0


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"exp": NOW - 29, "iat": NOW - 329}, True),  # expired 29 s ago: inside 30 s leeway
        ({"exp": NOW - 30, "iat": NOW - 330}, False),  # 30 s ago: outside
        ({"exp": NOW - 31, "iat": NOW - 331}, False),
        ({"nbf": NOW + 30}, True),  # valid 30 s from now: inside
        ({"nbf": NOW + 31}, False),
        ({"iat": NOW + 29}, True),
        ({"iat": NOW + 31}, False),
    ],
)
def test_leeway_boundaries(ctx, verifier, claims, ok):
    token = ctx.minter.token(**claims)
    if ok:
        assert verifier.verify(token).sub == "user-1"
    else:
        with pytest.raises(InvalidToken) as info:
            verifier.verify(token)
        assert info.value.code in {"expired", "not_yet_valid"}


def test_zero_leeway(ctx, es_key):
    strict = Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys={"keys": [es_key.jwk()]},
        clock=ctx.minter.clock,
        leeway=0,
    )
    assert strict.verify(ctx.minter.token(exp=NOW + 1)).sub
    with pytest.raises(InvalidToken, match="expired"):
        strict.verify(ctx.minter.token(exp=NOW, iat=NOW - 10))
