"""Audit events: a row in ``audit_events`` and one structured log line each.

Never pass a token or a password here: events carry ids (user, client, session),
the client IP and a small ``detail`` dict only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import Connection

from freshtoken.server.storage import repository as repo

log = logging.getLogger("freshtoken.audit")

LOGIN_SUCCEEDED = "login_succeeded"
LOGIN_FAILED = "login_failed"
REFRESH_ROTATED = "refresh_rotated"
REFRESH_GRACE = "refresh_grace_replay"
REUSE_DETECTED = "refresh_token_reuse_detected"
SESSION_REVOKED = "session_revoked"
RATE_LIMITED = "rate_limited"
CLIENT_CREDENTIALS = "client_credentials_issued"
KEY_ROTATED = "signing_key_rotated"

_WARNINGS = frozenset({REUSE_DETECTED, LOGIN_FAILED, RATE_LIMITED})


def record(conn: Connection | None, at: float, event: str, **fields: Any) -> None:
    """Write the event in ``conn``'s transaction (if given) and log it."""
    level = logging.WARNING if event in _WARNINGS else logging.INFO
    if conn is None and not log.isEnabledFor(level):
        return  # the refresh hot path with INFO logging off: nothing to do
    fields = {k: v for k, v in fields.items() if v is not None}
    if conn is not None:
        repo.insert_audit_event(conn, at=at, event=event, **fields)
    if log.isEnabledFor(level):
        log.log(level, json.dumps({"event": event, "at": round(at, 3), **fields}, sort_keys=True))
