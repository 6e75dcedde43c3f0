"""Verifier: the happy paths, claims, scopes, algorithms, keys and the verified-token cache."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from verify_helpers import AUDIENCE, ISSUER, Minter, SigningKey, b64, b64json, new_key

from freshtoken.errors import ConfigurationError, InsufficientScope, InvalidToken
from freshtoken.testing import FakeClock
from freshtoken.verify import AccessTokenClaims, KeySet, VerificationKey, Verifier


def make_verifier(clock: FakeClock, jwks: dict[str, Any], **kw: Any) -> Verifier:
    return Verifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks, clock=clock, **kw)


def code_of(verifier: Verifier, token: Any) -> str:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    return info.value.code


@pytest.mark.parametrize("key_name", ["es_key", "rs_key", "ed_key"])
def test_valid_token_for_each_algorithm(request, clock, jwks, key_name):
    key: SigningKey = request.getfixturevalue(key_name)
    minter = Minter(clock, key)
    token = minter.token(sub="alice", scope="read write admin", jti="j-1")
    claims = make_verifier(clock, jwks).verify(token)
    assert isinstance(claims, AccessTokenClaims)
    assert claims.sub == "alice"
    assert claims.iss == ISSUER
    assert claims.aud == (AUDIENCE,)
    assert claims.jti == "j-1"
    assert claims.client_id == "default"
    assert claims.sid == "session-1"
    assert claims.scopes == frozenset({"read", "write", "admin"})
    assert claims.scope == "admin read write"
    assert claims.exp == int(clock.now()) + 300
    assert claims.raw["scope"] == "read write admin"
    with pytest.raises(TypeError):
        claims.raw["sub"] = "mallory"  # type: ignore[index]


def test_tokens_made_by_pyjwt_verify(clock, jwks, es_key, ed_key):
    """Interop: PyJWT-encoded tokens (with our own PyJWS instance for Ed25519)."""
    encoder = jwt.PyJWT()
    claims = Minter(clock, es_key).claims()
    es = encoder.encode(claims, es_key.private, "ES256", headers={"kid": "es-1", "typ": "at+jwt"})
    jws = jwt.PyJWS()
    jws.register_algorithm("Ed25519", jwt.algorithms.OKPAlgorithm())
    ed = jws.encode(
        json.dumps(claims).encode(),
        ed_key.private,
        "Ed25519",
        headers={"kid": "ed-1", "typ": "at+jwt"},
    )
    verifier = make_verifier(clock, jwks)
    assert verifier.verify(es).sub == "user-1"
    assert verifier.verify(ed).sub == "user-1"
    assert "Ed25519" not in jwt.PyJWS().get_algorithms()  # the global instance is untouched


def test_client_credentials_token_without_sid(clock, jwks, minter):
    claims = make_verifier(clock, jwks).verify(minter.token(sid=..., sub="svc"))
    assert claims.sid is None


def test_token_without_scope_has_no_scopes(clock, jwks, minter):
    verifier = make_verifier(clock, jwks)
    claims = verifier.verify(minter.token(scope=...))
    assert claims.scopes == frozenset()
    with pytest.raises(InsufficientScope):
        verifier.verify(minter.token(scope=...), required_scopes=["read"])


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+JWT"])
def test_rfc9068_type_values(clock, jwks, minter, typ):
    assert make_verifier(clock, jwks).verify(minter.token(header={"typ": typ})).sub


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt2", "", 1, None])
def test_other_types_are_wrong_type(clock, jwks, minter, typ):
    token = (
        minter.token(header={"typ": typ}) if typ is not None else minter.token(drop_header=("typ",))
    )
    assert code_of(make_verifier(clock, jwks), token) == "wrong_type"


def test_scopes_required(clock, jwks, minter):
    verifier = make_verifier(clock, jwks)
    token = minter.token(scope="read write")
    assert verifier.verify(token, required_scopes={"read"}).sub == "user-1"
    assert verifier.verify(token, required_scopes=("read", "write")).sub == "user-1"
    with pytest.raises(InsufficientScope) as info:
        verifier.verify(token, required_scopes=("read", "admin"))
    assert info.value.required == {"read", "admin"}
    assert "admin" in str(info.value)
    # Still checked when the token comes out of the cache.
    assert verifier.cache_len == 1
    with pytest.raises(InsufficientScope):
        verifier.verify(token, required_scopes=("admin",))


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"])
def test_missing_required_claim(clock, jwks, minter, claim):
    token = minter.token(**{claim: ...})
    assert code_of(make_verifier(clock, jwks), token) == "missing_claim"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "tomorrow"},
        {"exp": True},
        {"iat": [1]},
        {"nbf": "soon"},
        {"sub": 42},
        {"iss": None},
        {"client_id": {"a": 1}},
        {"aud": 5},
        {"aud": ["ok", 5]},
        {"scope": ["read"]},
        {"sid": 7},
        {"exp": 1e999},
    ],
)
def test_claims_of_the_wrong_type_are_malformed(clock, jwks, minter, claims):
    token = minter.token(**claims)
    assert code_of(make_verifier(clock, jwks), token) in {"malformed", "missing_claim"}


def test_nan_exp_is_refused(clock, jwks, es_key):
    header = b64json({"typ": "at+jwt", "alg": "ES256", "kid": "es-1"})
    body = json.dumps(Minter(clock, es_key).claims()).replace(
        f'"exp": {int(clock.now()) + 300}', '"exp": NaN'
    )
    signing_input = f"{header}.{b64(body.encode())}"
    token = f"{signing_input}.{b64(es_key.sign(signing_input.encode()))}"
    assert code_of(make_verifier(clock, jwks), token) == "malformed"


def test_audience_list_and_multiple_configured_audiences(clock, jwks, minter):
    verifier = Verifier(issuer=ISSUER, audience=["other", AUDIENCE], keys=jwks, clock=clock)
    assert verifier.verify(minter.token(aud=["x", AUDIENCE])).aud == ("x", AUDIENCE)
    assert verifier.verify(minter.token(aud="other")).aud == ("other",)
    assert code_of(verifier, minter.token(aud=[])) == "wrong_audience"


def test_eddsa_name_needs_explicit_configuration(clock, jwks, ed_key):
    token = Minter(clock, ed_key).token(header={"alg": "EdDSA"})
    assert code_of(make_verifier(clock, jwks), token) == "wrong_algorithm"
    verifier = make_verifier(clock, jwks, algorithms=["ES256", "Ed25519", "EdDSA"])
    assert verifier.verify(token).sub == "user-1"


def test_algorithm_allow_list_restricts(clock, jwks, rs_key, es_key):
    verifier = make_verifier(clock, jwks, algorithms=["ES256"])
    assert code_of(verifier, Minter(clock, rs_key).token()) == "wrong_algorithm"
    assert verifier.verify(Minter(clock, es_key).token()).sub == "user-1"


def test_key_is_bound_to_its_algorithm(clock, jwks, es_key, rs_key):
    # An RS256 signature presented under the EC key's kid.
    token = Minter(clock, rs_key).token(header={"kid": es_key.kid})
    assert code_of(make_verifier(clock, jwks), token) == "wrong_algorithm"


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["ES256", "HS512"], [], ["PS256"]])
def test_unsafe_or_unknown_algorithms_cannot_be_configured(jwks, algorithms):
    with pytest.raises(ConfigurationError):
        Verifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks, algorithms=algorithms)


def test_configuration_errors(jwks):
    with pytest.raises(ConfigurationError):
        Verifier(issuer="", audience=AUDIENCE, keys=jwks)
    with pytest.raises(ConfigurationError):
        Verifier(issuer=ISSUER, audience=[], keys=jwks)
    with pytest.raises(ConfigurationError):
        Verifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks, jwks_url="https://x/jwks")
    with pytest.raises(ConfigurationError):
        Verifier(issuer=ISSUER, audience=AUDIENCE, keys=42)  # type: ignore[arg-type]


def test_keyset_skips_unusable_keys(es_key, ed_key):
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    jwks = {
        "keys": [
            json.loads(jwt.algorithms.ECAlgorithm.to_jwk(p384)) | {"kid": "p384"},
            json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(small_rsa)) | {"kid": "rsa1024"},
            es_key.jwk(kid="enc", use="enc"),
            es_key.jwk(kid="wrongalg", alg="RS256"),
            es_key.jwk(kid="hmac", alg="HS256"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
            es_key.jwk(kid="badx", x="!!!"),
            "not a jwk",
            ed_key.jwk(kid="ok-ed"),
            es_key.jwk(kid="ok-es", key_ops=["verify"]),
        ]
    }
    keys = KeySet.from_jwks(jwks)
    assert keys.kids == {"ok-ed", "ok-es"}
    assert keys.algorithms == {"Ed25519", "ES256"}


def test_private_jwk_members_are_ignored(es_key):
    private_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(es_key.private)) | {"kid": "p"}
    key = VerificationKey.from_jwk(private_jwk)
    assert isinstance(key.public_key, ec.EllipticCurvePublicKey)


def test_keyset_from_cryptography_keys(clock, es_key, ed_key):
    keys = KeySet.from_keys({"es-1": es_key.public, "ed-1": ed_key.public})
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, clock=clock)
    assert verifier.verify(Minter(clock, ed_key).token()).sub == "user-1"
    assert verifier.verify(Minter(clock, es_key).token()).sub == "user-1"


def test_token_without_kid_matches_only_a_single_key(clock, es_key, jwks):
    token = Minter(clock, es_key).token(drop_header=("kid",))
    single = Verifier(issuer=ISSUER, audience=AUDIENCE, keys={"keys": [es_key.jwk()]}, clock=clock)
    assert single.verify(token).sub == "user-1"
    assert code_of(make_verifier(clock, jwks), token) == "unknown_key"


# --- the verified-token cache ---------------------------------------------------------


class CountingKeys:
    """A key source that counts lookups (each uncached verification does one)."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.lookups = 0

    def get_key(self, kid: str | None) -> VerificationKey | None:
        self.lookups += 1
        return self.keys.get(kid)

    async def aget_key(self, kid: str | None) -> VerificationKey | None:
        self.lookups += 1
        return self.keys.get(kid)


