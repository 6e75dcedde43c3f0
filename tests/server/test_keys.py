"""Signing keys: in the database, private parts encrypted, rotation keeps old keys published."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from freshtoken.errors import ConfigurationError
from freshtoken.server.app import build_service
from freshtoken.server.keys import KeyRing, load_secret
from freshtoken.server.service import TokenService
from freshtoken.server.storage.tables import signing_keys
from freshtoken.testing import FakeClock

from .helpers import PASSWORD, USERNAME, audit_rows, dump_database, make_settings


def test_private_keys_are_encrypted_at_rest(service: TokenService) -> None:
    service.rotate_signing_key("RS256")
    service.rotate_signing_key("Ed25519")
    with service.db.engine.connect() as conn:
        rows = conn.execute(select(signing_keys)).all()
    assert len(rows) == 3
    values = dump_database(service.db)
    for key in service.keyring.all_keys():
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        der = key.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        body = b"".join(pem.splitlines()[1:-1])  # the base64 lines
        for value in values:
            if isinstance(value, bytes | memoryview | str):
                raw = value.encode() if isinstance(value, str) else bytes(value)
                assert b"PRIVATE KEY" not in raw
                assert der not in raw
                assert body[:40] not in raw
        assert '"d"' not in str(key.public_jwk) and "d" not in key.public_jwk


def test_sqlite_file_holds_no_private_key(tmp_path: Path, clock: FakeClock) -> None:
    db_file = tmp_path / "k.db"
    svc = build_service(make_settings(f"sqlite:///{db_file}"), clock)
    svc.bootstrap()
    svc.db.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("k.db*"))
    assert b"PRIVATE KEY" not in raw
    assert b"BEGIN" not in raw
    con = sqlite3.connect(db_file)
    (blob,) = con.execute("SELECT private_key_enc FROM signing_keys").fetchone()
    con.close()
    assert len(blob) > 12 + 16  # nonce || AES-GCM ciphertext+tag


def test_wrong_secret_cannot_load_keys(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    build_service(make_settings(url), clock).bootstrap()
    other = build_service(make_settings(url, secret_key="another-secret-" + "z" * 40), clock)
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        other.bootstrap()


def test_secret_must_be_long_enough() -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        load_secret("short", None, "sqlite:///x.db")


def test_rotation_new_key_signs_old_key_stays_published(
    service: TokenService, clock: FakeClock
) -> None:
    old_kid = service.keyring.current().kid
    before = service.login(username=USERNAME, password=PASSWORD)
    assert jwt.get_unverified_header(before.access_token)["kid"] == old_kid

    clock.advance(5)
    new_kid = service.rotate_signing_key()
    assert new_kid != old_kid
    # Published at once, signing only after the activation delay, so verifiers that
    # cache the JWKS know the key before the first token signed with it arrives.
    kids = {k["kid"] for k in service.keyring.jwks(clock.now())["keys"]}
    assert kids == {old_kid, new_kid}
    delay = service.settings.key_activation_delay
    if delay > 0:
        pending = service.login(username=USERNAME, password=PASSWORD)
        assert jwt.get_unverified_header(pending.access_token)["kid"] == old_kid
    clock.advance(delay)
    after = service.login(username=USERNAME, password=PASSWORD)
    assert jwt.get_unverified_header(after.access_token)["kid"] == new_kid

    kids = {k["kid"] for k in service.keyring.jwks(clock.now())["keys"]}
    assert kids == {old_kid, new_kid}
    assert service.decode_access_token(before.access_token) is not None  # still verifies
    assert len(audit_rows(service.db, "signing_key_rotated")) == 1

    # Another replica (a second service on the same database) picks the rotation up.
    replica = build_service(service.settings, clock)
    try:
        replica.reload_keys()
        assert replica.keyring.current(clock.now()).kid == new_kid
        assert replica.decode_access_token(after.access_token) is not None
    finally:
        replica.db.close()

    # The retired key leaves the JWKS once every token it signed has expired.
    keep_for = max(service.settings.key_retire_grace, 300 + service.settings.leeway)
    clock.advance(keep_for + 1)
    kids = {k["kid"] for k in service.keyring.jwks(clock.now())["keys"]}
    assert kids == {new_kid}


def test_changing_the_configured_algorithm_adds_a_key(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path}/alg.db"
    first = build_service(make_settings(url), clock)
    first.bootstrap()
    es_kid = first.keyring.current().kid
    second = build_service(make_settings(url, signing_alg="RS256"), clock)
    second.bootstrap()
    assert second.keyring.current().alg == "RS256"
    published = {k["kid"]: k["alg"] for k in second.keyring.jwks(clock.now())["keys"]}
    assert published[es_kid] == "ES256" and "RS256" in published.values()
    second.bootstrap()  # idempotent: no third key
    assert len(second.keyring.all_keys()) == 2


def test_unknown_algorithm_is_refused(sqlite_service: TokenService) -> None:
    with pytest.raises(ConfigurationError, match="unsupported signing algorithm"):
        sqlite_service.rotate_signing_key("HS256")
    assert len(sqlite_service.keyring.all_keys()) == 1


def test_keyring_without_keys_says_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="keys rotate"):
        KeyRing(b"x" * 32).current()
