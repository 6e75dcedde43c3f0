"""TokenService: every rule of issuing, rotating and revoking tokens (DESIGN §2-3).

No HTTP here and no SQL: routes call the service, the service calls the
repository inside transactions it opens. Every public method is synchronous and
opens its own transaction(s); async routes reach it through one thread hop
(:meth:`Database.run`). The rotation is decided by one conditional UPDATE
(:func:`repository.mark_used`), never by read-then-write.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from freshtoken._clock import Clock
from freshtoken.errors import FreshtokenError
from freshtoken.server import audit
from freshtoken.server.exceptions import (
    OAuthError,
    invalid_client,
    invalid_grant,
    invalid_request,
    invalid_scope,
    unauthorized_client,
)
from freshtoken.server.keys import KeyRing
from freshtoken.server.passwords import Passwords, hash_client_secret, verify_client_secret
from freshtoken.server.settings import Settings
from freshtoken.server.storage import repository as repo
from freshtoken.server.storage.database import Database
from freshtoken.server.tokens import (
    REFRESH_TOKEN_PREFIX,
    SuccessorDeriver,
    hash_refresh_token,
    looks_like_refresh_token,
    new_refresh_token,
)
from freshtoken.verify import KeySet, Verifier

log = logging.getLogger("freshtoken.server")

DEFAULT_CLIENT_ID = "default"
DEFAULT_CLIENT_SCOPE = "openid profile read write"
# How long a client row may be served from memory on the refresh path.
CLIENT_CACHE_SECONDS = 5.0
ALL_GRANTS = frozenset({"password", "refresh_token", "client_credentials"})


class RateLimited(Exception):
    def __init__(self, retry_after: int, limit: str) -> None:
        super().__init__(f"rate limited ({limit})")
        self.retry_after = retry_after
        self.limit = limit


@dataclass(frozen=True)
class ClientInfo:
    client_id: str
    confidential: bool
    grant_types: frozenset[str]
    scope: frozenset[str]
    first_party: bool


class _NeedsSynchronousPath(Exception):
    """The fast rotation met a replay: the thread path decides it."""


@dataclass(frozen=True)
class _RefreshStart:
    now: float
    requested: frozenset[str] | None
    client: ClientInfo
    token_hash: bytes
    successor: str
    idle_ttl: float

    def rotation_parameters(self, ip: str | None) -> dict[str, Any]:
        return {
            "token_hash": self.token_hash,
            "client_id": self.client.client_id,
            "child_hash": hash_refresh_token(self.successor),
            "now": self.now,
            "idle_ttl": self.idle_ttl,
            "event": audit.REFRESH_ROTATED,
            "ip": ip,
        }


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    session_id: str | None = None
    session_expires_at: float | None = None
    outcome: str = "issued"

    def to_json(self, *, include_refresh_token: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if include_refresh_token and self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


def _client_info(row: Any) -> ClientInfo:
    return ClientInfo(
        client_id=row.client_id,
        confidential=row.secret_hash is not None,
        grant_types=frozenset(row.grant_types.split()),
        scope=frozenset(row.scope.split()),
        first_party=bool(row.first_party),
    )


def parse_scope(value: str | None) -> frozenset[str] | None:
    """``None`` (or an empty ``scope=``) means "what the grant allows"."""
    if value is None or not value.strip():
        return None
    return frozenset(value.split())


def format_scope(scope: frozenset[str] | set[str]) -> str:
    return " ".join(sorted(scope))


class TokenService:
    """The authorization server's rules. Thread-safe: it keeps no per-request state."""

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        clock: Clock,
        keyring: KeyRing,
        passwords: Passwords,
        deriver: SuccessorDeriver,
        session_limiter: Callable[[str], int | None] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.keyring = keyring
        self.passwords = passwords
        self.deriver = deriver
        self.session_limiter = session_limiter
        self.stats: Counter[str] = Counter()
        self._verifier: Verifier | None = None
        self._verifier_generation = -1
        # client_id -> (monotonic deadline, row): the refresh hot path reads clients
        # from here instead of the database (CLIENT_CACHE_SECONDS; create_client clears it).
        self._clients: dict[str, tuple[float, Any, ClientInfo]] = {}

    # --- setup --------------------------------------------------------------------

    def bootstrap(self) -> None:
        """Migrate, make sure the default client and a signing key exist, load the keys."""
        self.db.migrate()
        now = self.clock.now()
        with self.db.transaction() as conn:
            if repo.find_client(conn, DEFAULT_CLIENT_ID) is None:
                repo.insert_client(
                    conn,
                    client_id=DEFAULT_CLIENT_ID,
                    name="Default first-party public client",
                    secret_hash=None,
                    grant_types="password refresh_token",
                    scope=DEFAULT_CLIENT_SCOPE,
                    first_party=True,
                    created_at=now,
                )
            self.keyring.ensure_key(conn, self.settings.signing_alg, now)
        self.reload_keys()

    def reload_keys(self) -> None:
        with self.db.transaction() as conn:
            self.keyring.reload(conn)

    # --- clients ------------------------------------------------------------------

    def _authenticate_client(
        self, conn: Any, client_id: str | None, client_secret: str | None
    ) -> ClientInfo:
        if not client_id:
            raise invalid_client("client_id is required")
        if conn is None:
            row, info = self._cached_client(client_id)
        else:
            row = repo.find_client(conn, client_id)
            info = None if row is None else _client_info(row)
        if row is None or info is None:
            # Same work as a wrong secret, so ids cannot be probed by timing.
            verify_client_secret(hash_client_secret("x"), client_secret or "")
            raise invalid_client("unknown client or bad client credentials")
        if info.confidential and not verify_client_secret(row.secret_hash, client_secret):
            raise invalid_client("unknown client or bad client credentials")
        if not info.confidential and client_secret:
            raise invalid_client("public clients have no secret")
        return info

    def _cached_client(self, client_id: str) -> tuple[Any, ClientInfo | None]:
        """The client's row and its parsed form, at most CLIENT_CACHE_SECONDS old
        (unknown ids are not cached)."""
        hit = self._clients.get(client_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1], hit[2]
        with self.db.transaction() as conn:
            row = repo.find_client(conn, client_id)
        if row is None:
            return None, None
        info = _client_info(row)
        if len(self._clients) >= 1024:
            self._clients.clear()
        self._clients[client_id] = (time.monotonic() + CLIENT_CACHE_SECONDS, row, info)
        return row, info

    @staticmethod
    def _require_grant(client: ClientInfo, grant_type: str) -> None:
        if grant_type not in client.grant_types:
            raise unauthorized_client(f"this client may not use the {grant_type} grant")

    @staticmethod
    def _grant_scope(allowed: frozenset[str], requested: frozenset[str] | None) -> frozenset[str]:
        """RFC 6749 §3.3 / §6: a requested scope may narrow, never widen."""
        if requested is None:
            return allowed
        extra = requested - allowed
        if extra:
            raise invalid_scope(f"scope not allowed: {format_scope(extra)}")
        return requested

    # --- access tokens --------------------------------------------------------------

    def issue_access_token(
        self, *, sub: str, client_id: str, scope: str, sid: str | None, now: float
    ) -> str:
        key = self.keyring.current(now)
        iat = int(now)
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": sub,
            "aud": self.settings.audience,
            "exp": iat + self.settings.access_token_ttl,
            "iat": iat,
            "jti": secrets.token_hex(16),  # 128 random bits, as uuid4 but cheaper
            "client_id": client_id,
            "scope": scope,
        }
        if sid is not None:
            claims["sid"] = sid
        return self.keyring.signer(key).encode(claims)

    def decode_access_token(self, token: str) -> dict[str, Any] | None:
        """Claims of a token this server issued and that is still valid, else None.

        The same :class:`~freshtoken.verify.Verifier` resource servers use (no leeway:
        this is the issuer judging its own tokens), over the published keys, rebuilt
        only when the key ring reloads so that keys are parsed once."""
        verifier = self._verifier
        if verifier is None or self._verifier_generation != self.keyring.generation:
            verifier = Verifier(
                issuer=self.settings.issuer,
                audience=self.settings.audience,
                keys=KeySet.from_jwks(self.keyring.jwks(self.clock.now())),
                clock=self.clock,
                leeway=0,
            )
            self._verifier, self._verifier_generation = verifier, self.keyring.generation
        try:
            return dict(verifier.verify(token).raw)
        except FreshtokenError:
            return None

    # --- grants ---------------------------------------------------------------------

    def login(
        self,
        *,
        username: str,
        password: str,
        client_id: str | None = DEFAULT_CLIENT_ID,
        client_secret: str | None = None,
        scope: str | None = None,
        ip: str | None = None,
    ) -> IssuedTokens:
        """Resource-owner password grant: a new session with its first refresh token."""
        with self.db.transaction() as conn:
            client = self._authenticate_client(conn, client_id, client_secret)
            self._require_grant(client, "password")
            granted = self._grant_scope(client.scope, parse_scope(scope))
            user = repo.find_user_by_name(conn, username)
        ok = self.passwords.verify(None if user is None else user.password_hash, password)
        now = self.clock.now()
        if not ok or user is None or user.disabled:
            with self.db.transaction() as conn:
                audit.record(
                    conn,
                    now,
                    audit.LOGIN_FAILED,
                    client_id=client.client_id,
                    ip=ip,
                    user_id=None if user is None else user.id,
                )
            self.stats["login_failed"] += 1
            raise invalid_grant("invalid username or password")
        session_id = secrets.token_hex(16)
        refresh_token = new_refresh_token()
        absolute = now + self.settings.session_max_ttl
        with self.db.transaction() as conn:
            repo.insert_session(
                conn,
                id=session_id,
                user_id=user.id,
                client_id=client.client_id,
                scope=format_scope(granted),
                created_at=now,
                absolute_expires_at=absolute,
            )
            repo.insert_refresh_token(
                conn,
                token_hash=hash_refresh_token(refresh_token),
                session_id=session_id,
                parent_id=None,
                issued_at=now,
                expires_at=min(now + self.settings.refresh_idle_ttl, absolute),
            )
            audit.record(
                conn,
                now,
                audit.LOGIN_SUCCEEDED,
                user_id=user.id,
                client_id=client.client_id,
                session_id=session_id,
                ip=ip,
            )
        self.stats["login"] += 1
        scope_text = format_scope(granted)
        return IssuedTokens(
            access_token=self.issue_access_token(
                sub=user.id, client_id=client.client_id, scope=scope_text, sid=session_id, now=now
            ),
            expires_in=self.settings.access_token_ttl,
            scope=scope_text,
            refresh_token=refresh_token,
            session_id=session_id,
            session_expires_at=absolute,
            outcome="login",
        )

    def refresh(
        self,
        *,
        refresh_token: str,
        client_id: str | None = DEFAULT_CLIENT_ID,
        client_secret: str | None = None,
        scope: str | None = None,
        ip: str | None = None,
    ) -> IssuedTokens:
        """Rotate ``refresh_token`` (DESIGN §3). One transaction, decided by one
        conditional UPDATE; a replay inside the grace window gets the same successor;
        any other reuse revokes the whole session."""
        start = self._start_refresh(refresh_token, client_id, client_secret, scope)
        reuse: repo.RefreshTokenRecord | None = None
        # One transaction. repository.rotate_refresh_token runs step 1's lookup, the
        # session claim, the conditional UPDATE (the only arbiter) and, if it won, the
        # child and audit rows, as one statement on PostgreSQL; any refusal below
        # raises inside the transaction and rolls all of it back.
        with self.db.raw_transaction() as (conn, cursor):
            rotation = repo.rotate_refresh_token(
                cursor, postgresql=not self.db.is_sqlite, **start.rotation_parameters(ip)
            )
            record, granted = self._accept(rotation, start)
            if rotation.won:
                outcome = "refresh_rotated"
            elif self._within_grace(conn, record.id, start.now):
                outcome = "refresh_grace"
                self._audit_token_event(conn, start.now, audit.REFRESH_GRACE, record, ip)
            else:
                reuse = record
                repo.revoke_session(conn, record.session_id, start.now, "reuse_detected")
                self._audit_token_event(
                    conn,
                    start.now,
                    audit.REUSE_DETECTED,
                    record,
                    ip,
                    detail={"token_id": record.id},
                )
        if reuse is not None:
            self.stats["refresh_reuse"] += 1
            raise invalid_grant("refresh token was already used; the session has been revoked")
        return self._refreshed(start, record, granted, outcome, ip)

    async def refresh_async(
        self,
        *,
        refresh_token: str,
        client_id: str | None = DEFAULT_CLIENT_ID,
        client_secret: str | None = None,
        scope: str | None = None,
        ip: str | None = None,
    ) -> IssuedTokens:
        """:meth:`refresh` for the routes. On PostgreSQL (with asyncpg installed) the
        common case, a rotation that wins or a refusal that writes nothing, runs on
        the event loop (storage/pg_rotation.py); a replay (grace window or reuse)
        and any driver error go to :meth:`refresh` on a database thread, which
        decides afresh in its own transaction: the fast attempt committed nothing."""
        rotator = self.db.pg_rotation
        on_thread = functools.partial(
            self.refresh,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            ip=ip,
        )
        if rotator is None:
            return await self.db.run(on_thread)
        start = self._start_refresh(refresh_token, client_id, client_secret, scope)
        try:
            async with rotator.transaction() as conn:
                rotation = await rotator.rotate(conn, **start.rotation_parameters(ip))
                if rotation.claimed and not rotation.won:
                    raise _NeedsSynchronousPath  # rolls back: only the session lock
                record, granted = self._accept(rotation, start)
        except (OAuthError, RateLimited):
            raise
        except _NeedsSynchronousPath:
            return await self.db.run(on_thread)
        except Exception as exc:  # the driver: a lost connection, a timeout, ...
            log.debug("asyncpg rotation failed (%s); using the thread path", type(exc).__name__)
            return await self.db.run(on_thread)
        return self._refreshed(start, record, granted, "refresh_rotated", ip)

    def _start_refresh(
        self,
        refresh_token: str,
        client_id: str | None,
        client_secret: str | None,
        scope: str | None,
    ) -> _RefreshStart:
        """Everything before the database: refusals that need no lookup."""
        if not looks_like_refresh_token(refresh_token):
            self.stats["refresh_failed"] += 1
            raise invalid_grant("malformed refresh token")
        requested = parse_scope(scope)
        client = self._authenticate_client(None, client_id, client_secret)
        self._require_grant(client, "refresh_token")
        successor = self.deriver.derive(refresh_token)
        return _RefreshStart(
            now=float(self.clock.now()),
            requested=requested,
            client=client,
            token_hash=hash_refresh_token(refresh_token),
            successor=successor,
            idle_ttl=float(self.settings.refresh_idle_ttl),
        )

    def _accept(
        self, rotation: repo.Rotation, start: _RefreshStart
    ) -> tuple[repo.RefreshTokenRecord, frozenset[str]]:
        """Inside the transaction: step 1's refusals, the scope, the per-session
        limit. Any of them raises, which rolls the rotation back."""
        record = rotation.record
        self._check_presented(record, start.client, start.now)
        assert record is not None
        granted = self._grant_scope(frozenset(record.scope.split()), start.requested)
        if self.session_limiter is not None:
            retry_after = self.session_limiter(record.session_id)
            if retry_after is not None:
                raise RateLimited(retry_after, "refresh per session")
        if not rotation.claimed:
            raise invalid_grant("session has been revoked")
        return record, granted

    def _refreshed(
        self,
        start: _RefreshStart,
        record: repo.RefreshTokenRecord,
        granted: frozenset[str],
        outcome: str,
        ip: str | None,
    ) -> IssuedTokens:
        """After the commit: the answer."""
        if outcome == "refresh_rotated":
            # The audit row was written by the rotation statement; this is the log line.
            self._audit_token_event(None, start.now, audit.REFRESH_ROTATED, record, ip)
        self.stats[outcome] += 1
        # The session's scope is stored formatted (format_scope at login).
        scope_text = record.scope if start.requested is None else format_scope(granted)
        return IssuedTokens(
            access_token=self.issue_access_token(
                sub=record.user_id,
                client_id=record.client_id,
                scope=scope_text,
                sid=record.session_id,
                now=start.now,
            ),
            expires_in=self.settings.access_token_ttl,
            scope=scope_text,
            refresh_token=start.successor,
            session_id=record.session_id,
            session_expires_at=record.absolute_expires_at,
            outcome=outcome,
        )

    @staticmethod
    def _audit_token_event(
        conn: Any,
        now: float,
        event: str,
        record: repo.RefreshTokenRecord,
        ip: str | None,
        **extra: Any,
    ) -> None:
        audit.record(
            conn,
            now,
            event,
            user_id=record.user_id,
            client_id=record.client_id,
            session_id=record.session_id,
            ip=ip,
            **extra,
        )

    def _check_presented(
        self, record: repo.RefreshTokenRecord | None, client: ClientInfo, now: float
    ) -> None:
        """Step 1 of DESIGN §3: refusals that change nothing."""
        if record is None:
            self.stats["refresh_failed"] += 1
            raise invalid_grant("unknown refresh token")
        failure = None
        if record.client_id != client.client_id:
            failure = "refresh token was issued to another client"
        elif record.session_revoked_at is not None or record.revoked_at is not None:
            failure = "session has been revoked"
        elif now >= record.absolute_expires_at:
            failure = "session has reached its maximum lifetime"
        elif now >= record.expires_at:
            failure = "refresh token expired (unused for too long)"
        if failure is not None:
            self.stats["refresh_failed"] += 1
            raise invalid_grant(failure)

    def _within_grace(self, conn: Any, token_id: int, now: float) -> bool:
        grace = self.settings.refresh_grace_seconds
        if grace <= 0:
            return False
        used = repo.used_at(conn, token_id)
        return used is not None and now - used < grace and repo.has_live_child(conn, token_id, now)

    def client_credentials(
        self,
        *,
        client_id: str | None,
        client_secret: str | None,
        scope: str | None = None,
        ip: str | None = None,
    ) -> IssuedTokens:
        now = self.clock.now()
        with self.db.transaction() as conn:
            client = self._authenticate_client(conn, client_id, client_secret)
            if not client.confidential:
                raise unauthorized_client("client_credentials needs a confidential client")
            self._require_grant(client, "client_credentials")
            granted = self._grant_scope(client.scope, parse_scope(scope))
            audit.record(conn, now, audit.CLIENT_CREDENTIALS, client_id=client.client_id, ip=ip)
        self.stats["client_credentials"] += 1
        scope_text = format_scope(granted)
        return IssuedTokens(
            access_token=self.issue_access_token(
                sub=client.client_id,
                client_id=client.client_id,
                scope=scope_text,
                sid=None,
                now=now,
            ),
            expires_in=self.settings.access_token_ttl,
            scope=scope_text,
        )

    # --- revocation -------------------------------------------------------------------

    def revoke(
        self,
        *,
        token: str,
        client_id: str | None,
        client_secret: str | None,
        ip: str | None = None,
    ) -> bool:
        """RFC 7009: revoking a refresh token (or an access token) ends its session.
        Tokens of other clients and unknown tokens are ignored (the answer is 200)."""
        now = self.clock.now()
        with self.db.transaction() as conn:
            client = self._authenticate_client(conn, client_id, client_secret)
            session_id = self._session_of(conn, token)
            if session_id is None:
                return False
            session = repo.find_session(conn, session_id)
            if session is None or session.client_id != client.client_id:
                return False
            revoked = repo.revoke_session(conn, session_id, now, "revoked")
            if revoked:
                audit.record(
                    conn,
                    now,
                    audit.SESSION_REVOKED,
                    session_id=session_id,
                    client_id=client.client_id,
                    user_id=session.user_id,
                    ip=ip,
                    detail={"by": "client"},
                )
        return revoked

    def _session_of(self, conn: Any, token: str) -> str | None:
        if token.startswith(REFRESH_TOKEN_PREFIX):
            if not looks_like_refresh_token(token):
                return None
            record = repo.find_refresh_token(conn, hash_refresh_token(token))
            return None if record is None else record.session_id
        claims = self.decode_access_token(token)
        sid = None if claims is None else claims.get("sid")
        return sid if isinstance(sid, str) else None

    def logout(
        self,
        *,
        refresh_token: str,
        client_id: str | None = DEFAULT_CLIENT_ID,
        ip: str | None = None,
    ) -> bool:
        return self.revoke(token=refresh_token, client_id=client_id, client_secret=None, ip=ip)

    def revoke_session(self, session_id: str, *, reason: str = "admin") -> bool:
        now = self.clock.now()
        with self.db.transaction() as conn:
            session = repo.find_session(conn, session_id)
            revoked = repo.revoke_session(conn, session_id, now, reason)
            if revoked and session is not None:
                audit.record(
                    conn,
                    now,
                    audit.SESSION_REVOKED,
                    session_id=session_id,
                    user_id=session.user_id,
                    client_id=session.client_id,
                    detail={"by": reason},
                )
        return revoked

    # --- introspection (RFC 7662) ------------------------------------------------------

    def introspect(
        self, *, token: str, client_id: str | None, client_secret: str | None
    ) -> dict[str, Any]:
        now = self.clock.now()
        with self.db.transaction() as conn:
            client = self._authenticate_client(conn, client_id, client_secret)
            if not client.confidential:
                raise invalid_client("introspection needs a confidential client")
            if token.startswith(REFRESH_TOKEN_PREFIX):
                return self._introspect_refresh(conn, token, now)
            claims = self.decode_access_token(token)
            if claims is None:
                return {"active": False}
            sid = claims.get("sid")
            if isinstance(sid, str) and not repo.session_is_live(conn, sid, now):
                return {"active": False}
        return {"active": True, "token_type": "access_token", **claims}

    def _introspect_refresh(self, conn: Any, token: str, now: float) -> dict[str, Any]:
        if not looks_like_refresh_token(token):
            return {"active": False}
        record = repo.find_refresh_token(conn, hash_refresh_token(token))
        if (
            record is None
            or record.used_at is not None
            or record.revoked_at is not None
            or record.session_revoked_at is not None
            or now >= min(record.expires_at, record.absolute_expires_at)
        ):
            return {"active": False}
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": record.client_id,
            "sub": record.user_id,
            "scope": record.scope,
            "sid": record.session_id,
            "exp": int(min(record.expires_at, record.absolute_expires_at)),
            "iss": self.settings.issuer,
        }

    # --- administration (the CLI) --------------------------------------------------------

    def create_user(self, username: str, password: str) -> str:
        username = username.strip()
        if not username or len(username) > 255:
            raise invalid_request("username must be 1 to 255 characters")
        if not password:
            raise invalid_request("password must not be empty")
        user_id = uuid.uuid4().hex
        password_hash = self.passwords.hash(password)
        with self.db.transaction() as conn:
            if repo.find_user_by_name(conn, username) is not None:
                raise OAuthError("user_exists", f"user {username!r} already exists", 409)
            repo.insert_user(
                conn,
                user_id=user_id,
                username=username,
                password_hash=password_hash,
                now=self.clock.now(),
            )
        return user_id

    def set_password(self, username: str, password: str) -> bool:
        if not password:
            raise invalid_request("password must not be empty")
        password_hash = self.passwords.hash(password)
        with self.db.transaction() as conn:
            return repo.set_password(conn, username, password_hash)

    def remove_user(self, username: str) -> bool:
        with self.db.transaction() as conn:
            return repo.delete_user(conn, username) is not None

    def create_client(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        grant_types: tuple[str, ...] | list[str] = ("password", "refresh_token"),
        scope: str = DEFAULT_CLIENT_SCOPE,
        name: str = "",
        first_party: bool = False,
    ) -> None:
        unknown = set(grant_types) - ALL_GRANTS
        if unknown:
            raise invalid_request(f"unknown grant types: {' '.join(sorted(unknown))}")
        if "client_credentials" in grant_types and not secret:
            raise invalid_request("client_credentials needs a confidential client (a secret)")
        with self.db.transaction() as conn:
            if repo.find_client(conn, client_id) is not None:
                raise OAuthError("client_exists", f"client {client_id!r} already exists", 409)
            repo.insert_client(
                conn,
                client_id=client_id,
                name=name,
                secret_hash=None if secret is None else hash_client_secret(secret),
                grant_types=" ".join(grant_types),
                scope=scope,
                first_party=first_party,
                created_at=self.clock.now(),
            )
        self._clients.pop(client_id, None)

    def prune(
        self, *, ended_days: float, audit_days: float, batch: int = 5000
    ) -> tuple[int, int, int]:
        """Retention: delete sessions that ended more than ``ended_days`` ago with all
        their refresh tokens, and audit events older than ``audit_days``. Returns
        (sessions, refresh tokens, audit events) deleted.

        Tokens of live sessions stay, used ones included: they are what makes a
        replay of an old token a detected reuse instead of an unknown token.
        Works in batches of ``batch`` rows, one short transaction each, so a big
        first run never holds SQLite's write lock (or PostgreSQL row locks) long."""
        now = self.clock.now()
        ended_before = now - ended_days * 86_400
        sessions_deleted = tokens_deleted = audit_deleted = 0
        while True:
            with self.db.transaction() as conn:
                ids = repo.ended_session_ids(conn, ended_before=ended_before, limit=batch)
                if ids:
                    tokens_deleted += repo.delete_sessions(conn, ids)
            sessions_deleted += len(ids)
            if len(ids) < batch:
                break
        while True:
            with self.db.transaction() as conn:
                deleted = repo.delete_audit_events(
                    conn, before=now - audit_days * 86_400, limit=batch
                )
            audit_deleted += deleted
            if deleted < batch:
                break
        return sessions_deleted, tokens_deleted, audit_deleted

    def rotate_signing_key(self, alg: str | None = None) -> str:
        now = self.clock.now()
        keep_for = max(
            self.settings.key_retire_grace, self.settings.access_token_ttl + self.settings.leeway
        )
        with self.db.transaction() as conn:
            key = self.keyring.rotate(
                conn,
                alg or self.settings.signing_alg,
                now,
                keep_for,
                activate_in=self.settings.key_activation_delay,
            )
            audit.record(conn, now, audit.KEY_ROTATED, detail={"kid": key.kid, "alg": key.alg})
            self.keyring.reload(conn)
        return key.kid
