"""``/ui``: the ops dashboard. Static pages (no build step, no Node.js) whose small vanilla
script (``hub/ui/app.js``) reads and writes the JSON API, as a script with a token would:
every figure a page shows, the API answers too. Pages need a logged-in session (else the
login page); what the user may do is the API's to decide (roles, CSRF, audit: hub.auth).

Every page is the same shell with its name; the script renders the data with ``textContent``
only (never as HTML), and the Content-Security-Policy allows scripts and styles from the hub
alone, in no frame."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from hub.auth import SESSION_COOKIE, Auth

from .deps import ProbeDep

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGES = {
    "": "overview",
    "failed": "failed",
    "audit": "audit",
    "mdm": "mdm",
    "users": "users",
    "mappings": "mappings",
    "orders": "orders",
}
ENTITY_PAGES = {"mdm": "golden"}  # /ui/mdm/<entity>/<golden id>
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> bytes:
    return resources.files("hub.ui").joinpath(name).read_bytes()


def _page(name: str) -> Response:
    html = _asset("page.html").decode().replace("{{page}}", name)
    return Response(html, media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(_asset(name), media_type=STATIC[name], headers=HEADERS)


@router.get("/login")
async def login_page() -> Response:
    return _page("login")


@router.get("")
async def root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/{path:path}")
async def page(path: str, request: Request, hub: ProbeDep) -> Response:
    """A page for a logged-in user; anyone else goes to the login page, and back after."""
    parts = path.strip("/").split("/")
    name = PAGES.get(parts[0]) if len(parts) == 1 else None
    if parts[0] == "failed" and len(parts) == 2 and parts[1]:
        name = "message"
    if parts[0] in ENTITY_PAGES and len(parts) == 3 and parts[1] and parts[2]:
        name = ENTITY_PAGES[parts[0]]
    if name is None:
        return Response("no such page", status_code=404, media_type="text/plain")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None or await Auth(hub.db).session(cookie) is None:
        return RedirectResponse("/ui/login", status_code=303)
    return _page(name)
