"""Helpers shared by the verifier tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from freshtoken.testing import FakeClock

ISSUER = "https://auth.test"
AUDIENCE = "https://api.test"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


@dataclass
class SigningKey:
    """A private key, its kid and algorithm, and helpers to sign tokens and publish the JWK."""

    kid: str
    alg: str
    private: Any

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def sign(self, message: bytes) -> bytes:
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.private.sign(message, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.alg == "RS256":
            return self.private.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return self.private.sign(message)  # Ed25519

    def jwk(self, **extra: Any) -> dict[str, Any]:
        if self.alg == "ES256":
            d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.public))
        elif self.alg == "RS256":
            d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.public))
        else:
            d = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.public))
        d.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        d.update(extra)
        return d


def new_key(alg: str, kid: str | None = None) -> SigningKey:
    if alg == "ES256":
        private: Any = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, private)


@dataclass
class Minter:
    """Makes access tokens (and broken ones) the way the freshtoken server does."""

    clock: FakeClock
    key: SigningKey

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock.now())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "user-1",
            "aud": AUDIENCE,
            "exp": now + 300,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "client_id": "default",
            "scope": "read write",
            "sid": "session-1",
        }
        for name, value in overrides.items():
            if value is ...:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(
        self,
        *,
        key: SigningKey | None = None,
        header: dict[str, Any] | None = None,
        drop_header: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        key = key or self.key
        h: dict[str, Any] = {"typ": "at+jwt", "alg": key.alg, "kid": key.kid}
        h.update(header or {})
        for name in drop_header:
            h.pop(name, None)
        signing_input = f"{b64json(h)}.{b64json(self.claims(**claims))}"
        return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


# --- real servers on loopback ------------------------------------------------------------


class LoopbackServer:
    """Runs an ASGI app with uvicorn in a background thread on an ephemeral port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("loopback server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@contextlib.contextmanager
def serve(app: Any) -> Iterator[LoopbackServer]:
    server = LoopbackServer(app).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class FakeAuthServer:
    """What a verifier sees of an auth server: JWKS, RFC 8414 metadata, introspection.

    ``hits`` counts requests per path; ``status`` forces an error answer on the
    JWKS route; ``revoked`` holds tokens introspection calls inactive.
    """

    jwks: dict[str, Any]
    hits: Counter[str] = field(default_factory=Counter)
    status: int = 200
    revoked: set[str] = field(default_factory=set)
    introspect_auth: list[str | None] = field(default_factory=list)
    server: LoopbackServer | None = None
    issuer: str | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def jwks_url(self) -> str:
        return self.url + "/.well-known/jwks.json"

    def app(self) -> Starlette:
        async def jwks_route(request: Request) -> Response:
            self.hits[request.url.path] += 1
            if self.status != 200:
                return JSONResponse({"error": "down"}, status_code=self.status)
            return JSONResponse(self.jwks)

        async def metadata(request: Request) -> Response:
            self.hits[request.url.path] += 1
            return JSONResponse(
                {
                    "issuer": self.issuer or self.url,
                    "jwks_uri": self.url + "/keys/other.json",
                    "introspection_endpoint": self.url + "/oauth/introspect",
                }
            )

        async def huge(request: Request) -> Response:
            self.hits[request.url.path] += 1
            pad = "x" * (1024 * 1024)
            return JSONResponse({"keys": [], "pad": pad})

        async def redirect(request: Request) -> Response:
            self.hits[request.url.path] += 1
            return RedirectResponse(self.url + "/.well-known/jwks.json")

        async def introspect(request: Request) -> Response:
            self.hits[request.url.path] += 1
            self.introspect_auth.append(request.headers.get("authorization"))
            form = await request.form()
            token = str(form.get("token", ""))
            if self.status != 200:
                return JSONResponse({"error": "down"}, status_code=self.status)
            if token in self.revoked:
                return JSONResponse({"active": False})
            return JSONResponse({"active": True, "token_type": "access_token"})

        async def anything(request: Request) -> Response:
            self.hits[request.url.path] += 1
            return JSONResponse(self.jwks)

        return Starlette(
            routes=[
                Route("/.well-known/jwks.json", jwks_route),
                Route("/keys/other.json", jwks_route),
                Route("/.well-known/oauth-authorization-server", metadata),
                Route("/huge.json", huge),
                Route("/redirect.json", redirect),
                Route("/oauth/introspect", introspect, methods=["POST"]),
                Route("/{rest:path}", anything),
            ]
        )
