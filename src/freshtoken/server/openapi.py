"""The OpenAPI 3.1 document of the HTTP API (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
TOKEN = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": "string"},
        "scope": {"type": "string"},
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code in codes
    }


def _json_ok(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}}
    }


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


def _json_body(
    properties: dict[str, Any], required: list[str], needed: bool = True
) -> dict[str, Any]:
    return {
        "required": needed,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


STR = {"type": "string"}
TOKEN_REF = {"$ref": "#/components/schemas/Token"}


def build_openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "freshtoken", "version": "0.1.0"},
        "paths": {
            "/oauth/token": {
                "post": {
                    "summary": "RFC 6749 token endpoint",
                    "requestBody": _form(
                        {
                            "grant_type": {
                                "type": "string",
                                "enum": ["password", "refresh_token", "client_credentials"],
                            },
                            "username": STR,
                            "password": STR,
                            "refresh_token": STR,
                            "scope": STR,
                            "client_id": STR,
                            "client_secret": STR,
                        },
                        ["grant_type"],
                    ),
                    "responses": {**_json_ok(TOKEN_REF), **_errors(400, 401, 413, 415, 429, 503)},
                }
            },
            "/oauth/revoke": {
                "post": {
                    "summary": "RFC 7009 revocation",
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
                        **_json_ok({"type": "object"}),
                        **_errors(400, 401, 413, 415, 503),
                    },
                }
            },
            "/oauth/introspect": {
                "post": {
                    "summary": "RFC 7662 introspection (confidential clients)",
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
                        **_json_ok(
                            {
                                "type": "object",
                                "required": ["active"],
                                "properties": {"active": {"type": "boolean"}},
                            }
                        ),
                        **_errors(400, 401, 413, 415, 503),
                    },
                }
            },
            "/auth/login": {
                "post": {
                    "summary": "JSON login (cookie delivery with X-Freshtoken-CSRF)",
                    "requestBody": _json_body(
                        {"username": STR, "password": STR, "client_id": STR, "scope": STR},
                        ["username", "password"],
                    ),
                    "responses": {
                        **_json_ok(TOKEN_REF),
                        **_errors(400, 401, 403, 413, 415, 429, 503),
                    },
                }
            },
            "/auth/refresh": {
                "post": {
                    "summary": "JSON refresh (with X-Freshtoken-CSRF: from the cookie)",
                    "parameters": [
                        {"name": "freshtoken_rt", "in": "cookie", "required": False, "schema": STR}
                    ],
                    "requestBody": _json_body(
                        {"refresh_token": STR, "client_id": STR, "scope": STR}, [], needed=False
                    ),
                    "responses": {
                        **_json_ok(TOKEN_REF),
                        **_errors(400, 401, 403, 413, 415, 429, 503),
                    },
                }
            },
            "/auth/logout": {
                "post": {
                    "summary": "End the session",
                    "parameters": [
                        {"name": "freshtoken_rt", "in": "cookie", "required": False, "schema": STR}
                    ],
                    "requestBody": _json_body(
                        {"refresh_token": STR, "client_id": STR}, [], needed=False
                    ),
                    "responses": {
                        **_json_ok({"type": "object", "properties": {"status": STR}}),
                        **_errors(400, 401, 403, 413, 415, 503),
                    },
                }
            },
            "/.well-known/jwks.json": {
                "get": {
                    "summary": "JWKS",
                    "responses": _json_ok({"type": "object", "required": ["keys"]}),
                }
            },
            "/.well-known/oauth-authorization-server": {
                "get": {"summary": "RFC 8414 metadata", "responses": _json_ok({"type": "object"})}
            },
            "/api/me": {
                "get": {
                    "summary": "Demo protected resource",
                    "security": [{"bearer": []}],
                    "responses": {**_json_ok({"type": "object"}), **_errors(401, 403)},
                }
            },
            "/healthz": {"get": {"summary": "liveness", "responses": _json_ok({"type": "object"})}},
            "/readyz": {
                "get": {
                    "summary": "readiness",
                    "responses": {
                        **_json_ok({"type": "object"}),
                        "503": {"description": "database down"},
                    },
                }
            },
        },
        "components": {
            "schemas": {"Error": ERROR, "Token": TOKEN},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


async def openapi_route(request: Request) -> Response:
    return JSONResponse(build_openapi())
