"""Who may use the ops API and the dashboard: users, sessions, API tokens, roles, the audit log.

- Users log in with a password, hashed with argon2id (argon2-cffi, its RFC 9106 low-memory
  profile). A login makes a session: a random cookie value whose SHA-256 is the ``sessions``
  row, with an expiry and a CSRF token of its own (the synchronizer token writes must carry).
- API tokens for scripts: ``hub_<id>_<secret>``, 32 random bytes; only their SHA-256 is
  stored (a token is random, not a password: a slow hash adds nothing), shown once.
- Roles, each with every right of the ones before it: viewer (reads; personal data masked),
  operator (replay, edit, discard, retry now), steward (master-data decisions), admin (users,
  tokens). ``HUB_OPS_TOKEN`` stays a bootstrap admin token.
- Every write is audited: who, when, what, before and after (``audit_log``).
- Login attempts are stored (``login_attempts``), so the rate limit holds across processes.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .db import Database, api_tokens, audit_log, login_attempts, sessions, users
from .errors import HubError

ROLES = ("viewer", "operator", "steward", "admin")
SESSION_COOKIE = "hub_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = timedelta(hours=12)
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_IP = 20
NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_PASSWORD = 8

_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AuthError(HubError):
    """A refusal: ``status`` and ``code`` as the API answers them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who makes a request: ``actor`` as the audit log names it, and the role."""

    actor: str
    role: str
    csrf: str | None = None  # a session's: its writes must carry it
    name: str | None = None

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AuthError(422, "invalid_role", f"role: expected one of {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise AuthError(422, "invalid_name", "name: 1 to 64 letters, digits or any of _ . @ -")
    return name


class Auth:
    """Users, sessions, tokens, login attempts and the audit log, in the hub's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users ------------------------------------------------------------------------------

    async def add_user(self, name: str, password: str, role: str) -> dict[str, Any]:
        check_name(name)
        check_role(role)
        if len(password) < MIN_PASSWORD:
            raise AuthError(422, "weak_password", f"password: at least {MIN_PASSWORD} characters")
        row = {
            "name": name,
            "password_hash": await asyncio.to_thread(_hasher.hash, password),
            "role": role,
            "disabled": False,
            "created_at": _now(),
        }
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(users.insert(), row)
        except IntegrityError:
            raise AuthError(409, "exists", f"a user {name} exists") from None
        return {"name": name, "role": role, "disabled": False}

    async def users(self) -> list[dict[str, Any]]:
        c = users.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(c.name, c.role, c.disabled, c.created_at).order_by(c.name)
            )
            return [{**r._mapping, "created_at": _aware(r.created_at).isoformat()} for r in rows]

    async def user(self, name: str) -> dict[str, Any] | None:
        if not NAME.fullmatch(name):
            return None  # no user has such a name (and PostgreSQL refuses NUL in text)
        c = users.c
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(select(c.name, c.role, c.disabled).where(c.name == name))
            ).first()
            return dict(row._mapping) if row is not None else None

    async def set_user(
        self,
        name: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Change a user's role, disable/enable them or set a new password; (before, after).
        Disabling, a new role or a new password ends their sessions."""
        if password is not None and len(password) < MIN_PASSWORD:
            raise AuthError(422, "weak_password", f"password: at least {MIN_PASSWORD} characters")
        before = await self.user(name)
        if before is None:
            raise AuthError(404, "not_found", f"no user {name}")
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = check_role(role)
        if disabled is not None:
            values["disabled"] = disabled
        if password is not None:
            values["password_hash"] = await asyncio.to_thread(_hasher.hash, password)
        if values:
            async with self.db.engine.begin() as conn:
                await conn.execute(update(users).where(users.c.name == name).values(**values))
                if disabled or role is not None or password is not None:
                    uid = select(users.c.id).where(users.c.name == name).scalar_subquery()
                    await conn.execute(sessions.delete().where(sessions.c.user_id == uid))
        after = {k: v for k, v in values.items() if k != "password_hash"}
        return before, {**before, **after}

    # -- logins and sessions ------------------------------------------------------------------

    async def login(self, name: str, password: str, ip: str) -> tuple[str, Principal]:
        """A new session's cookie value and who it is; AuthError 429 while the name or the
        address has too many failures in the window, 401 for a wrong name or password."""
        since = _now() - LOGIN_WINDOW
        c = login_attempts.c
        async with self.db.engine.connect() as conn:
            by_name = (
                await conn.execute(
                    select(func.count())
                    .select_from(login_attempts)
                    .where(c.name == name[:64], c.at >= since, c.ok.is_(False))
                )
            ).scalar_one()
            by_ip = (
                await conn.execute(
                    select(func.count())
                    .select_from(login_attempts)
                    .where(c.ip == ip[:64], c.at >= since, c.ok.is_(False))
                )
            ).scalar_one()
        if by_name >= MAX_FAILURES_PER_NAME or by_ip >= MAX_FAILURES_PER_IP:
            raise AuthError(
                429, "too_many_attempts", "too many failed logins; try again in 15 minutes"
            )
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.name == name[:64]))).first()
        ok = False
        try:
            # ~50 ms of CPU (argon2id): off the event loop
            ok = await asyncio.to_thread(
                _hasher.verify, row.password_hash if row is not None else _DUMMY_HASH, password
            )
        except (VerificationError, InvalidHashError):
            ok = False
        if row is None or row.disabled or not ok:
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    login_attempts.insert(),
                    {"at": _now(), "name": name[:64], "ip": ip[:64], "ok": False},
                )
            raise AuthError(401, "bad_credentials", "wrong name or password")
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = _now()
        async with self.db.engine.begin() as conn:
            await conn.execute(
                login_attempts.insert(),
                {"at": now, "name": name[:64], "ip": ip[:64], "ok": True},
            )
            if _hasher.check_needs_rehash(row.password_hash):
                await conn.execute(
                    update(users)
                    .where(users.c.id == row.id)
                    .values(password_hash=_hasher.hash(password))
                )
            await conn.execute(
                sessions.insert(),
                {
                    "id": _sha256(cookie),
                    "user_id": row.id,
                    "csrf": csrf,
                    "created_at": now,
                    "expires_at": now + SESSION_TTL,
                },
            )
            await conn.execute(sessions.delete().where(sessions.c.expires_at < now))
        return cookie, Principal(f"user:{row.name}", row.role, csrf, row.name)

    async def session(self, cookie: str) -> Principal | None:
        """Who a session cookie belongs to, while it has not expired and its user is enabled."""
        s, u = sessions.c, users.c
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(u.name, u.role, u.disabled, s.csrf, s.expires_at)
                    .join_from(sessions, users, s.user_id == u.id)
                    .where(s.id == _sha256(cookie))
                )
            ).first()
        if row is None or row.disabled or _aware(row.expires_at) <= _now():
            return None
        return Principal(f"user:{row.name}", row.role, row.csrf, row.name)

    async def logout(self, cookie: str) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(sessions.delete().where(sessions.c.id == _sha256(cookie)))

    # -- API tokens ---------------------------------------------------------------------------

    async def create_token(self, name: str, role: str, created_by: str) -> dict[str, Any]:
        """A new token; the only time its value is shown."""
        check_name(name)
        check_role(role)
        id_ = secrets.token_hex(6)
        token = f"hub_{id_}_{secrets.token_urlsafe(32)}"
        row = {
            "id": id_,
            "name": name,
            "token_hash": _sha256(token),
            "role": role,
            "created_by": created_by,
            "created_at": _now(),
        }
        async with self.db.engine.begin() as conn:
            await conn.execute(api_tokens.insert(), row)
        return {"id": id_, "name": name, "role": role, "token": token}

    async def tokens(self) -> list[dict[str, Any]]:
        c = api_tokens.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    c.id, c.name, c.role, c.created_by, c.created_at, c.last_used_at, c.revoked_at
                ).order_by(c.created_at)
            )
            return [
                {
                    k: _aware(v).isoformat() if isinstance(v, datetime) else v
                    for k, v in r._mapping.items()
                }
                for r in rows
            ]

    async def revoke_token(self, id_: str) -> bool:
        """Revoke a token; False when there is no such token (one revoked stays revoked)."""
        if not re.fullmatch(r"[0-9a-f]{12}", id_):
            return False  # no token has such an id
        c = api_tokens.c
        async with self.db.engine.begin() as conn:
            found = (await conn.execute(select(c.revoked_at).where(c.id == id_))).first()
            if found is None:
                return False
            if found.revoked_at is None:
                await conn.execute(update(api_tokens).where(c.id == id_).values(revoked_at=_now()))
            return True

    async def token(self, token: str) -> Principal | None:
        """Who a bearer API token is, unless unknown or revoked."""
        m = re.fullmatch(r"hub_([0-9a-f]{12})_[A-Za-z0-9_-]{20,64}", token)
        if m is None:
            return None
        c = api_tokens.c
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(api_tokens).where(c.id == m[1]))).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.token_hash, _sha256(token)):
            return None
        async with self.db.engine.begin() as conn:
            await conn.execute(update(api_tokens).where(c.id == row.id).values(last_used_at=_now()))
        return Principal(f"token:{row.id}", row.role, None, row.name)

    # -- audit ----------------------------------------------------------------------------------

    async def audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        before: Any = None,
        after: Any = None,
        ip: str | None = None,
    ) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                audit_log.insert(), _audit_row(actor, action, target, before, after, ip)
            )

    async def complete_audit(self, pending: PendingAudit, after: Any) -> None:
        """Add what is known once the write answered (its status, its answer) to its audit
        row, written with the write."""
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(audit_log).where(audit_log.c.id == pending.id).values(after=after)
            )

    async def audit_rows(
        self, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The audit log, newest first, by keyset (``before_id``: the last id of a page)."""
        c = audit_log.c
        query = select(audit_log).order_by(c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(c.id < before_id)
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(query)
            return [{**r._mapping, "at": _aware(r.at).isoformat()} for r in rows]


# -- the audit row, in the transaction of the write it records ---------------------------------

log = logging.getLogger(__name__)


class AuditFailed(HubError):
    """The audit row of a write could not be written: the write was not made either."""


@dataclass
class PendingAudit:
    """A write's audit row, waiting for the write's transaction. ``id`` once written."""

    row: dict[str, Any]
    id: int | None = None


_pending: contextvars.ContextVar[PendingAudit | None] = contextvars.ContextVar(
    "hub_pending_audit", default=None
)
_CHANGES = "hub_audit_changes"  # SQLite: total_changes() when the transaction began


def expect_write(
    actor: str,
    action: str,
    target: str | None,
    before: Any = None,
    after: Any = None,
    ip: str | None = None,
) -> PendingAudit:
    """From now on in this context (the request's task, and what it starts), the first
    transaction that changes a row also inserts this audit row, before it commits: the change
    and its audit row commit together, or neither does (:class:`AuditFailed`)."""
    pending = PendingAudit(_audit_row(actor, action, target, before, after, ip))
    _pending.set(pending)
    return pending


def audit_in_transactions(db: Database) -> None:
    """Make every engine of ``db`` write a pending audit row in the write's transaction.

    Engine-wide event listeners would cost every statement of the process ~10 us (SQLAlchemy
    takes its slower path for all of them), so the engines make their connections of a class
    that attaches the hooks to a connection only when it is opened in a write's context: other
    connections are plain ones."""
    engines = [db.engine.sync_engine]
    if db._sync is not None:  # a SQLite file: the database thread's engine
        engines.append(db._sync)
    for engine in engines:
        engine._connection_cls = _AuditedConnection


class _AuditedConnection(Connection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if _waiting() is not None:
            event.listen(self, "begin", _on_begin)
            event.listen(self, "commit", _before_commit)


def _waiting() -> PendingAudit | None:
    pending = _pending.get()
    return pending if pending is not None and pending.id is None else None


def _on_begin(conn: Connection) -> None:
    if _waiting() is not None and conn.dialect.name == "sqlite":
        conn.info[_CHANGES] = conn.exec_driver_sql("SELECT total_changes()").scalar()
    else:
        conn.info.pop(_CHANGES, None)


def _changed_rows(conn: Connection) -> bool:
    """Whether this transaction changed a row: PostgreSQL assigns a transaction id at the first
    change (or row lock); on SQLite, its total of changed rows moved since the begin."""
    if conn.dialect.name == "postgresql":
        return bool(conn.exec_driver_sql("SELECT txid_current_if_assigned() IS NOT NULL").scalar())
    began = conn.info.pop(_CHANGES, None)
    if began is None:
        return True  # begun before the write's context: count it as a change
    now = conn.exec_driver_sql("SELECT total_changes()").scalar()
    return bool(now != began)


def _before_commit(conn: Connection) -> None:
    """SQLAlchemy's commit event: called before the transaction commits."""
    pending = _waiting()
    if pending is None or not _changed_rows(conn):
        return
    try:
        done = conn.execute(audit_log.insert(), pending.row)
    except SQLAlchemyError as exc:
        log.error("the audit row of %s could not be written: %s", pending.row["action"], exc)
        raise AuditFailed(
            f"the audit log could not be written, so the change was not made: "
            f"{type(exc).__name__}; try again, and check the database"
        ) from None
    key = done.inserted_primary_key
    assert key is not None
    pending.id = int(key[0])


def _audit_row(
    actor: str,
    action: str,
    target: str | None,
    before: Any = None,
    after: Any = None,
    ip: str | None = None,
) -> dict[str, Any]:
    return {
        "at": _now(),
        "actor": actor[:128],
        "action": action[:64],
        "target": target[:255] if target is not None else None,
        "before": before,
        "after": after,
        "ip": ip[:64] if ip is not None else None,
    }


# what a write's audit row keeps of its request and answer: JSON, secrets redacted
_SECRET_KEYS = frozenset({"password", "token", "csrf"})
MAX_AUDIT_BYTES = 64 * 1024


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[redacted]" if k in _SECRET_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def audit_body(raw: bytes) -> Any:
    if not raw or len(raw) > MAX_AUDIT_BYTES:
        return None if not raw else {"bytes": len(raw)}
    try:
        return redact(json.loads(raw))
    except (ValueError, RecursionError):  # not JSON, or nested too deep to keep
        return {"bytes": len(raw)}


# -- masking personal data for viewers -----------------------------------------------------------

_PERSONAL_KEY = re.compile(
    r"e-?mail|phone|mobile|fax|address|street|line[12]|zip|postal|postcode|city", re.I
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+[0-9][0-9 ().-]{6,}[0-9]")
MASK = "•••"
_COUNTRY = re.compile(r"country", re.I)
# what holds the value of a field named by value: {"field": "email", "left": ..., ...}
_VALUE_KEYS = frozenset({"left", "right", "value", "old", "new"})


def mask_text(text: str) -> str:
    """E-mail addresses and phone numbers in free text (a payload's preview, an error)."""
    text = _EMAIL.sub(lambda m: f"{MASK}@{m[0].rsplit('@', 1)[1]}", text)
    return _PHONE.sub(MASK, text)


def mask(value: Any, key: str = "", personal: bool = False) -> Any:
    """A JSON value with personal data masked: whatever sits under a key that names an
    e-mail, phone or address (all of an address but its country), and e-mail addresses and
    phone numbers (E.164, +...) in any text."""
    personal = personal or bool(_PERSONAL_KEY.search(key))
    if isinstance(value, dict):
        named = value.get("field")
        if isinstance(named, str) and _PERSONAL_KEY.search(named) and not _COUNTRY.search(named):
            # a field named by value (a match explanation: {"field": "email", "left": ...})
            return {k: mask(v, k, k in _VALUE_KEYS or personal) for k, v in value.items()}
        return {k: mask(v, k, personal) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key, personal) for v in value]
    if personal and value not in (None, "", True, False) and not _COUNTRY.search(key):
        if isinstance(value, str) and _EMAIL.fullmatch(value):
            return mask_text(value)
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    return value