async def test_cache_hit_skips_the_signature_check(clock, jwks, minter):
    source = CountingKeys(KeySet.from_jwks(jwks))
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, keys=source, clock=clock)
    token = minter.token()
    first = verifier.verify(token)
    for _ in range(5):
        assert verifier.verify(token) is first
        assert await verifier.averify(token) is first
    assert source.lookups == 1


def test_cache_entry_expires_with_the_token(clock, jwks, minter):
    source = CountingKeys(KeySet.from_jwks(jwks))
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, keys=source, clock=clock, leeway=30)
    token = minter.token()
    verifier.verify(token)
    clock.advance(300 + 29)
    assert verifier.verify(token).sub == "user-1"  # inside the leeway: still a hit
    assert source.lookups == 1
    clock.advance(1)
    assert code_of(verifier, token) == "expired"


def test_cache_is_bounded(clock, jwks, minter):
    verifier = make_verifier(clock, jwks, cache_size=3)
    tokens = [minter.token() for _ in range(10)]
    for token in tokens:
        verifier.verify(token)
        assert verifier.cache_len <= 3
    assert verifier.cache_len == 3
    for token in tokens:  # evicted ones verify again, uncached
        assert verifier.verify(token).sub == "user-1"


def test_cache_can_be_disabled(clock, jwks, minter):
    source = CountingKeys(KeySet.from_jwks(jwks))
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, keys=source, clock=clock, cache_size=0)
    token = minter.token()
    verifier.verify(token)
    verifier.verify(token)
    assert source.lookups == 2
    assert verifier.cache_len == 0


def test_failed_tokens_are_not_cached(clock, jwks, minter, es_key):
    verifier = make_verifier(clock, jwks)
    other = new_key("ES256", es_key.kid)
    bad = minter.token(key=other)
    for _ in range(3):
        assert code_of(verifier, bad) == "bad_signature"
    assert verifier.cache_len == 0


def test_loader_callable_sees_rotated_keys(clock, es_key):
    """A server feeding its own key ring: a new kid is picked up without restart."""
    ring = {"keys": [es_key.jwk()]}
    calls = []

    def current_jwks() -> dict[str, Any]:
        calls.append(1)
        return ring

    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, keys=current_jwks, clock=clock)
    assert verifier.verify(Minter(clock, es_key).token()).sub == "user-1"
    new = new_key("ES256", "es-2")
    ring = {"keys": [es_key.jwk(), new.jwk()]}
    clock.advance(2)
    assert verifier.verify(Minter(clock, new).token()).sub == "user-1"
    assert len(calls) == 2
