"""The rules of the wire, in one place: where a credential may go, and how to read an answer safely.

Only the standard library (and :mod:`~django_cloudsync.errors`, which is stdlib only too), so that
the API client, the token endpoint, the system checks and the fake CloudSync all import the same
rules:

* **Hosts and URLs.** :func:`is_loopback_host` (``localhost``, ``localhost.`` and every loopback
  address), :func:`is_https_or_loopback`, :func:`split_base_url` (what an API base URL may be)
  and :func:`check_path` (what a relative API path may be: the token follows the URL).
* **Error answers.** :func:`parse_error` reads CloudSync's error code and description from a JSON
  error body and from a ``WWW-Authenticate: Bearer`` challenge, once, defensively; nothing that
  echoes a credential we sent survives it.
* **Retry-After**, as delay-seconds or an HTTP date (:func:`retry_after_seconds`).
* **Time and size while reading**, for both transports: a :class:`Deadline` bounds a whole call
  (connect, headers, body), and :class:`BoundedBody` counts the bytes on the wire and decodes
  ``gzip``/``deflate`` itself with a bound on the output, so a small compressed answer cannot
  inflate past ``CLOUDSYNC_MAX_RESPONSE_BYTES`` whatever the HTTP library would have done.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import posixpath
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final
from urllib.parse import unquote, urlsplit

from . import errors
from .errors import ConfigurationError

#: Host names that always mean this machine (the trailing dot is the fully qualified form).
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost."})
#: An error code we are willing to carry around and show: short, plain ASCII.
ERROR_CODE_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
#: What replaces an echoed credential in server-supplied text.
REDACTED: Final = "[redacted]"

#: Every API path lives under this root; a path that normalises elsewhere is refused.
API_ROOT: Final = "/v1/"
#: The content codings the transports ask for (``Accept-Encoding``) and decode themselves.
ACCEPT_ENCODING: Final = "gzip, deflate"

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
#: Percent-escapes a server or proxy may decode into a path separator, a dot segment, a path
#: parameter, or (``%25``) into one of those escapes at a server that decodes twice.
_ENCODED_PATH_SYNTAX = re.compile(r"%(?:2e|2f|5c|3b|25)", flags=re.IGNORECASE)
#: One ``name=value`` or ``name="quoted value"`` pair of a ``WWW-Authenticate`` challenge.
_AUTH_PARAM = re.compile(r'([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')
_BEARER = re.compile(r"(?:^|,)\s*Bearer\b(.*)", flags=re.IGNORECASE)


# -- hosts and URLs ---------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an IP address, without brackets) is this machine.

    ``localhost`` and ``localhost.`` in any case, and every loopback address: all of
    ``127.0.0.0/8`` and ``::1``.
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_https_or_loopback(url: str) -> bool:
    """Whether ``url`` is ``https`` with a host, or plain ``http`` on a loopback host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    if parts.scheme == "https":
        return bool(host)
    return parts.scheme == "http" and is_loopback_host(host)


