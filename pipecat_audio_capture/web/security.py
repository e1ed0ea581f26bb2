"""Who may talk to the call review, and the headers every response carries.

Without an access token the server listens on loopback only, and answers only requests addressed
to a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``...): a web page the reviewer visits
cannot reach it through DNS rebinding. With a token, every request must carry it: as
``Authorization: Bearer TOKEN``, or in a cookie set when a page is opened once with
``?token=TOKEN``. The cookie holds the time it was issued and an HMAC of that time under the
token (not the token), is HttpOnly and SameSite=Strict, and expires after
:data:`~pipecat_audio_capture.defaults.SERVE_COOKIE_MAX_AGE_S`: the browser drops it (Max-Age)
and the server refuses it after that, however it was kept. Tokens are compared in constant time.

A token must be hard to guess (:func:`token_strength_problem`). A request holding bytes that are
not UTF-8 (in its path or any header, ``Authorization`` and ``Cookie`` included) is answered
``400`` before anything reads it.
"""

import hashlib
import hmac
import ipaddress
import math
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from pipecat_audio_capture import defaults

TOKEN_ENV = "PIPECAT_AUDIO_CAPTURE_TOKEN"
"""Environment variable ``pipecat-audio-capture serve`` reads the access token from."""

MIN_TOKEN_BITS = 128
"""Least estimated entropy of an access token: it is all that guards the recordings off
loopback. See :func:`token_strength_problem` for the estimate."""

TOKEN_RECIPE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
"""A command that prints a token well above :data:`MIN_TOKEN_BITS` (about 180 bits estimated)."""

COOKIE_CLOCK_SKEW_S = 60
"""How far in the future a cookie's issue time may lie (the clock stepped back since)."""

COOKIE = "call_review"
TOKEN_PARAM = "token"

SIGNED_AUDIO_ORIGINS = ("https://storage.googleapis.com", "https://*.amazonaws.com")
"""Where signed audio URLs of GCS and AWS S3 lead: the only other origins the player may load."""


def content_security_policy(media_origins: tuple[str, ...] = ()) -> str:
    """Return the Content-Security-Policy, the player also allowed to load ``media_origins``.

    Args:
        media_origins: Origins of an S3-compatible store (``https://minio.example.com:9000``)
            whose presigned URLs the player must load, besides GCS and AWS.
    """
    media = " ".join(("'self'", *SIGNED_AUDIO_ORIGINS, *media_origins))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"media-src {media}; connect-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()
"""No inline script or style, no other origin but GCS and S3 for signed audio URLs, no
framing."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Set on every response, errors and files included. Pages and audio hold what callers said, so
nothing is cached."""

_Admit = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
"""Lets a request through to its handler, or raises the HTTP error that refuses it."""

_COOKIE_CONTEXT = b"pipecat-audio-capture call review cookie"
_MAX_ISSUED_DIGITS = 12
"""An issue time in whole seconds needs 10 digits until the year 2286."""


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
    if token is not None:
        return token_strength_problem(token)
    if not is_loopback(host):
        return (
            f"listening on {host} lets other machines connect: give an access token with "
            f"--token or ${TOKEN_ENV} (or listen on 127.0.0.1 only)"
        )
    return None


def token_strength_problem(token: str) -> str | None:
    """Return why ``token`` is too easy to guess, or None if it is strong enough.

    A token is printable ASCII without spaces (it travels in a header and a URL), and its
    estimated entropy is at least :data:`MIN_TOKEN_BITS`. The estimate is the smaller of two
    upper bounds, so a token must pass both:

    - its length times the Shannon entropy of its own character frequencies (16 spaces or
      ``aaaa...`` are worth 0 bits; ``abab...`` 1 bit a character);
    - 8 bits per byte of its raw DEFLATE compression (a repeated word is worth little more than
      the word).

    Neither knows dictionaries: a passphrase of common words or a run like ``abcdef...`` can
    pass. Use a random token (:data:`TOKEN_RECIPE`).
    """
    if not all("!" <= char <= "~" for char in token):
        return "the access token must be printable ASCII without spaces; make one with " + (
            TOKEN_RECIPE
        )
    bits = estimated_bits(token)
    if bits < MIN_TOKEN_BITS:
        return (
            f"the access token is too easy to guess: about {bits:.0f} bits estimated, "
            f"{MIN_TOKEN_BITS} needed; make one with {TOKEN_RECIPE}"
        )
    return None


