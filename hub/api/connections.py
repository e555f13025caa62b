"""``/api/mappings`` and ``/api/connections``: the mapping versions this process runs, the last
reload of hub.yaml and the mappings (and its problems, when refused); each connection with its
routes and its options, secrets never shown, and its check run on demand (operators), as
``hub connectors check`` runs it."""

from __future__ import annotations

import asyncio
import re
from pathlib import PurePath
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr

from connectors import Connector, ConnectorOptions, PollingSource, Sink, WebhookSource
from hub.errors import ConfigError, ConnectionCheckFailed

from .deps import HubDep
from .ops import require_operator, responses

router = APIRouter(
    prefix="/api",
    tags=["ops"],
    dependencies=[Depends(require_operator)],
    responses=responses(401, 403),
)

CHECK_TIMEOUT_S = 30.0
SECRET = "[secret]"
_SECRET_NAME = re.compile(r"secret|token|password|passwd|api_?key|private|credential", re.I)


def _shown(name: str, value: Any) -> Any:
    """An option's value as a page may show it: secrets (declared ones, and any option named
    like one) as ``[secret]``, a URL without its user and password."""
    if isinstance(value, SecretStr) or (_SECRET_NAME.search(name) and value not in (None, "")):
        return SECRET
    if isinstance(value, dict):
        return {k: _shown(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shown(name, v) for v in value]
    if value is not None and not isinstance(value, bool | int | float | str):
        value = str(value)  # a URL, a path, an enum: as text
    if isinstance(value, str) and "://" in value:
        try:
            parts = urlsplit(value)
        except ValueError:
            return SECRET
        if parts.username is not None or parts.password is not None:
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def _secrets(value: Any) -> list[str]:
    """Every secret value in a connection's options (to scrub from a check's message)."""
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secrets(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _secrets(v)]
    if isinstance(value, BaseModel):
        return [s for k in type(value).model_fields for s in _secrets(getattr(value, k))]
    return []


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")


def scrub(message: str, secrets: list[str]) -> str:
    """A check's message without the connection's secrets, nor any user:password of a URL."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            message = message.replace(secret, SECRET)
    return _USERINFO.sub(r"\1", message)


def _relative(file: str, directory: Any) -> str:
    """A mapping's file as a path in its mappings folder (the folder's own place not shown)."""
    try:
        return str(PurePath(file).relative_to(directory))
    except ValueError:
        return PurePath(file).name


@router.get("/mappings")
async def mappings(hub: HubDep) -> dict[str, Any]:
    """The mappings this process runs (name, version, file, source and target, the routes that
    use each) and the last reload: when, whether it was taken, the mappings it changed, and
    the problems of a refused one (the previous version then keeps running)."""
    config = hub.config
    used: dict[str, list[str]] = {}
    for inbound in config.inbound:
        used.setdefault(inbound.mapping, []).append(inbound.name)
    for outbound in config.outbound:
        if outbound.mapping is not None:
            used.setdefault(outbound.mapping, []).append(outbound.name)
    items = [
        {
            "name": name,
            "version": m.version,
            "file": _relative(m.file, hub.mappings.directory),
            "description": m.description,
            "source": m.source_entity
            or " ".join(x for x in (m.source_connector, m.source_event) if x),
            "target": m.target_entity or m.target_format,
            "routes": used.get(name, []),
        }
        for name, m in sorted(hub.mappings.mappings.items())
    ]
    return {
        "items": items,
        "reload": dict(hub.last_reload),
        "reload_interval_s": hub.settings.reload_interval_s,
    }


@router.get("/connections")
async def connections(hub: HubDep) -> dict[str, Any]:
    """Each connection of hub.yaml: connector, system, what it does (webhooks in, polled,
    destination), its routes, its options with every secret shown as ``[secret]``."""
    config = hub.config
    items = []
    everything: list[tuple[str, ConnectorOptions, type[Connector], str, bool]] = [
        *((name, c.options, type(c), c.system, False) for name, c in config.connections.items()),
        *(
            (name, c.options, c.connector, c.system or c.connector.name, True)
            for name, c in config.idle.items()
        ),
    ]
    for name, opts, cls, system, idle in sorted(everything, key=lambda item: item[0]):
        kinds = [
            kind
            for kind, base in (
                ("webhook", WebhookSource),
                ("polling", PollingSource),
                ("sink", Sink),
            )
            if issubclass(cls, base)
        ]
        options = {k: _shown(k, getattr(opts, k)) for k in type(opts).model_fields}
        items.append(
            {
                "name": name,
                "connector": cls.name,
                "title": getattr(cls, "title", cls.name),
                "system": system,
                "kinds": kinds,
                # no enabled route uses it: not opened, its secrets not read
                "idle": idle,
                "inbound_routes": [r.name for r in config.inbound_for(name)],
                "outbound_routes": [r.name for r in config.outbound_for(name)],
                "options": options,
            }
        )
    return {"items": items}


Name = Annotated[str, Path(max_length=64)]


@router.post("/connections/{name}/check", responses=responses(404, 415))
async def check(name: Name, hub: HubDep) -> JSONResponse:
    """Reach the connection's system with its options, changing nothing there (the connector's
    ``check_connection``, as ``hub connectors check`` runs it), within 30 s. ``ok`` false
    says what failed and what to do; secrets are never in the answer."""
    connection = hub.config.connections.get(name)
    idle = hub.config.idle.get(name)
    if connection is None and idle is not None:
        try:  # checked before a route uses it: its secrets are read now
            connection = await asyncio.to_thread(idle.open)
        except ConfigError as exc:
            return JSONResponse(
                {
                    "name": name,
                    "connector": idle.connector.name,
                    "ok": False,
                    "message": "; ".join(str(p) for p in exc.problems),
                }
            )
    if connection is None:
        known = ", ".join(sorted([*hub.config.connections, *hub.config.idle])) or "none"
        return JSONResponse(
            {"error": "not_found", "message": f"no connection {name!r} (known: {known})"},
            status_code=404,
        )
    secrets = _secrets(connection.options)
    ok, message = False, ""
    try:
        # a fresh instance with the same options: the check opens and closes its own client,
        # never the one the running delivery worker sends with
        fresh = type(connection)(connection.connection, connection.options)
        fresh.system = connection.system
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            message = await fresh.check_connection()
        ok = True
    except ConnectionCheckFailed as exc:
        message = str(exc)
    except TimeoutError:
        message = f"no answer within {CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:  # a connector's own bug: say so, never a 500 with its trace
        message = f"the check itself failed: {type(exc).__name__}: {exc}"
    return JSONResponse(
        {
            "name": name,
            "connector": connection.name,
            "ok": ok,
            "message": scrub(message, secrets),
        }
    )
