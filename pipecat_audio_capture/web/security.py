"""Who may talk to the call review, and the headers every response carries.

Without an access token the server listens on loopback only, and answers only requests addressed
to a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``...): a web page the reviewer visits
cannot reach it through DNS rebinding. With a token, every request must carry it: as
``Authorization: Bearer TOKEN``, or in a cookie set when a page is opened once with
``?token=TOKEN``. The cookie holds an HMAC of the token (not the token), is HttpOnly and
SameSite=Strict. Tokens are compared in constant time.
"""

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

TOKEN_ENV = "PIPECAT_AUDIO_CAPTURE_TOKEN"
"""Environment variable ``pipecat-audio-capture serve`` reads the access token from."""

MIN_TOKEN_CHARS = 16
"""Shortest token accepted: it is all that guards the recordings off loopback."""

COOKIE = "call_review"
TOKEN_PARAM = "token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self' https://storage.googleapis.com; connect-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style, no other origin but GCS for signed audio URLs, no framing."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Set on every response, errors and files included. Pages and audio hold what callers said, so
nothing is cached."""

_COOKIE_CONTEXT = b"pipecat-audio-capture call review cookie"


def is_loopback(host: str) -> bool:
    """Whether a host name or address reaches this machine only (``localhost`` or loopback IP)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_problem(host: str, token: str | None) -> str | None:
    """Return why the server must not start with this address and token, or None if it may.

    Args:
        host: The address to listen on.
        token: The access token, None for none.
    """
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        return (
            f"the access token must be at least {MIN_TOKEN_CHARS} characters; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    if token is None and not is_loopback(host):
        return (
            f"listening on {host} lets other machines connect: give an access token with "
            f"--token or ${TOKEN_ENV} (or listen on 127.0.0.1 only)"
        )
    return None


def access_middleware(token: str | None) -> Middleware:
    """Return the middleware that lets a request through only as the module docstring says."""
    return _loopback_only if token is None else _token_required(token)


@web.middleware
async def _loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_loopback(_host_name(request)):
        raise web.HTTPForbidden(text="403: this server answers requests to localhost only")
    return await handler(request)


def _token_required(token: str) -> Middleware:
    cookie = _cookie_value(token)

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _same(request.cookies.get(COOKIE), cookie) or _same(_bearer(request), token):
            return await handler(request)
        if not _same(request.query.get(TOKEN_PARAM), token):
            raise web.HTTPUnauthorized(
                text="401: this call review needs its access token: open it once with "
                f"?{TOKEN_PARAM}=TOKEN, or send Authorization: Bearer TOKEN",
                headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="call review"'},
            )
        response = await handler(request)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="Strict", path="/")
        return response

    return check_token


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Add :data:`SECURITY_HEADERS` to a response about to be sent (an ``on_response_prepare``
    signal handler, so error responses and files get them too)."""
    response.headers.update(SECURITY_HEADERS)


def _host_name(request: web.Request) -> str:
    """Return the host name the request is addressed to (its Host header without the port)."""
    try:
        return urlsplit(f"//{request.host}").hostname or ""
    except ValueError:  # a malformed Host header, such as an unclosed "[::1"
        return ""


def _cookie_value(token: str) -> str:
    return hmac.new(token.encode(), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def _bearer(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
