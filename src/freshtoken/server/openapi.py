"""The OpenAPI 3.1 document of the HTTP API (served at ``/openapi.json``).

It describes what the server really does, closely enough that Schemathesis can
fuzz every operation against it (tests/security/test_schemathesis.py): the
form-encoded OAuth endpoints, the JSON ``/auth/*`` routes with their cookie
mode (cookie, CSRF header, Origin), every status code a route can answer, the
error shape, and the headers clients rely on (``Cache-Control: no-store`` on
token answers, ``Retry-After`` on 429/503, ``WWW-Authenticate`` on 401s).
Links (login → refresh → refresh …) let the stateful phase walk a session.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from freshtoken.server.tokens import REFRESH_TOKEN_PATTERN

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
ERROR: Schema = {
    "type": "object",
    "description": "RFC 6749 §5.2 error. `error_description` never contains a token.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "examples": [
                "invalid_request",
                "invalid_grant",
                "invalid_client",
                "unsupported_grant_type",
                "invalid_scope",
                "unauthorized_client",
                "unsupported_token_type",
                "csrf_rejected",
                "rate_limited",
                "temporarily_unavailable",
                "invalid_token",
            ],
        },
        "error_description": {"type": "string"},
    },
}
TOKEN: Schema = {
    "type": "object",
    "description": (
        "Token answer. `refresh_token` is absent for client_credentials and, with "
        "cookie delivery, from the /auth/* bodies (it travels in the cookie)."
    ),
    "required": ["access_token", "token_type", "expires_in", "scope"],
    "properties": {
        "access_token": {"type": "string", "description": "RFC 9068 JWT (typ at+jwt)"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer", "minimum": 1},
        "refresh_token": {
            "type": "string",
            "pattern": REFRESH_TOKEN_PATTERN.pattern,
            "description": "opaque, prefix `ftr_` (for secret scanners), 256 bits",
        },
        "scope": {"type": "string"},
    },
}
TOKEN_REF: Schema = {"$ref": "#/components/schemas/Token"}
JWKS: Schema = {
    "type": "object",
    "required": ["keys"],
    "properties": {
        "keys": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kty", "kid", "alg", "use"],
                "properties": {
                    "kty": {"type": "string", "enum": ["EC", "RSA", "OKP"]},
                    "kid": STR,
                    "alg": {"type": "string", "enum": ["ES256", "RS256", "Ed25519", "EdDSA"]},
                    "use": {"type": "string", "enum": ["sig"]},
                },
            },
        }
    },
}
METADATA: Schema = {
    "type": "object",
    "required": [
        "issuer",
        "token_endpoint",
        "jwks_uri",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
    ],
    "properties": {
        "issuer": STR,
        "token_endpoint": STR,
        "revocation_endpoint": STR,
        "introspection_endpoint": STR,
        "jwks_uri": STR,
        "grant_types_supported": {"type": "array", "items": STR},
        "token_endpoint_auth_methods_supported": {"type": "array", "items": STR},
        "scopes_supported": {"type": "array", "items": STR},
    },
}
INTROSPECTION: Schema = {
    "type": "object",
    "required": ["active"],
    "properties": {
        "active": {"type": "boolean"},
        "token_type": {"type": "string", "enum": ["access_token", "refresh_token"]},
        "scope": STR,
        "client_id": STR,
        "sub": STR,
        "sid": STR,
        "iss": STR,
        "aud": {"oneOf": [STR, {"type": "array", "items": STR}]},
        "jti": STR,
        "exp": {"type": "integer"},
        "iat": {"type": "integer"},
    },
}
STATUS: Schema = {"type": "object", "required": ["status"], "properties": {"status": STR}}
READINESS_DOWN: Schema = {
    "type": "object",
    "required": ["status", "reason"],
    "properties": {"status": {"type": "string", "enum": ["unavailable"]}, "reason": STR},
}

_HEADER_NO_STORE = {
    "Cache-Control": {
        "required": True,
        "description": "always `no-store` on token answers and their errors",
        "schema": {"type": "string", "pattern": "no-store"},
    },
    "Pragma": {"required": True, "schema": {"type": "string", "enum": ["no-cache"]}},
}
_HEADER_RETRY_AFTER = {
    "Retry-After": {
        "required": True,
        "description": "seconds",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_HEADER_SET_COOKIE = {
    "Set-Cookie": {
        "required": False,
        "description": (
            "cookie delivery only: `freshtoken_rt=…; HttpOnly; Secure; SameSite=Strict; "
            "Path=/auth; Max-Age=<session remaining>` (cleared on logout and on invalid_grant)"
        ),
        "schema": STR,
    }
}

_ERROR_TEXT = {
    400: "invalid_request (malformed body, missing or over-long parameter, repeated "
    "parameter), invalid_grant, unsupported_grant_type, invalid_scope, unauthorized_client",
    401: "invalid_client (WWW-Authenticate: Basic when Basic credentials were sent)",
    403: "csrf_rejected: a cookie request without X-Freshtoken-CSRF or from an origin not "
    "on the allow-list",
    404: "not found",
    408: "invalid_request: the body did not arrive within 10 s (a head within 10 s)",
    413: "invalid_request: the body is larger than FRESHTOKEN_MAX_BODY_BYTES (16 KiB)",
    415: "invalid_request: wrong Content-Type",
    431: "invalid_request: the request line and headers are larger than 64 KiB",
    429: "rate_limited (login per username / per IP, refresh per session / per IP)",
    503: "temporarily_unavailable: the database is unreachable; retry after Retry-After",
}


def _error(code: int, *, no_store: bool = True) -> Schema:
    headers: Schema = dict(_HEADER_NO_STORE) if no_store else {}
    if code in (429, 503):
        headers.update(_HEADER_RETRY_AFTER)
    answer: Schema = {
        "description": _ERROR_TEXT.get(code, "error"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _errors(*codes: int) -> Schema:
    return {str(code): _error(code) for code in codes}


def _ok(
    schema: Schema,
    description: str = "ok",
    *,
    headers: Schema | None = None,
    links: Schema | None = None,
    media_type: str = "application/json",
) -> Schema:
    answer: Schema = {"description": description, "content": {media_type: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    if links:
        answer["links"] = links
    return {"200": answer}


def _form(properties: Schema, required: list[str]) -> Schema:
    return {
        "required": True,
        "description": "application/x-www-form-urlencoded, UTF-8, at most 16 KiB; "
        "a repeated parameter is invalid_request",
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


def _json_body(properties: Schema, required: list[str], *, needed: bool = True) -> Schema:
    return {
        "required": needed,
        "description": "application/json object, at most 16 KiB",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


_CLIENT_AUTH: list[Schema] = [{}, {"clientBasic": []}]
_COOKIE_PARAMS = [
    {
        "name": "freshtoken_rt",
        "in": "cookie",
        "required": False,
        "description": "the refresh token, in cookie delivery",
        "schema": STR,
    },
    {
        "name": "X-Freshtoken-CSRF",
        "in": "header",
        "required": False,
        "description": "selects cookie delivery; requires an allowed Origin",
        "schema": {"type": "string", "examples": ["1"]},
    },
    {
        "name": "Origin",
        "in": "header",
        "required": False,
        "description": "must be the server's own origin or in FRESHTOKEN_CORS_ORIGINS",
        "schema": STR,
    },
]
_USERNAME = {"type": "string", "examples": ["alice"]}
_PASSWORD = {"type": "string", "examples": ["correct horse battery staple"]}
_REFRESH = {"type": "string", "examples": ["ftr_" + "A" * 43]}

# OpenAPI links: what the stateful phase may feed from one answer into the next call.
_REFRESH_LINKS = {
    "RefreshWithToken": {
        "operationId": "authRefresh",
        "requestBody": {"refresh_token": "$response.body#/refresh_token"},
    },
    "LogoutWithToken": {
        "operationId": "authLogout",
        "requestBody": {"refresh_token": "$response.body#/refresh_token"},
    },
}
_OAUTH_LINKS = {
    "RevokeRefreshToken": {
        "operationId": "oauthRevoke",
        "requestBody": {"token": "$response.body#/refresh_token", "client_id": "default"},
    },
}


def build_openapi() -> Schema:
    token_200 = _ok(TOKEN_REF, headers=_HEADER_NO_STORE, links=_OAUTH_LINKS)
    auth_200 = _ok(
        TOKEN_REF, headers={**_HEADER_NO_STORE, **_HEADER_SET_COOKIE}, links=_REFRESH_LINKS
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "freshtoken",
            "version": "0.1.0",
            "description": "Access tokens and rotating refresh tokens. See docs/http-api.md.",
        },
        "paths": {
            "/oauth/token": {
                "post": {
                    "operationId": "oauthToken",
                    "summary": "RFC 6749 token endpoint (password, refresh_token, "
                    "client_credentials)",
                    "security": _CLIENT_AUTH,
                    "requestBody": _form(
                        {
                            "grant_type": {
                                "type": "string",
                                "enum": ["password", "refresh_token", "client_credentials"],
                            },
                            "username": _USERNAME,
                            "password": _PASSWORD,
                            "refresh_token": _REFRESH,
                            "scope": {"type": "string", "examples": ["read"]},
                            "client_id": {"type": "string", "examples": ["default"]},
                            "client_secret": STR,
                        },
                        ["grant_type"],
                    ),
                    "responses": {**token_200, **_errors(400, 401, 408, 413, 415, 429, 431, 503)},
                }
            },
            "/oauth/revoke": {
                "post": {
                    "operationId": "oauthRevoke",
                    "summary": "RFC 7009 revocation (revoking a refresh token ends its session)",
                    "security": _CLIENT_AUTH,
                    "requestBody": _form(
                        {
                            "token": STR,
                            "token_type_hint": {
                                "type": "string",
                                "enum": ["access_token", "refresh_token"],
                            },
                            "client_id": {"type": "string", "examples": ["default"]},
                            "client_secret": STR,
                        },
                        ["token"],
                    ),
                    "responses": {
                        **_ok({"type": "object"}, headers=_HEADER_NO_STORE),
                        **_errors(400, 401, 408, 413, 415, 431, 503),
                    },
                }
            },
            "/oauth/introspect": {
                "post": {
                    "operationId": "oauthIntrospect",
                    "summary": "RFC 7662 introspection (confidential clients only)",
                    "security": _CLIENT_AUTH,
                    "requestBody": _form(
                        {
                            "token": STR,
                            "token_type_hint": STR,
                            "client_id": STR,
                            "client_secret": STR,
                        },
                        ["token"],
                    ),
                    "responses": {
                        **_ok(INTROSPECTION, headers=_HEADER_NO_STORE),
                        **_errors(400, 401, 408, 413, 415, 431, 503),
                    },
                }
            },
            "/auth/login": {
                "post": {
                    "operationId": "authLogin",
                    "summary": "JSON login (cookie delivery with X-Freshtoken-CSRF + Origin)",
                    "parameters": _COOKIE_PARAMS,
                    "requestBody": _json_body(
                        {
                            "username": _USERNAME,
                            "password": _PASSWORD,
                            "client_id": STR,
                            "scope": STR,
                        },
                        ["username", "password"],
                    ),
                    "responses": {
                        **auth_200,
                        **_errors(400, 401, 403, 408, 413, 415, 429, 431, 503),
                    },
                }
            },
            "/auth/refresh": {
                "post": {
                    "operationId": "authRefresh",
                    "summary": "JSON refresh; in cookie mode the token comes from the cookie",
                    "parameters": _COOKIE_PARAMS,
                    "requestBody": _json_body(
                        {"refresh_token": _REFRESH, "client_id": STR, "scope": STR},
                        [],
                        needed=False,
                    ),
                    "responses": {
                        **auth_200,
                        **_errors(400, 401, 403, 408, 413, 415, 429, 431, 503),
                    },
                }
            },
            "/auth/logout": {
                "post": {
                    "operationId": "authLogout",
                    "summary": "End the session (idempotent)",
                    "parameters": _COOKIE_PARAMS,
                    "requestBody": _json_body(
                        {"refresh_token": _REFRESH, "client_id": STR}, [], needed=False
                    ),
                    "responses": {
                        **_ok(
                            {
                                "type": "object",
                                "required": ["status"],
                                "properties": {
                                    "status": {"type": "string", "enum": ["logged_out"]}
                                },
                            },
                            headers={**_HEADER_NO_STORE, **_HEADER_SET_COOKIE},
                        ),
                        **_errors(400, 401, 403, 408, 413, 415, 431, 503),
                    },
                }
            },
            "/.well-known/jwks.json": {
                "get": {
                    "operationId": "jwks",
                    "summary": "JWKS: current and retired-but-not-expired public keys",
                    "responses": _ok(JWKS),
                }
            },
            "/.well-known/oauth-authorization-server": {
                "get": {
                    "operationId": "metadata",
                    "summary": "RFC 8414 metadata",
                    "responses": _ok(METADATA),
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "this document",
                    "responses": _ok({"type": "object", "required": ["openapi", "paths"]}),
                }
            },
            "/api/me": {
                "get": {
                    "operationId": "apiMe",
                    "summary": "Demo protected resource (RFC 6750 bearer)",
                    "security": [{"bearer": []}],
                    "responses": {
                        **_ok({"type": "object", "required": ["sub", "claims"]}),
                        "401": {
                            "description": "invalid_token (RFC 6750)",
                            "headers": {"WWW-Authenticate": {"required": True, "schema": STR}},
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Error"}
                                }
                            },
                        },
                        "403": _error(403, no_store=False),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": _ok(STR, media_type="text/plain"),
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "liveness: never touches the database",
                    "responses": _ok(STATUS),
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "readiness: the database answers",
                    "responses": {
                        **_ok(STATUS),
                        "503": {
                            "description": "the database is unreachable",
                            "headers": _HEADER_RETRY_AFTER,
                            "content": {"application/json": {"schema": READINESS_DOWN}},
                        },
                    },
                }
            },
            "/demo": {
                "get": {
                    "operationId": "demoPage",
                    "summary": "demo page (strict CSP, no inline script)",
                    "responses": {
                        **_ok(STR, media_type="text/html"),
                        "404": {
                            "description": "demo page not installed",
                            "content": {"text/plain": {"schema": STR}},
                        },
                    },
                }
            },
        },
        "components": {
            "schemas": {"Error": ERROR, "Token": TOKEN},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "clientBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "client_secret_basic (RFC 6749 §2.3.1)",
                },
            },
        },
    }


async def openapi_route(request: Request) -> Response:
    return JSONResponse(build_openapi())