def estimated_bits(token: str) -> float:
    """Estimate a token's entropy in bits, as :func:`token_strength_problem` says."""
    counts = Counter(token).values()
    shannon = -sum(count * math.log2(count / len(token)) for count in counts)
    deflate = zlib.compressobj(level=9, wbits=-15)
    compressed = deflate.compress(token.encode()) + deflate.flush()
    return max(0.0, min(shannon, 8.0 * len(compressed)))


def access_middleware(
    token: str | None, *, cookie_max_age_s: int = defaults.SERVE_COOKIE_MAX_AGE_S
) -> Middleware:
    """Return the middleware that lets a request through only as the module docstring says.

    Args:
        token: The access token, or None to answer requests addressed to localhost only.
        cookie_max_age_s: How long the cookie set by ``?token=`` lets a browser in.
    """
    admit = _loopback_only if token is None else _token_required(token, cookie_max_age_s)

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _is_utf8(request):
            raise web.HTTPBadRequest(text="400: the request holds bytes that are not UTF-8")
        return await admit(request, handler)

    return check_access


async def _loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_loopback(_host_name(request)):
        raise web.HTTPForbidden(text="403: this server answers requests to localhost only")
    return await handler(request)


def _token_required(token: str, cookie_max_age_s: int) -> _Admit:
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _valid_cookie(request.cookies.get(COOKIE), token, cookie_max_age_s) or _same(
            _bearer(request), token
        ):
            return await handler(request)
        if not _same(request.query.get(TOKEN_PARAM), token):
            raise web.HTTPUnauthorized(
                text="401: this call review needs its access token: open it once with "
                f"?{TOKEN_PARAM}=TOKEN, or send Authorization: Bearer TOKEN",
                headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="call review"'},
            )
        response = await handler(request)
        response.set_cookie(
            COOKIE,
            _cookie_value(token, int(time.time())),
            max_age=cookie_max_age_s,
            httponly=True,
            samesite="Strict",
            path="/",
        )
        return response

    return check_token


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Add :data:`SECURITY_HEADERS` to a response about to be sent.

    An ``on_response_prepare`` signal handler, so error responses and files get them too.
    """
    response.headers.update(SECURITY_HEADERS)


def security_headers_adder(
    media_origins: tuple[str, ...],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Return an ``on_response_prepare`` handler like :func:`add_security_headers`.

    Its policy also lets the player load ``media_origins``.
    """
    if not media_origins:
        return add_security_headers
    headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(media_origins),
    }

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)

    return add


def _host_name(request: web.Request) -> str:
    """Return the host name the request is addressed to (its Host header without the port)."""
    try:
        return urlsplit(f"//{request.host}").hostname or ""
    except ValueError:  # a malformed Host header, such as an unclosed "[::1"
        return ""


def _cookie_value(token: str, issued_s: int) -> str:
    mac = hmac.new(token.encode(), _COOKIE_CONTEXT + b"|%d" % issued_s, hashlib.sha256)
    return f"{issued_s}.{mac.hexdigest()}"


def _valid_cookie(value: str | None, token: str, max_age_s: int) -> bool:
    """Whether a cookie was issued under ``token`` at most ``max_age_s`` ago."""
    issued, _, _ = (value or "").partition(".")
    if not (issued.isascii() and issued.isdigit() and len(issued) <= _MAX_ISSUED_DIGITS):
        return False
    age_s = time.time() - int(issued)
    if not -COOKIE_CLOCK_SKEW_S <= age_s <= max_age_s:
        return False
    return _same(value, _cookie_value(token, int(issued)))


def _is_utf8(request: web.Request) -> bool:
    """Whether the path and every header are valid UTF-8.

    aiohttp keeps bytes that are not UTF-8 as lone surrogates, which fail at the first
    ``encode()``; refusing them here keeps that failure from being a 500 further on.
    """
    texts = [request.raw_path, *request.headers.keys(), *request.headers.values()]
    try:
        for text in texts:
            text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _bearer(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
