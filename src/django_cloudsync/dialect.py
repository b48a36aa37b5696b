"""CloudSync's protocol dialect, in one place.

Everything this app assumes about CloudSync that its public "Authentication" page states or
leaves open (see ``docs/cloudsync-api.md`` in the repository) lives here, so that a change in
the real service is a change to this module and, at most, to ``SOCIALACCOUNT_PROVIDERS``.
The provider, the API client and the fake CloudSync all read these names; none hard-codes its own.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final, Literal
from urllib.parse import urlsplit

DEFAULT_AUTH_URL: Final = "https://auth.cloudsync.io"
DEFAULT_API_URL: Final = "https://api.cloudsync.io"

AUTHORIZE_PATH: Final = "/oauth/authorize"
TOKEN_PATH: Final = "/oauth/token"
ME_PATH: Final = "/v1/me"
WORKSPACES_PATH: Final = "/v1/workspaces"

#: Scopes are space-separated in the authorize URL and in the token response.
SCOPE_DELIMITER: Final = " "
#: Without this scope CloudSync issues no refresh token.
OFFLINE_ACCESS: Final = "offline_access"
KNOWN_SCOPES: Final = (
    "files:read",
    "files:write",
    "workspaces:read",
    "workspaces:write",
    OFFLINE_ACCESS,
)

Environment = Literal["live", "test"]
LIVE: Final = "live"
TEST: Final = "test"

ACCESS_TOKEN_PREFIXES: Final = {"at_live_": LIVE, "at_test_": TEST}
REFRESH_TOKEN_PREFIXES: Final = {"rt_live_": LIVE, "rt_test_": TEST}
API_KEY_PREFIXES: Final = {"sk_live_": LIVE, "sk_test_": TEST}

#: What a token or key may look like: RFC 6750 §2.1 ``b64token``, at most 4 KiB. It travels in an
#: HTTP header, so anything else (a newline, a space) is refused before it is stored or sent.
TOKEN_PATTERN: Final = re.compile(r"[A-Za-z0-9\-._~+/]{1,4096}=*")
#: A PKCE code verifier, and an S256 code challenge: RFC 7636 §4.1 and §4.2.
PKCE_VALUE_PATTERN: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
#: An app's private-use URI scheme is a reverse domain name it controls (RFC 8252 §7.1).
_PRIVATE_USE_SCHEME = re.compile(r"[a-z][a-z0-9+\-]*(?:\.[a-z0-9+\-]+)+", re.IGNORECASE)
#: The characters a URI may hold (RFC 3986 §2: unreserved, reserved, and ``%`` for encoding):
#: ASCII only, no space or control character. ``#`` is among them, and refused on its own.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")

# RFC 6749 §5.2 error codes at the token endpoint, and the API's own error codes.
INVALID_GRANT: Final = "invalid_grant"
INVALID_CLIENT: Final = "invalid_client"
INVALID_REQUEST: Final = "invalid_request"
INVALID_TOKEN: Final = "invalid_token"
INSUFFICIENT_SCOPE: Final = "insufficient_scope"
ACCESS_DENIED: Final = "access_denied"


def environment_of(secret: str, prefixes: dict[str, str]) -> str | None:
    """Return ``"live"`` or ``"test"`` from a token's or key's prefix, ``None`` if it has none."""
    for prefix, environment in prefixes.items():
        if secret.startswith(prefix):
            return environment
    return None


def s256_challenge(verifier: str) -> str:
    """The PKCE ``S256`` code challenge of ``verifier``: BASE64URL-NOPAD(SHA256(verifier)), RFC 7636 §4.2."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_redirect_uri(value: object) -> bool:
    """Whether CloudSync can send an authorization response to ``value``.

    An absolute ``http``/``https`` URI with a host (a website, or an app's claimed HTTPS or
    loopback URI), or an app's private-use scheme such as ``com.example.app:/callback``
    (RFC 8252 §7); never with a fragment (RFC 6749 §3.1.2), and only of URI characters (an IRI
    such as ``https://bücher.example/cb`` is not a URI: its host would be compared byte for byte).
    """
    if not isinstance(value, str) or "#" in value or not _URI_CHARACTERS.fullmatch(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme in ("http", "https"):
        return bool(parts.netloc)
    return bool(_PRIVATE_USE_SCHEME.fullmatch(parts.scheme)) and len(value) > len(parts.scheme) + 1


def split_scope(scope: str | None) -> list[str]:
    """Split a space-separated scope string into its scopes, keeping their order, once each."""
    return list(dict.fromkeys((scope or "").split()))


def join_scope(scopes: list[str] | tuple[str, ...]) -> str:
    """Join scopes for the wire: deterministic order (as given), no duplicates."""
    return SCOPE_DELIMITER.join(dict.fromkeys(s for s in scopes if s))
