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
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final
from urllib.parse import unquote, urlsplit

from .errors import ConfigurationError

#: Host names that always mean this machine (the trailing dot is the fully qualified form).
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost."})
#: An error code we are willing to carry around and show: short, plain ASCII.
ERROR_CODE_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
#: What replaces an echoed credential in server-supplied text.
REDACTED: Final = "[redacted]"

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
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
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        raise ValueError("path must be relative to CloudSync's API, not an absolute URL")
    # Dot segments would climb out of a base URL's own path (a proxy prefix, say) to another
    # service on the same host; servers decode %2e too.
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        raise ValueError("path must not contain '.' or '..' segments")


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
