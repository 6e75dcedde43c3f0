"""Access tokens (RFC 9068) and opaque refresh tokens (DESIGN §2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from freshtoken.server.app import build_service
from freshtoken.server.service import TokenService
from freshtoken.server.tokens import (
    REFRESH_TOKEN_PATTERN,
    SuccessorDeriver,
    hash_refresh_token,
    looks_like_refresh_token,
    new_refresh_token,
)
from freshtoken.testing import FakeClock

from .helpers import PASSWORD, USERNAME, make_settings

ALGS = ["ES256", "RS256", "Ed25519"]


@pytest.fixture(params=ALGS)
def alg_service(
    request: pytest.FixtureRequest, tmp_path, clock: FakeClock
) -> Iterator[TokenService]:
    settings = make_settings(f"sqlite:///{tmp_path}/t.db", signing_alg=request.param)
    svc = build_service(settings, clock)
    svc.bootstrap()
    svc.create_user(USERNAME, PASSWORD)
    try:
        yield svc
    finally:
        svc.db.close()


def test_refresh_tokens_are_prefixed_256_bit_random() -> None:
    tokens = {new_refresh_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert REFRESH_TOKEN_PATTERN.match(token)
        body = token.removeprefix("ftr_")
        assert len(base64.urlsafe_b64decode(body + "=")) == 32
        assert looks_like_refresh_token(token)


@pytest.mark.parametrize(
    "value",
    ["", "ftr_", "ftr_short", "xyz_" + "A" * 43, "ftr_" + "A" * 42 + "+", "ftr_" + "A" * 44],
)
def test_shape_check_rejects_garbage(value: str) -> None:
    assert not looks_like_refresh_token(value)


def test_hash_is_sha256() -> None:
    token = new_refresh_token()
    assert hash_refresh_token(token) == hashlib.sha256(token.encode()).digest()


def test_successor_derivation() -> None:
    secret = b"s" * 32
    deriver = SuccessorDeriver(secret)
    parent = new_refresh_token()
    child = deriver.derive(parent)
    assert child == deriver.derive(parent)  # deterministic: the grace window relies on it
    assert looks_like_refresh_token(child)
    mac = hmac.new(secret, parent.encode(), hashlib.sha256).digest()
    assert child == "ftr_" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert SuccessorDeriver(b"t" * 32).derive(parent) != child  # depends on the secret
    assert deriver.derive(new_refresh_token()) != child
    with pytest.raises(ValueError):
        SuccessorDeriver(b"short")


def test_access_token_is_rfc9068(alg_service: TokenService, clock: FakeClock) -> None:
    issued = alg_service.login(username=USERNAME, password=PASSWORD)
    header = jwt.get_unverified_header(issued.access_token)
    key = alg_service.keyring.current()
    assert header == {"typ": "at+jwt", "alg": key.alg, "kid": key.kid}
    assert key.alg == alg_service.settings.signing_alg  # Ed25519, not the polymorphic EdDSA
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid"}
    assert claims["iss"] == "http://issuer.test"
    assert claims["aud"] == "freshtoken-api"
    assert claims["iat"] == int(clock.now())
    assert claims["exp"] == claims["iat"] + 300
    assert claims["sid"] == issued.session_id
    # Signed by the published key.
    public = key.private_key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = jwt.PyJWT()
    # PyJWT itself only knows the polymorphic "EdDSA".
    verifier._jws.register_algorithm("Ed25519", jwt.algorithms.OKPAlgorithm())
    verified = verifier.decode(
        issued.access_token,
        pem,
        algorithms=[key.alg],
        audience="freshtoken-api",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert verified == claims
    more = [alg_service.login(username=USERNAME, password=PASSWORD) for _ in range(3)]
    jtis = {jwt.decode(t.access_token, options={"verify_signature": False})["jti"] for t in more}
    assert len(jtis | {claims["jti"]}) == 4  # unique token ids


def test_decode_rejects_forged_and_expired_tokens(
    sqlite_service: TokenService, clock: FakeClock
) -> None:
    svc = sqlite_service
    token = svc.login(username=USERNAME, password=PASSWORD).access_token
    assert svc.decode_access_token(token)["sub"]  # type: ignore[index]
    head, body, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = json.dumps({**claims, "sub": "mallory"}).encode()
    forged_body = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert svc.decode_access_token(f"{head}.{forged_body}.{sig}") is None
    assert svc.decode_access_token(f"{head}.{body}.") is None
    assert svc.decode_access_token("garbage") is None
    assert svc.decode_access_token("") is None
    # alg=none and HMAC keyed with the public key are refused.
    kid = svc.keyring.current().kid
    none_token = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    assert svc.decode_access_token(none_token) is None
    public_jwk = svc.keyring.current().public_jwk
    hs_token = jwt.encode(
        claims, str(public_jwk).encode() * 2, algorithm="HS256", headers={"kid": kid}
    )
    assert svc.decode_access_token(hs_token) is None
    # Wrong audience / issuer, even with a good signature.
    key = svc.keyring.current()
    for override in ({"aud": "someone-else"}, {"iss": "http://evil.test"}):
        other = jwt.encode(
            {**claims, **override}, key.private_key, algorithm=key.alg, headers={"kid": key.kid}
        )
        assert svc.decode_access_token(other) is None
    clock.advance(300)
    assert svc.decode_access_token(token) is None  # exp is exclusive


def test_ed25519_uses_the_fully_specified_name(tmp_path, clock: FakeClock) -> None:
    svc = build_service(make_settings(f"sqlite:///{tmp_path}/e.db", signing_alg="Ed25519"), clock)
    try:
        svc.bootstrap()
        jwk = svc.keyring.jwks(clock.now())["keys"][0]
        assert jwk["alg"] == "Ed25519" and jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    finally:
        svc.db.close()
