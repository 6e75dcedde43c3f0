"""Signing keys: generated, encrypted at rest in the database, shared by every replica.

The private part of each key is stored AES-GCM-encrypted under a key derived
(HKDF) from ``FRESHTOKEN_SECRET_KEY``. Every worker loads the same key set, so
all replicas sign with the newest key and publish the same JWKS. A rotated-out
key keeps verifying (stays in the JWKS) until every token it signed has expired.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import Connection, insert, select, update

from freshtoken.errors import ConfigurationError
from freshtoken.server.jws import JwtSigner
from freshtoken.server.storage.tables import signing_keys

log = logging.getLogger("freshtoken.server")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


# --- the server secret ------------------------------------------------------


def load_secret(secret_key: str | None, secret_key_file: str | None, database_url: str) -> bytes:
    """The configured secret, or a generated local one (with a loud warning)."""
    if secret_key:
        if len(secret_key) < 32:
            raise ConfigurationError("FRESHTOKEN_SECRET_KEY must be at least 32 characters")
        return secret_key.encode("utf-8")
    path = Path(secret_key_file) if secret_key_file else _default_secret_path(database_url)
    path = path.expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        log.warning(
            "FRESHTOKEN_SECRET_KEY is not set: generated a local secret at %s. Every replica "
            "needs the same secret: set FRESHTOKEN_SECRET_KEY in production.",
            path,
        )
    return path.read_text().strip().encode("utf-8")


def _default_secret_path(database_url: str) -> Path:
    if database_url.startswith("sqlite:///") and database_url != "sqlite:///:memory:":
        return (
            Path(database_url[len("sqlite:///") :]).expanduser().with_name("freshtoken-secret.key")
        )
    return Path("freshtoken-secret.key")


def subkey(secret: bytes, purpose: str) -> bytes:
    """Independent 32-byte keys for each purpose, derived from the one secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        secret
    )


# --- keys ---------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: PrivateKey
    public_jwk: dict[str, Any]
    created_at: float
    retired_at: float | None
    expires_at: float | None


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ConfigurationError(f"unsupported signing algorithm {alg!r}: use ES256, RS256 or Ed25519")


def public_jwk(private_key: PrivateKey, kid: str, alg: str) -> dict[str, Any]:
    public = private_key.public_key()
    jwk: dict[str, Any]
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


class KeyRing:
    """The signing keys, parsed once; the app re-reads them every few seconds so a
    rotation done by the CLI or another replica is picked up without a restart."""

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(subkey(secret, "freshtoken signing-key encryption"))
        self._keys: list[SigningKey] = []
        self._signers: dict[str, JwtSigner] = {}
        self.generation = 0  # rises on every reload: caches built from the keys compare it
        self._lock = threading.Lock()

    # encryption at rest
    def _encrypt(self, pem: bytes, kid: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, pem, kid.encode())

    def _decrypt(self, blob: bytes, kid: str) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], kid.encode())
        except Exception:
            raise ConfigurationError(
                f"cannot decrypt signing key {kid}: FRESHTOKEN_SECRET_KEY differs from the one "
                "that encrypted it"
            ) from None

    def create_key(self, conn: Connection, alg: str, now: float) -> SigningKey:
        private_key = generate_private_key(alg)
        kid = uuid.uuid4().hex[:16]
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        jwk = public_jwk(private_key, kid, alg)
        conn.execute(
            insert(signing_keys).values(
                kid=kid,
                alg=alg,
                private_key_enc=self._encrypt(pem, kid),
                public_jwk=json.dumps(jwk),
                created_at=now,
            )
        )
        return SigningKey(kid, alg, private_key, jwk, now, None, None)

    def rotate(
        self, conn: Connection, alg: str, now: float, keep_for: float, activate_in: float = 0.0
    ) -> SigningKey:
        """A new key, published at once but signing only ``activate_in`` seconds from now,
        so verifiers that cache the JWKS (and throttle refetches) already know it when
        the first token signed with it arrives. The old keys sign until then and stay
        published for ``keep_for`` seconds more. ``created_at`` is when a key starts
        signing."""
        switch_at = now + activate_in
        conn.execute(
            update(signing_keys)
            .where(signing_keys.c.retired_at.is_(None))
            .values(retired_at=switch_at, expires_at=switch_at + keep_for)
        )
        return self.create_key(conn, alg, switch_at)

    def ensure_key(self, conn: Connection, alg: str, now: float) -> None:
        """Create the first key on a fresh database, or a new one when the configured
        algorithm changed (the old key stays published until its tokens expire)."""
        active = conn.execute(
            select(signing_keys.c.alg).where(signing_keys.c.retired_at.is_(None))
        ).all()
        if not any(row.alg == alg for row in active):
            self.rotate(conn, alg, now, keep_for=86_400)

    def load(self, conn: Connection) -> list[SigningKey]:
        rows = conn.execute(select(signing_keys).order_by(signing_keys.c.created_at)).all()
        keys = []
        for row in rows:
            pem = self._decrypt(row.private_key_enc, row.kid)
            private_key = serialization.load_pem_private_key(pem, password=None)
            keys.append(
                SigningKey(
                    row.kid,
                    row.alg,
                    private_key,  # type: ignore[arg-type]
                    json.loads(row.public_jwk),
                    row.created_at,
                    row.retired_at,
                    row.expires_at,
                )
            )
        return keys

    def signer(self, key: SigningKey) -> JwtSigner:
        """The (cached) lean encoder for ``key``."""
        signer = self._signers.get(key.kid)
        if signer is None:
            signer = self._signers[key.kid] = JwtSigner(key.private_key, key.alg, key.kid)
        return signer

    def reload(self, conn: Connection) -> None:
        """Re-read the key set (every replica does this periodically)."""
        keys = self.load(conn)
        with self._lock:
            self._keys = keys
            self.generation += 1

    def current(self, now: float | None = None) -> SigningKey:
        """The key that signs at ``now`` (without ``now``: the newest, even if it is
        still waiting for its activation time)."""
        live = []
        if now is not None:
            live = [
                k
                for k in self._keys
                if k.created_at <= now and (k.retired_at is None or k.retired_at > now)
            ]
        if not live:
            live = [k for k in self._keys if k.retired_at is None]
        if not live:
            raise ConfigurationError("no active signing key: run `freshtoken keys rotate`")
        return max(live, key=lambda k: k.created_at)

    def published(self, now: float) -> list[SigningKey]:
        return [k for k in self._keys if k.expires_at is None or k.expires_at > now]

    def jwks(self, now: float) -> dict[str, Any]:
        return {"keys": [k.public_jwk for k in self.published(now)]}

    def all_keys(self) -> list[SigningKey]:
        return list(self._keys)
