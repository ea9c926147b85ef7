"""Who may see the console and who may act in it.

- ``SYNDICATE_GATEWAY_CONSOLE``: ``off`` (no /ui at all), ``read`` (the default: watch
  only), ``write`` (the page may also submit and cancel tasks).
- With ``SYNDICATE_GATEWAY_API_KEY`` set, every console request needs the key: a Bearer
  header, or the cookie the login form sets (an HMAC of the key, never the key itself;
  HttpOnly, SameSite=Strict, path /ui). A browser cannot put a header on a page load or
  an EventSource, hence the cookie.
- Writes (POST) also need htmx's ``HX-Request`` header and, when the browser sends one, an
  ``Origin`` of this host: a form on another site can do neither (CSRF).
- A gateway bound to loopback answers the console only for a loopback ``Host`` (or its
  public URL's), so a DNS-rebinding page cannot read the tasks through the user's browser.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request

from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayDep, key_accepted

COOKIE = "syndicate_console"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
SECURITY_HEADERS = {
    # Scripts and styles only from /ui/static; SVG drawings are inline markup, not styles.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Access:
    """What this request may do in the console."""

    write: bool
    key_required: bool


def cookie_value(key: str) -> str:
    """The login cookie for ``key``: proves the key was given without holding it."""
    return hmac.new(key.encode(), b"syndicate-console-v1", hashlib.sha256).hexdigest()


def _host_allowed(request: Request, settings: GatewaySettings) -> bool:
    if settings.gateway_host not in LOOPBACK_NAMES:
        return True  # bound to a real interface: the operator put it on the network
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    allowed = set(LOOPBACK_NAMES)
    if settings.gateway_public_url:
        allowed.add(urlsplit(settings.gateway_public_url).hostname or "")
    return host in allowed


def signed_in(request: Request, settings: GatewaySettings) -> bool:
    key = settings.gateway_api_key
    if not key:
        return True
    if request.headers.get("authorization") and key_accepted(settings, request.headers["authorization"]):
        return True
    return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), cookie_value(key).encode())


def console_access(request: Request, gw: GatewayDep) -> Access:
    """The console's gate (a dependency of every /ui route but the login form and the
    static files): 404 when the console is off, 403 for a foreign Host, and without the
    key a redirect to the login form (pages) or 401 (fragments, streams, writes)."""
    s = gw.settings
    if s.gateway_console == "off":
        raise HTTPException(404, "the console is off (SYNDICATE_GATEWAY_CONSOLE=off)")
    if not _host_allowed(request, s):
        raise HTTPException(403, "the console answers only its own host names")
    if not signed_in(request, s):
        page = request.method == "GET" and "text/html" in request.headers.get("accept", "") \
            and not request.headers.get("hx-request")
        if page:
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
            raise HTTPException(303, headers={"Location": f"/ui/login?next={target}"})
        raise HTTPException(401, "the console needs the gateway's API key", headers={"WWW-Authenticate": "Bearer"})
    return Access(write=s.gateway_console == "write", key_required=bool(s.gateway_api_key))


ConsoleAccess = Annotated[Access, Depends(console_access)]


def console_writer(request: Request, access: ConsoleAccess) -> Access:
    """The gate of submit and cancel: a write-enabled console, and a request made by the
    console's own page."""
    if not access.write:
        raise HTTPException(403, "the console is read-only (SYNDICATE_GATEWAY_CONSOLE=write allows submit and cancel)")
    origin = request.headers.get("origin")
    if request.headers.get("hx-request") != "true" or (origin and urlsplit(origin).netloc != request.headers.get("host")):
        raise HTTPException(403, "writes are accepted from the console's own page only")
    return access


ConsoleWriter = Annotated[Access, Depends(console_writer)]


def safe_next(target: str | None) -> str:
    """Where the login form returns to: a path of the console, never another site."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui"