def split_base_url(base: str) -> tuple[str, str]:
    """(scheme, host) of an API base URL; :class:`~.errors.ConfigurationError` if it is unusable."""
    try:
        parts = urlsplit(base)
        host = parts.hostname or ""
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise ConfigurationError("CloudSync's API URL is malformed") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigurationError("CloudSync's API URL must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        # requests would turn user:password@ into Basic auth, replacing our Authorization header.
        raise ConfigurationError("CloudSync's API URL must not contain credentials")
    if parts.query or parts.fragment:
        raise ConfigurationError("CloudSync's API URL must not have a query or fragment")
    return parts.scheme, host


def check_path(path: str) -> None:
    """Refuse anything but a relative API path such as ``/v1/files``: the token follows the URL."""
    if not isinstance(path, str):
        raise TypeError("path must be a string such as '/v1/files'")
    if not path.startswith("/") or path.startswith("//"):
        # "//host/x" is a scheme-relative URL: another host.
        raise ValueError("path must be a relative API path starting with '/', such as '/v1/files'")
    if "\\" in path or "#" in path or _CONTROL_CHARS.search(path) or any(c.isspace() for c in path):
        raise ValueError("path contains characters that are not allowed in an API path")
    # Starting with one "/", it has no scheme and no host: urlsplit() finds neither.
    parts = urlsplit(path)
    # Servers and proxies decode %2e, %2f and %5c before routing (some twice, hence %25), and
    # Tomcat-style servers read ";..." as path parameters: "/v1/files/..%2F..%2Fadmin" and
    # "/v1/files;/../admin" reach another service on the same host. Refused outright, whatever the
    # case, in the path part (a query may encode what it likes).
    if ";" in parts.path or _ENCODED_PATH_SYNTAX.search(parts.path):
        raise ValueError("path must not contain ';' or percent-encoded '.', '/', '\\' or '%'")
    # Dot segments would climb out of a base URL's own path (a proxy prefix, say) to another
    # service on the same host.
    decoded = unquote(parts.path)
    if any(segment in (".", "..") for segment in decoded.split("/")):
        raise ValueError("path must not contain '.' or '..' segments")
    # Whatever a server makes of it, the path must still name something under /v1/.
    normalized = posixpath.normpath(decoded)
    if not normalized.startswith(API_ROOT) or normalized == API_ROOT.rstrip("/"):
        raise ValueError(f"path must be an API path under {API_ROOT}, such as '/v1/files'")


def join_url(base: str, path: str) -> str:
    """``base + path`` after checking ``path``; ``ValueError`` if the result leaves ``base``'s origin."""
    check_path(path)
    url = base + path
    # Belt and braces: whatever the path was, the result must still be the same origin.
    parts, origin = urlsplit(url), urlsplit(base)
    if parts.scheme != origin.scheme or parts.netloc.lower() != origin.netloc.lower():
        raise ValueError("path must stay on CloudSync's API host")
    return url


def display_url(base: str) -> str:
    """The base URL for people: scheme, host, port and path, never userinfo."""
    parts = urlsplit(base)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# -- error answers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorBody:
    """What an error answer says, made safe to carry and show.

    ``error`` is a short ASCII code (or ``None``), ``description`` server text without control
    characters, ``scope`` the challenge's ``scope`` parameter; none contains a credential sent.
    """

    error: str | None = None
    description: str | None = None
    scope: str | None = None


def parse_error(content: bytes, www_authenticate: str = "", secrets: Iterable[str] = ()) -> ErrorBody:
    """Read an error answer's body and ``WWW-Authenticate`` header once, scrubbing ``secrets``.

    The JSON body wins over the challenge. A code that contains a secret is dropped; a secret in
    a description or scope is replaced by ``[redacted]``.
    """
    sent = [secret for secret in secrets if secret]
    code, description = _json_error(content)
    challenge = bearer_challenge(www_authenticate)
    code = code or clean_code(challenge.get("error"))
    if code and any(secret in code for secret in sent):
        code = None
    return ErrorBody(
        error=code,
        description=scrub(description or challenge.get("error_description"), sent),
        scope=scrub(challenge.get("scope"), sent),
    )


def clean_code(value: object) -> str | None:
    """``value`` if it looks like an error code, else ``None``."""
    return value if isinstance(value, str) and ERROR_CODE_PATTERN.fullmatch(value) else None


def scrub(text: str | None, secrets: Iterable[str]) -> str | None:
    """Server-supplied text, made safe to show: no control characters, never a secret we sent."""
    if not text:
        return None
    text = _CONTROL_CHARS.sub(" ", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def bearer_challenge(header: str) -> dict[str, str]:
    """The auth-params of a ``WWW-Authenticate: Bearer ...`` challenge (RFC 6750 §3)."""
    match = _BEARER.search(header)
    if not match:
        return {}
    params: dict[str, str] = {}
    for name, raw in _AUTH_PARAM.findall(match.group(1)):
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        params.setdefault(name.lower(), value)
    return params


def _json_error(content: bytes) -> tuple[str | None, str | None]:
    """(error code, description) from a JSON error body; (None, None) for HTML, garbage, ..."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    description = body.get("error_description") or body.get("message")
    if isinstance(error, dict):  # {"error": {"code": ..., "message": ...}} is common elsewhere
        description = description or error.get("message")
        error = error.get("code")
    return clean_code(error), description if isinstance(description, str) else None


def retry_after_seconds(value: str, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP date), else ``None``."""
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


# -- time and size while reading --------------------------------------------------------------


class Deadline:
    """The moment by which a call must be over, on the monotonic clock.

    A transport bounds every wait of one exchange by it (the connect, each read of the headers and
    of the body); a client call shares one among its attempts and the waits between them. A wait
    between attempts counts as spent when it is scheduled (:meth:`schedule_wait`), so the budget
    holds whichever sleep the caller uses (and a wait that really happened is not counted twice).
    """

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:  # also refuses NaN
            raise ValueError("a deadline must be a positive number of seconds")
        self.seconds = float(seconds)
        self._at = time.monotonic() + self.seconds
        #: The end of the last wait scheduled: the clock is taken to be there at least.
        self._resume_at = 0.0

    def __repr__(self) -> str:
        return f"<Deadline {self.seconds:g}s, {self.remaining():.3f}s left>"

    def _now(self) -> float:
        return max(time.monotonic(), self._resume_at)

    def remaining(self) -> float:
        """Seconds left (``0`` once it has passed)."""
        return max(0.0, self._at - self._now())

    def bound(self, seconds: float) -> float:
        """``seconds``, or the time left if that is less; :class:`~.errors.Timeout` if none is."""
        left = self.remaining()
        if left <= 0:
            raise errors.Timeout(
                f"CloudSync did not answer within the deadline of {self.seconds:g}s (CLOUDSYNC_DEADLINE)"
            )
        return min(seconds, left)

    def schedule_wait(self, seconds: float) -> bool:
        """Count a wait of ``seconds`` as spent, if it still leaves time for an attempt after it."""
        resume_at = self._now() + seconds
        if resume_at >= self._at:
            return False
        self._resume_at = resume_at
        return True


class BoundedBody:
    """One answer's body, collected from the wire and decoded with both sizes bounded.

    Feed it the raw bytes as they arrive (:meth:`feed`), then take the decoded body
    (:meth:`content`). More than ``limit`` bytes on the wire, or a body that decodes to more than
    ``limit`` bytes, is an :class:`~.errors.InvalidResponse` as soon as it is seen: a gzip bomb
    costs at most ``limit`` bytes of memory, not what it inflates to. ``gzip`` and ``deflate`` are
    decoded (what :data:`ACCEPT_ENCODING` asks for); any other or a stacked coding is refused, and
    so is a stream that does not decode or ends early.
    """

    def __init__(
        self,
        content_encoding: str | None,
        limit: int,
        *,
        content_length: str | None = None,
        status: int | None = None,
    ) -> None:
        self._limit = limit
        self._status = status
        self._wire = 0
        self._decoded = bytearray()
        if content_length and content_length.strip().isdigit() and int(content_length) > limit:
            raise self._too_large()  # no need to read what will be refused
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            # Stacked codings ("gzip, gzip") multiply what a few bytes inflate to; we asked for one.
            raise errors.InvalidResponse(
                "CloudSync sent a body in a content coding not asked for", status=status
            )
        # gzip: the gzip wrapper; deflate: the zlib wrapper (RFC 9110 §8.4.1.2). 32 + accepts either.
        self._wbits = (16 + zlib.MAX_WBITS) if codings and codings[0] != "deflate" else (32 + zlib.MAX_WBITS)
        self._decoder = zlib.decompressobj(self._wbits) if codings else None

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes from the wire."""
        self._wire += len(chunk)
        if self._wire > self._limit:
            raise self._too_large()
        if self._decoder is None:
            self._decoded += chunk
            return
        data = chunk
        while data:
            try:
                # One byte past the limit at most: enough to know it is too large, never more.
                self._decoded += self._decoder.decompress(data, self._limit - len(self._decoded) + 1)
            except zlib.error:
                raise self._undecodable() from None
            if len(self._decoded) > self._limit:
                raise self._too_large()
            data = b""
            if self._decoder.eof and self._decoder.unused_data:
                # A gzip body may hold several members, one after the other.
                data = self._decoder.unused_data
                self._decoder = zlib.decompressobj(self._wbits)

    def content(self) -> bytes:
        """The decoded body, once the wire has no more."""
        if self._decoder is not None and self._wire and not self._decoder.eof:
            raise self._undecodable()  # the compressed stream was cut short
        return bytes(self._decoded)

    def _too_large(self) -> errors.InvalidResponse:
        return errors.InvalidResponse("CloudSync sent a response larger than allowed", status=self._status)

    def _undecodable(self) -> errors.InvalidResponse:
        return errors.InvalidResponse(
            "CloudSync sent a body that does not decode as its Content-Encoding says", status=self._status
        )
