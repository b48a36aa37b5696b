"""A fake CloudSync: authorization server and API in one WSGI application, all state in memory.

It speaks exactly the dialect of ``docs/cloudsync-api.md`` (every path, prefix and error code comes
from :mod:`django_cloudsync.dialect`), and it is strict where the real service may be lenient:
JSON-only token requests, byte-identical ``redirect_uri``, single-use codes, PKCE downgrade
protection, refresh token rotation with theft detection. An app that works against this fake
does not rely on a server's forgiveness.

It is a plain WSGI callable with no Django import, so it can be served on a real socket
(:class:`~django_cloudsync.testing.server.FakeCloudSyncServer`), mounted beside a Django site
(:func:`mount`), or run as its own process (``python -m django_cloudsync.testing``). Tests steer
it through Python attributes and methods, or through the ``/_fake/`` HTTP control endpoints when
it runs in another process.

It never logs, prints or echoes back a token or the client secret.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

from django_cloudsync import dialect

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

#: Where a fault can be injected: the token endpoint, any ``/v1`` path, or one API path.
FAULT_ENDPOINTS: Final = ("token", "api", "me", "workspaces")
#: What an injected fault looks like to the client.
FAULT_KINDS: Final = (
    "server_error",
    "bad_gateway",
    "timeout",
    "invalid_json",
    "html",
    "rate_limited",
    "invalid_grant",
    "malformed_profile",
)
#: The fault kind of an answer scripted with :meth:`FakeCloudSync.respond_next` (it carries its own
#: response, so it is not one of ``FAULT_KINDS``).
SCRIPTED: Final = "scripted"
DEFAULT_TIMEOUT_DELAY: Final = 3.0
#: Authorization codes live this long (seconds), as RFC 6749 §4.1.2 recommends at most 10 minutes.
DEFAULT_CODE_LIFETIME: Final = 60.0
#: Request bodies larger than this are refused: the fake must not be a memory sink.
MAX_BODY_BYTES: Final = 64 * 1024
#: The HTTP control endpoints live under this path (beside the OAuth and API paths).
CONTROL_PREFIX: Final = "/_fake/"
DEFAULT_USER: Final = ("usr_ada", "ada@example.com", "Ada Lovelace")

#: What each scope lets the application do, as CloudSync's documentation words it.
SCOPE_MEANINGS: Final = {
    "files:read": "read file contents",
    "files:write": "create and modify files",
    "workspaces:read": "list and view workspaces",
    "workspaces:write": "create and manage workspaces",
    dialect.OFFLINE_ACCESS: "stay connected when you are not using it (refresh tokens)",
}

# RFC 6749 error codes that the dialect module has no use for outside this fake.
_UNSUPPORTED_RESPONSE_TYPE: Final = "unsupported_response_type"
_UNSUPPORTED_GRANT_TYPE: Final = "unsupported_grant_type"
_INVALID_SCOPE: Final = "invalid_scope"
_SERVER_ERROR: Final = "server_error"
_RATE_LIMITED: Final = "rate_limited"
_NOT_FOUND: Final = "not_found"
_METHOD_NOT_ALLOWED: Final = "method_not_allowed"

#: The API's versioned root (``/v1/``), derived from the dialect rather than restated.
_API_ROOT: Final = dialect.ME_PATH.rsplit("/", 1)[0] + "/"
_MAX_WORKSPACE_NAME: Final = 100
#: Every this many issued tokens, dead records are dropped (see ``_prune_locked``).
_PRUNE_EVERY: Final = 1000
_COUNTER_NAMES: Final = (
    "authorize",
    "code_exchanges",
    "refreshes",
    "early_refreshes",
    "refresh_attempts",
    "invalid_grants",
    "token_requests",
    "api_calls",
    "faults_injected",
    "connections",
)
#: Sent with every response: nothing the fake answers may be cached or sniffed.
_COMMON_HEADERS: Final = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
)
_BAD_GATEWAY_PAGE: Final = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>\n"
)
_GATEWAY_TIMEOUT_PAGE: Final = (
    b"<html><head><title>504 Gateway Time-out</title></head>"
    b"<body><center><h1>504 Gateway Time-out</h1></center></body></html>\n"
)
_MAINTENANCE_PAGE: Final = (
    b'<!DOCTYPE html><html lang="en"><head><title>CloudSync is down for maintenance</title></head>'
    b"<body><h1>We'll be right back</h1></body></html>\n"
)
_TRUNCATED_JSON: Final = b'{"data": [{"id": "ws_'
#: RFC 9110 §5.6.2 ``token``: what a header name may be made of.
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers the server frames a response with: a scripted one would contradict the real body and
#: break the keep-alive connection for the requests after it.
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection"})


def _test_prefix(prefixes: dict[str, str]) -> str:
    """The sandbox prefix (``at_test_``, ``rt_test_``) among the dialect's prefixes."""
    return next(prefix for prefix, environment in prefixes.items() if environment == dialect.TEST)


_ACCESS_PREFIX: Final = _test_prefix(dialect.ACCESS_TOKEN_PREFIXES)
_REFRESH_PREFIX: Final = _test_prefix(dialect.REFRESH_TOKEN_PREFIXES)


@dataclass
class FakeUser:
    """A CloudSync account the consent page can sign in as; ``id`` is the stable account id."""

    id: str
    email: str | None = None
    name: str = ""

    def as_json(self) -> dict[str, str | None]:
        """The user as ``GET /v1/me`` shows it."""
        return {"id": self.id, "email": self.email, "name": self.name}


@dataclass
class _Code:
    """An authorization code and everything the token request must match."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    user_id: str
    code_challenge: str | None
    expires_at: float
    #: The grant issued from this code; set on first use, so a second use can revoke it.
    grant_id: str | None = None


@dataclass
class _Grant:
    """One authorization (a "token family"): every token descended from one code."""

    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    revoked: bool = False
    #: When the newest access token of this grant was issued, and for how long: a refresh before
    #: half of that lifetime has passed is "early" (a client refreshing twice per expiry).
    newest_issued_at: float = 0.0
    newest_lifetime: float = 0.0


@dataclass
class _AccessToken:
    grant_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class _RefreshToken:
    grant_id: str
    #: Spent by a rotating refresh: presenting it again is taken as theft.
    rotated: bool = False


@dataclass
class _Fault:
    kind: str
    retry_after: int | str | None
    #: How many more requests this fault answers; ``None`` means until cleared.
    remaining: int | None
    #: The exact answer of a ``SCRIPTED`` fault (see ``respond_next``); ``None`` for the named kinds.
    response: _Response | None = None


@dataclass(frozen=True)
class _Request:
    """The parts of a WSGI request the fake looks at."""

    method: str
    path: str
    script_name: str
    query: dict[str, list[str]]
    content_type: str
    authorization: str
    body: bytes
    body_too_large: bool

    @classmethod
    def from_environ(cls, environ: Environ) -> _Request:
        """Read the request, the body bounded by ``MAX_BODY_BYTES``."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        too_large = length > MAX_BODY_BYTES
        body = environ["wsgi.input"].read(length) if 0 < length <= MAX_BODY_BYTES else b""
        # PEP 3333 strings are bytes decoded as latin-1; the query string is really UTF-8.
        raw_query = environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", "replace")
        return cls(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=environ.get("PATH_INFO", "") or "/",
            script_name=environ.get("SCRIPT_NAME", "").rstrip("/"),
            query=parse_qs(raw_query, keep_blank_values=True),
            content_type=environ.get("CONTENT_TYPE", ""),
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
            body=body,
            body_too_large=too_large,
        )

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or ``None`` unless it is one sent as ``application/json``."""
        if self.content_type.split(";")[0].strip().lower() != "application/json":
            return None
        try:
            value = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def form(self) -> dict[str, list[str]]:
        """The body parsed as ``application/x-www-form-urlencoded``."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def status_line(self) -> str:
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:  # a scripted answer may use a code that HTTPStatus does not name
            phrase = "Unknown"
        return f"{self.status} {phrase}"

    def wsgi_headers(self) -> list[tuple[str, str]]:
        """The headers with the common ones and an exact ``Content-Length`` (keep-alive needs it)."""
        return [*self.headers, *_COMMON_HEADERS, ("Content-Length", str(len(self.body)))]


@dataclass(frozen=True)
class _AuthorizeRequest:
    """A validated authorization request, as the consent form carries it back."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None

    def hidden_fields(self) -> dict[str, str]:
        """The request parameters, for the consent form's hidden inputs (absent ones left out)."""
        fields = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": dialect.join_scope(self.scopes),
            "state": self.state,
            "code_challenge": self.code_challenge,
            "code_challenge_method": self.code_challenge_method,
        }
        return {name: value for name, value in fields.items() if value is not None}


def _json_response(
    status: int, payload: Any, headers: Iterable[tuple[str, str]] = (), *, raw: bytes | None = None
) -> _Response:
    body = raw if raw is not None else json.dumps(payload).encode("utf-8")
    return _Response(status, body, [("Content-Type", "application/json"), *headers])


def _oauth_error(
    status: int, error: str, description: str, headers: Iterable[tuple[str, str]] = ()
) -> _Response:
    """An RFC 6749 §5.2 token endpoint error."""
    return _json_response(status, {"error": error, "error_description": description}, headers)


def _api_error(status: int, error: str, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    """An API error exactly as the dialect documents it: ``{"error": ...}``."""
    return _json_response(status, {"error": error}, headers)


def _html_response(status: int, page: bytes, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    return _Response(status, page, [("Content-Type", "text/html; charset=utf-8"), *headers])


def _render_page(title: str, body: str) -> bytes:
    """A complete, small HTML page; ``body`` must already be escaped."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.4rem 1.2rem;margin-right:.5rem}}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
""".encode()


def _error_page(message: str) -> _Response:
    """RFC 6749 §4.1.2.1: a client or redirect URI that cannot be trusted gets a page, not a redirect."""
    body = (
        "<h1>Authorization error</h1>\n"
        f"<p>{html.escape(message)}</p>\n"
        "<p>You were not sent back to the application, because it could not be identified safely.</p>"
    )
    return _html_response(400, _render_page("CloudSync — Authorization error", body))


def _redirect(location: str) -> _Response:
    return _Response(302, b"", [("Location", location), ("Referrer-Policy", "no-referrer")])


def _redirect_with(redirect_uri: str, params: dict[str, str]) -> _Response:
    """Redirect to the client's ``redirect_uri`` with ``params`` added to its query."""
    query = urlencode(params)
    if redirect_uri.endswith(("?", "&")):
        return _redirect(redirect_uri + query)
    separator = "&" if "?" in redirect_uri else "?"
    return _redirect(redirect_uri + separator + query)


def _error_redirect(redirect_uri: str, state: str | None, error: str, description: str) -> _Response:
    """RFC 6749 §4.1.2.1: tell the client about a refused request through its redirect URI."""
    params = {"error": error, "error_description": description}
    if state is not None:
        params["state"] = state
    return _redirect_with(redirect_uri, params)


def _pkce_matches(verifier: object, challenge: str) -> bool:
    if not isinstance(verifier, str) or not dialect.PKCE_VALUE_PATTERN.fullmatch(verifier):
        return False
    return hmac.compare_digest(dialect.s256_challenge(verifier), challenge)


def _constant_time_equal(given: object, expected: str) -> bool:
    """Constant-time comparison of a credential from a request with the expected one."""
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1), else ``None``."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


def _single_values(params: dict[str, list[str]]) -> dict[str, str]:
    return {name: values[0] for name, values in params.items()}


def _default_workspaces(user: FakeUser) -> list[dict[str, str]]:
    """Two workspaces per user, with ids that are stable across resets and processes."""
    digest = hashlib.sha256(user.id.encode()).hexdigest()[:10]
    return [
        {"id": f"ws_{digest}_personal", "name": "Personal"},
        {"id": f"ws_{digest}_team", "name": "Team"},
    ]


class FakeCloudSync:
    """The fake CloudSync WSGI application. Thread-safe: every piece of state is behind one lock.

    ``token_lifetime`` (seconds, the ``expires_in`` of new access tokens), ``rotate_refresh_tokens``,
    ``omit_scope_on_refresh``, ``timeout_delay`` and ``code_lifetime`` are plain attributes that a
    test may change at any time. ``clock`` is the monotonic clock expiry is measured with.
    """

    def __init__(
        self,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",  # noqa: S107 - a well-known test credential
        token_lifetime: int = 3600,
        rotate_refresh_tokens: bool = True,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        #: Test switch: answer refreshes without ``scope`` (the dialect says: keep the old one).
        self.omit_scope_on_refresh = False
        #: How long a ``timeout`` fault stalls before its 504; finite, so nothing hangs forever.
        self.timeout_delay = DEFAULT_TIMEOUT_DELAY
        self.code_lifetime = DEFAULT_CODE_LIFETIME
        self._initial_config = (token_lifetime, rotate_refresh_tokens)
        self._clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, FakeUser] = {}
        self._workspaces: dict[str, list[dict[str, str]]] = {}
        self._current_user_id = DEFAULT_USER[0]
        self._restore_users_locked()
        self._forget_locked()

    def __repr__(self) -> str:
        return f"<FakeCloudSync client_id={self.client_id!r} users={len(self._users)}>"

    # ------------------------------------------------------------------ users

    def add_user(
        self, user_id: str, email: str | None = None, name: str | None = None, *, current: bool = False
    ) -> FakeUser:
        """Add (or replace) an account, with its two default workspaces; ``current`` makes it the
        one the consent page preselects."""
        user = FakeUser(id=user_id, email=email, name=name if name is not None else user_id)
        with self._lock:
            self._add_user_locked(user)
            if current:
                self._current_user_id = user.id
        return dataclasses.replace(user)

    @property
    def users(self) -> list[FakeUser]:
        """Copies of the accounts, in the order they were added."""
        with self._lock:
            return [dataclasses.replace(user) for user in self._users.values()]

    @property
    def current_user_id(self) -> str:
        """The account the consent page signs in as unless another one is chosen."""
        return self._current_user_id

    @current_user_id.setter
    def current_user_id(self, user_id: str) -> None:
        with self._lock:
            if user_id not in self._users:
                raise ValueError(f"unknown fake user: {user_id!r}")
            self._current_user_id = user_id

    def _add_user_locked(self, user: FakeUser) -> None:
        self._users[user.id] = user
        self._workspaces[user.id] = _default_workspaces(user)

    def _restore_users_locked(self) -> None:
        user_id, email, name = DEFAULT_USER
        self._users = {}
        self._workspaces = {}
        self._add_user_locked(FakeUser(id=user_id, email=email, name=name))
        self._current_user_id = user_id

    # ------------------------------------------------------------------ state helpers for tests

    def reset(self) -> None:
        """Forget codes, tokens, counters, faults and created workspaces; keep users and config."""
        with self._lock:
            self._forget_locked()
            for user in self._users.values():
                self._workspaces[user.id] = _default_workspaces(user)

    def restore_defaults(self) -> None:
        """Put config and users back as the constructor left them (``token_lifetime``, rotation,
        ``omit_scope_on_refresh``, ``timeout_delay``, ``code_lifetime``, only the default user).

        Together with :meth:`reset` this gives a test a fake no earlier test has touched.
        """
        with self._lock:
            self.token_lifetime, self.rotate_refresh_tokens = self._initial_config
            self.omit_scope_on_refresh = False
            self.timeout_delay = DEFAULT_TIMEOUT_DELAY
            self.code_lifetime = DEFAULT_CODE_LIFETIME
            self._restore_users_locked()

    def _forget_locked(self) -> None:
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._faults: dict[str, deque[_Fault]] = {endpoint: deque() for endpoint in FAULT_ENDPOINTS}
        self._counters: dict[str, int] = dict.fromkeys(_COUNTER_NAMES, 0)
        self._refreshes_by_user: Counter[str] = Counter()
        self._api_calls_by_path: Counter[str] = Counter()
        self._last_token_request: dict[str, Any] | None = None
        self._last_authorize_params: dict[str, str] | None = None
        self._issued_since_prune = 0

    def revoke_tokens(self, user_id: str | None = None) -> int:
        """Revoke every grant (all its access and refresh tokens), or only ``user_id``'s.

        Returns how many grants were revoked.
        """
        with self._lock:
            grants = [
                grant
                for grant in self._grants.values()
                if not grant.revoked and (user_id is None or grant.user_id == user_id)
            ]
            for grant in grants:
                grant.revoked = True
            return len(grants)

    def expire_access_tokens(self) -> int:
        """Make every access token issued so far expired now; returns how many were live."""
        with self._lock:
            now = self._clock()
            live = [token for token in self._access_tokens.values() if token.expires_at > now]
            for token in live:
                token.expires_at = now
            return len(live)

    def issue_tokens(
        self, user_id: str | None = None, scope: str = "workspaces:read offline_access"
    ) -> dict[str, Any]:
        """Mint tokens directly, as a successful code exchange would, without the browser flow.

        For tests that need a connected account but are not about signing in. Returns the token
        response (``access_token``, ``refresh_token`` if ``offline_access`` is in ``scope``, ...).
        """
        scopes = tuple(dialect.split_scope(scope))
        unknown = [s for s in scopes if s not in dialect.KNOWN_SCOPES]
        if unknown:
            raise ValueError(f"unknown scopes: {unknown}")
        with self._lock:
            user = user_id or self._current_user_id
            if user not in self._users:
                raise ValueError(f"unknown fake user: {user!r}")
            grant_id = self._new_grant_locked(user, scopes)
            return self._issue_tokens_locked(grant_id, scopes, self._clock(), with_refresh=None)

    @property
    def counters(self) -> dict[str, Any]:
        """A snapshot of the counters, with ``refreshes_by_user`` and ``api_calls_by_path`` dicts.

        ``code_exchanges`` and ``refreshes`` count successes; ``early_refreshes`` the refreshes
        of a grant whose newest access token had not lived half its lifetime (a client that
        refreshes twice per expiry shows here); ``refresh_attempts`` every refresh request;
        ``invalid_grants`` every ``invalid_grant`` answer; ``connections`` the TCP connections a
        :class:`FakeCloudSyncServer` accepted.
        """
        with self._lock:
            return {
                **self._counters,
                "refreshes_by_user": dict(self._refreshes_by_user),
                "api_calls_by_path": dict(self._api_calls_by_path),
            }

    @property
    def refreshes_by_user(self) -> dict[str, int]:
        """Successful refreshes per user id."""
        with self._lock:
            return dict(self._refreshes_by_user)

    @property
    def api_calls_by_path(self) -> dict[str, int]:
        """API requests per path (``/v1/me``, ...), whatever their outcome."""
        with self._lock:
            return dict(self._api_calls_by_path)

    @property
    def last_token_request(self) -> dict[str, Any] | None:
        """The JSON body of the last token request, ``client_secret`` masked as ``"***"``.

        ``None`` if there was none, or if its body was not a JSON object.
        """
        with self._lock:
            return copy.deepcopy(self._last_token_request)

    @property
    def last_authorize_params(self) -> dict[str, str] | None:
        """The query parameters of the last ``GET /oauth/authorize``."""
        with self._lock:
            return dict(self._last_authorize_params) if self._last_authorize_params is not None else None

    @property
    def config(self) -> dict[str, Any]:
        """The settings a test may change, and the users: nothing secret."""
        with self._lock:
            return {
                "client_id": self.client_id,
                "token_lifetime": self.token_lifetime,
                "rotate_refresh_tokens": self.rotate_refresh_tokens,
                "omit_scope_on_refresh": self.omit_scope_on_refresh,
                "timeout_delay": self.timeout_delay,
                "code_lifetime": self.code_lifetime,
                "current_user_id": self._current_user_id,
                "users": [user.as_json() for user in self._users.values()],
            }

    def record_connection(self) -> None:
        """Count one accepted TCP connection (called by the server that serves this fake)."""
        with self._lock:
            self._counters["connections"] += 1

    # ------------------------------------------------------------------ faults

    def fail_next(
        self, endpoint: str, kind: str, times: int = 1, retry_after: int | str | None = None
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with fault ``kind``.

        Faults queue up per endpoint and are served in the order they were added. ``"me"`` and
        ``"workspaces"`` faults are served before ``"api"`` ones (which match any ``/v1`` path).
        """
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        self._add_fault(endpoint, _Fault(kind, retry_after, times))

    def respond_next(
        self, endpoint: str, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> None:
        """Answer the next request to ``endpoint`` with exactly this response, once.

        For answers the named fault kinds do not cover: any final status (200-599, named or not),
        any body, any headers. Nothing is added but ``Content-Length`` and the common no-store
        headers: without a ``Content-Type`` in ``headers`` the answer has none. It queues with the
        faults of ``endpoint`` (same endpoints, same order) and counts in ``faults_injected``.
        A 1xx is refused (the client would wait for a final answer), and so are a body on a 204
        or 304, framing headers (``Content-Length``, ``Transfer-Encoding``, ``Connection``) and
        header lines that HTTP/1.1 cannot carry: each would break the connection, not the client.
        """
        _check_endpoint(endpoint)
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError("status must be a final HTTP status code, 200-599")
        if not isinstance(body, bytes):
            raise ValueError("body must be bytes")
        if body and status in (204, 304):
            raise ValueError("a 204 or 304 answer has no body")
        checked: list[tuple[str, str]] = []
        for name, value in headers or []:
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise ValueError("a header name must be an HTTP token")
            if name.lower() in _FRAMING_HEADERS:
                raise ValueError(f"{name} is the server's to send")
            if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
                raise ValueError(f"the value of {name} must be one header line")
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(f"the value of {name} must be Latin-1, as HTTP/1.1 sends it") from None
            checked.append((name, value))
        fault = _Fault(SCRIPTED, None, 1, response=_Response(status, body, checked))
        with self._lock:
            self._faults[endpoint].append(fault)

    def fail_always(self, endpoint: str, kind: str, retry_after: int | str | None = None) -> None:
        """Answer every request to ``endpoint`` with fault ``kind`` until :meth:`clear_faults`."""
        self._add_fault(endpoint, _Fault(kind, retry_after, None))

    def clear_faults(self) -> None:
        """Remove every queued and permanent fault."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()

    def _add_fault(self, endpoint: str, fault: _Fault) -> None:
        _check_endpoint(endpoint)
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if fault.kind == dialect.INVALID_GRANT and endpoint != "token":
            raise ValueError("an invalid_grant fault only makes sense on the token endpoint")
        if fault.retry_after is not None and not isinstance(fault.retry_after, (int, str)):
            raise ValueError("retry_after must be seconds or an HTTP date")
        with self._lock:
            self._faults[endpoint].append(fault)

    def _take_fault(self, endpoints: Iterable[str]) -> _Fault | None:
        """Consume the first pending fault of the first of ``endpoints`` that has one."""
        with self._lock:
            for endpoint in endpoints:
                queue = self._faults[endpoint]
                if not queue:
                    continue
                fault = queue[0]
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.popleft()
                self._counters["faults_injected"] += 1
                if fault.kind == dialect.INVALID_GRANT:
                    self._counters["invalid_grants"] += 1
                return dataclasses.replace(fault)
        return None

    def _fault_response(self, fault: _Fault) -> _Response:
        """What the client sees for an injected fault. Runs outside the lock (it may sleep)."""
        if fault.response is not None:
            return dataclasses.replace(fault.response, headers=list(fault.response.headers))
        if fault.kind == "timeout":
            time.sleep(max(0.0, float(self.timeout_delay)))
            return _html_response(504, _GATEWAY_TIMEOUT_PAGE)
        if fault.kind == "bad_gateway":
            return _html_response(502, _BAD_GATEWAY_PAGE)
        if fault.kind == "invalid_json":
            return _json_response(200, None, raw=_TRUNCATED_JSON)
        if fault.kind == "html":
            return _html_response(200, _MAINTENANCE_PAGE)
        if fault.kind == "rate_limited":
            headers = [] if fault.retry_after is None else [("Retry-After", str(fault.retry_after))]
            return _api_error(429, _RATE_LIMITED, headers)
        if fault.kind == dialect.INVALID_GRANT:
            return _oauth_error(400, dialect.INVALID_GRANT, "The grant is invalid (injected fault).")
        if fault.kind == "malformed_profile":
            # Well-formed JSON that breaks the documented shape: no `id`, a name of the wrong type.
            return _json_response(200, {"email": "someone@example.com", "name": ["not", "a", "string"]})
        return _api_error(500, _SERVER_ERROR)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point. Paths are relative to ``SCRIPT_NAME``, so the fake can be mounted."""
        response = self._dispatch(_Request.from_environ(environ))
        start_response(response.status_line, response.wsgi_headers())
        return [response.body]

    def _dispatch(self, request: _Request) -> _Response:
        if request.body_too_large:
            return _api_error(413, dialect.INVALID_REQUEST)
        if request.path == dialect.AUTHORIZE_PATH:
            return self._serve_authorize(request)
        if request.path == dialect.TOKEN_PATH:
            return self._serve_token(request)
        if request.path.startswith(_API_ROOT):
            return self._serve_api(request)
        if request.path.startswith(CONTROL_PREFIX):
            return self._serve_control(request)
        return _api_error(404, _NOT_FOUND)

    # ------------------------------------------------------------------ /oauth/authorize

    def _serve_authorize(self, request: _Request) -> _Response:
        if request.method == "GET":
            return self._show_consent(request)
        if request.method == "POST":
            return self._decide(request)
        return _html_response(
            405, _render_page("CloudSync — Method not allowed", ""), [("Allow", "GET, POST")]
        )

    def _validate_authorize(self, params: dict[str, list[str]]) -> _AuthorizeRequest | _Response:
        """RFC 6749 §4.1.1 checks, in the order that decides between an error page and a redirect."""
        client_id = params.get("client_id", [])
        redirect_uri = params.get("redirect_uri", [])
        if len(client_id) != 1 or not _constant_time_equal(client_id[0], self.client_id):
            return _error_page("Unknown or missing client_id.")
        if len(redirect_uri) != 1 or not dialect.is_redirect_uri(redirect_uri[0]):
            return _error_page(
                "Missing or invalid redirect_uri: it must be an absolute http(s) URI, or an app's "
                "private-use URI such as com.example.app:/callback."
            )
        uri = redirect_uri[0]
        state_values = params.get("state")
        state = state_values[0] if state_values else None
        repeated = sorted(name for name, values in params.items() if len(values) > 1)
        if repeated:
            return _error_redirect(
                uri, state, dialect.INVALID_REQUEST, f"Repeated parameters: {', '.join(repeated)}."
            )
        single = _single_values(params)
        response_type = single.get("response_type")
        if not response_type:
            return _error_redirect(uri, state, dialect.INVALID_REQUEST, "response_type is required.")
        if response_type != "code":
            return _error_redirect(
                uri, state, _UNSUPPORTED_RESPONSE_TYPE, "Only response_type=code is supported."
            )
        scopes = tuple(dialect.split_scope(single.get("scope")))
        unknown = [scope for scope in scopes if scope not in dialect.KNOWN_SCOPES]
        if unknown:
            return _error_redirect(uri, state, _INVALID_SCOPE, f"Unknown scope: {' '.join(unknown)}.")
        challenge = single.get("code_challenge") or None
        method = single.get("code_challenge_method") or None
        if challenge is not None:
            # RFC 7636 §4.3: without a method the challenge is "plain", which CloudSync refuses.
            if (method or "plain") != "S256":
                return _error_redirect(
                    uri, state, dialect.INVALID_REQUEST, "code_challenge_method must be S256."
                )
            if not dialect.PKCE_VALUE_PATTERN.fullmatch(challenge):
                return _error_redirect(uri, state, dialect.INVALID_REQUEST, "Malformed code_challenge.")
        return _AuthorizeRequest(
            client_id=client_id[0],
            redirect_uri=uri,
            scopes=scopes,
            state=state,
            code_challenge=challenge,
            code_challenge_method=method if challenge is not None else None,
        )

    def _show_consent(self, request: _Request) -> _Response:
        with self._lock:
            self._last_authorize_params = _single_values(request.query)
        validated = self._validate_authorize(request.query)
        if isinstance(validated, _Response):
            return validated
        with self._lock:
            self._counters["authorize"] += 1
            users = list(self._users.values())
            current = self._current_user_id
        page = _render_page(
            "CloudSync — Authorize",
            _consent_body(validated, request.script_name + dialect.AUTHORIZE_PATH, users, current),
        )
        return _html_response(200, page, [("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer")])

    def _decide(self, request: _Request) -> _Response:
        """The consent form's answer: a code, or ``access_denied``, sent to the redirect URI."""
        form = request.form()
        decision = form.pop("decision", [""])[0]
        chosen_user = form.pop("user", [""])[0]
        validated = self._validate_authorize(form)
        if isinstance(validated, _Response):
            return validated
        if decision == "deny":
            return _error_redirect(
                validated.redirect_uri, validated.state, dialect.ACCESS_DENIED, "The user denied the request."
            )
        if decision != "allow":
            return _error_page("Choose Allow or Deny.")
        with self._lock:
            user_id = chosen_user or self._current_user_id
            if user_id not in self._users:
                return _error_page("Unknown user.")
            code = secrets.token_urlsafe(32)
            self._codes[code] = _Code(
                client_id=validated.client_id,
                redirect_uri=validated.redirect_uri,
                scopes=validated.scopes,
                user_id=user_id,
                code_challenge=validated.code_challenge,
                expires_at=self._clock() + float(self.code_lifetime),
            )
        params = {"code": code}
        if validated.state is not None:
            params["state"] = validated.state
        return _redirect_with(validated.redirect_uri, params)

    # ------------------------------------------------------------------ /oauth/token

    def _serve_token(self, request: _Request) -> _Response:
        if request.method != "POST":
            return _oauth_error(405, dialect.INVALID_REQUEST, "Use POST.", [("Allow", "POST")])
        fields = request.json_object()
        self._note_token_request(request, fields)
        fault = self._take_fault(("token",))
        if fault is not None:
            return self._fault_response(fault)
        if fields is None:
            return _oauth_error(
                400,
                dialect.INVALID_REQUEST,
                "The body must be a JSON object sent as Content-Type: application/json.",
            )
        if not (
            _constant_time_equal(fields.get("client_id"), self.client_id)
            and _constant_time_equal(fields.get("client_secret"), self.client_secret)
        ):
            return _oauth_error(401, dialect.INVALID_CLIENT, "Client authentication failed.")
        grant_type = fields.get("grant_type")
        with self._lock:
            now = self._clock()
            if grant_type == "authorization_code":
                return self._exchange_code_locked(fields, now)
            if grant_type == "refresh_token":
                return self._refresh_locked(fields, now)
        if not grant_type:
            return _oauth_error(400, dialect.INVALID_REQUEST, "grant_type is required.")
        return _oauth_error(
            400, _UNSUPPORTED_GRANT_TYPE, "Only authorization_code and refresh_token are supported."
        )

    def _note_token_request(self, request: _Request, fields: dict[str, Any] | None) -> None:
        """Count the request and keep its (masked) body for tests that assert the dialect."""
        if fields is not None:
            grant_type = fields.get("grant_type")
        else:
            grant_type = _single_values(request.form()).get("grant_type")
        masked = None
        if fields is not None:
            masked = {name: "***" if name == "client_secret" else value for name, value in fields.items()}
        with self._lock:
            self._counters["token_requests"] += 1
            if grant_type == "refresh_token":
                self._counters["refresh_attempts"] += 1
            self._last_token_request = copy.deepcopy(masked)

    def _invalid_grant_locked(self, description: str) -> _Response:
        self._counters["invalid_grants"] += 1
        return _oauth_error(400, dialect.INVALID_GRANT, description)

    def _exchange_code_locked(self, fields: dict[str, Any], now: float) -> _Response:
        """``grant_type=authorization_code``, RFC 6749 §4.1.3, with PKCE (RFC 7636 §4.6)."""
        code = fields.get("code")
        if not isinstance(code, str) or not code:
            return _oauth_error(400, dialect.INVALID_REQUEST, "code is required.")
        record = self._codes.get(code)
        if record is None:
            return self._invalid_grant_locked("Unknown authorization code.")
        if record.grant_id is not None:
            # RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
            self._grants[record.grant_id].revoked = True
            return self._invalid_grant_locked("Authorization code already used; its tokens are revoked.")
        if now >= record.expires_at:
            return self._invalid_grant_locked("Authorization code expired.")
        if record.client_id != fields.get("client_id"):
            return self._invalid_grant_locked("Authorization code was issued to another client.")
        if fields.get("redirect_uri") != record.redirect_uri:
            return self._invalid_grant_locked("redirect_uri does not match the authorization request.")
        verifier = fields.get("code_verifier")
        if record.code_challenge is not None and not _pkce_matches(verifier, record.code_challenge):
            return self._invalid_grant_locked("code_verifier does not match the code_challenge.")
        if record.code_challenge is None and verifier is not None:
            # RFC 9700 §2.1.1: a verifier without a challenge is a PKCE downgrade attempt.
            return self._invalid_grant_locked("code_verifier sent, but no code_challenge was.")
        record.grant_id = self._new_grant_locked(record.user_id, record.scopes)
        self._counters["code_exchanges"] += 1
        payload = self._issue_tokens_locked(record.grant_id, record.scopes, now, with_refresh=None)
        return _json_response(200, payload)

    def _refresh_locked(self, fields: dict[str, Any], now: float) -> _Response:
        """``grant_type=refresh_token``, RFC 6749 §6, with rotation and reuse detection (RFC 9700 §4.14)."""
        token = fields.get("refresh_token")
        if not isinstance(token, str) or not token:
            return _oauth_error(400, dialect.INVALID_REQUEST, "refresh_token is required.")
        record = self._refresh_tokens.get(token)
        if record is None:
            return self._invalid_grant_locked("Unknown refresh token.")
        grant = self._grants[record.grant_id]
        if grant.client_id != fields.get("client_id"):
            return self._invalid_grant_locked("Refresh token was issued to another client.")
        if grant.revoked:
            return self._invalid_grant_locked("Refresh token revoked.")
        if record.rotated:
            grant.revoked = True
            return self._invalid_grant_locked(
                "Refresh token already used; every token of this authorization is revoked."
            )
        scopes = grant.scopes
        if "scope" in fields:
            requested = fields["scope"]
            narrowed = tuple(dialect.split_scope(requested)) if isinstance(requested, str) else None
            if narrowed is None or not set(narrowed) <= set(scopes):
                return _oauth_error(400, _INVALID_SCOPE, "A refresh may only narrow the granted scope.")
            scopes = narrowed
        if now - grant.newest_issued_at < grant.newest_lifetime / 2:
            self._counters["early_refreshes"] += 1
        rotate = bool(self.rotate_refresh_tokens)
        record.rotated = rotate
        payload = self._issue_tokens_locked(
            record.grant_id, scopes, now, with_refresh=rotate, include_scope=not self.omit_scope_on_refresh
        )
        self._counters["refreshes"] += 1
        self._refreshes_by_user[grant.user_id] += 1
        return _json_response(200, payload)

    def _new_grant_locked(self, user_id: str, scopes: tuple[str, ...]) -> str:
        grant_id = secrets.token_hex(12)
        self._grants[grant_id] = _Grant(client_id=self.client_id, user_id=user_id, scopes=scopes)
        return grant_id

    def _issue_tokens_locked(
        self,
        grant_id: str,
        scopes: tuple[str, ...],
        now: float,
        *,
        with_refresh: bool | None,
        include_scope: bool = True,
    ) -> dict[str, Any]:
        """A new access token (and refresh token) of ``grant_id``, as the token response.

        ``with_refresh=None`` issues a refresh token exactly when ``offline_access`` is granted.
        """
        lifetime = self.token_lifetime
        access_token = _ACCESS_PREFIX + secrets.token_urlsafe(32)
        self._access_tokens[access_token] = _AccessToken(grant_id, scopes, now + lifetime)
        grant = self._grants[grant_id]
        grant.newest_issued_at, grant.newest_lifetime = now, lifetime
        payload: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
        }
        if include_scope:
            payload["scope"] = dialect.join_scope(scopes)
        if with_refresh is None:
            with_refresh = dialect.OFFLINE_ACCESS in self._grants[grant_id].scopes
        if with_refresh:
            refresh_token = _REFRESH_PREFIX + secrets.token_urlsafe(32)
            self._refresh_tokens[refresh_token] = _RefreshToken(grant_id)
            payload["refresh_token"] = refresh_token
        self._issued_since_prune += 1
        if self._issued_since_prune >= _PRUNE_EVERY:
            self._prune_locked(now)
        return payload

    def _prune_locked(self, now: float) -> None:
        """Drop records whose every future answer is already settled, so a soak test stays small.

        An expired access token answers ``invalid_token`` known or not; a refresh token or a used
        code of a revoked grant answers ``invalid_grant`` and can revoke nothing more; an unused
        expired code answers ``invalid_grant`` either way. Behaviour is unchanged.
        """
        self._issued_since_prune = 0
        self._access_tokens = {
            token: record for token, record in self._access_tokens.items() if record.expires_at > now
        }
        self._refresh_tokens = {
            token: record
            for token, record in self._refresh_tokens.items()
            if not self._grants[record.grant_id].revoked
        }
        self._codes = {
            code: record for code, record in self._codes.items() if self._code_matters(record, now)
        }

    def _code_matters(self, record: _Code, now: float) -> bool:
        if record.grant_id is None:
            return record.expires_at > now
        return not self._grants[record.grant_id].revoked

    # ------------------------------------------------------------------ /v1 API

    def _serve_api(self, request: _Request) -> _Response:
        with self._lock:
            self._counters["api_calls"] += 1
            self._api_calls_by_path[request.path] += 1
        specific = {dialect.ME_PATH: "me", dialect.WORKSPACES_PATH: "workspaces"}.get(request.path)
        fault = self._take_fault((specific, "api") if specific else ("api",))
        if fault is not None:
            return self._fault_response(fault)
        routes: dict[str, dict[str, Callable[[FakeUser, _AccessToken, _Request], _Response]]] = {
            dialect.ME_PATH: {"GET": self._me_locked},
            dialect.WORKSPACES_PATH: {
                "GET": self._list_workspaces_locked,
                "POST": self._create_workspace_locked,
            },
        }
        methods = routes.get(request.path)
        if methods is None:
            return _api_error(404, _NOT_FOUND)
        handler = methods.get(request.method)
        if handler is None:
            return _api_error(405, _METHOD_NOT_ALLOWED, [("Allow", ", ".join(methods))])
        with self._lock:
            authenticated = self._authenticate_locked(request)
            if isinstance(authenticated, _Response):
                return authenticated
            user, token = authenticated
            return handler(user, token, request)

    def _authenticate_locked(self, request: _Request) -> tuple[FakeUser, _AccessToken] | _Response:
        """RFC 6750 §2.1: the ``Authorization`` header is the only place a token is accepted."""
        bearer = _bearer_token(request.authorization)
        token = self._access_tokens.get(bearer) if bearer else None
        grant = self._grants.get(token.grant_id) if token else None
        user = self._users.get(grant.user_id) if grant else None
        if (
            token is None
            or grant is None
            or user is None
            or grant.revoked
            or self._clock() >= token.expires_at
        ):
            return _api_error(
                401, dialect.INVALID_TOKEN, [("WWW-Authenticate", f'Bearer error="{dialect.INVALID_TOKEN}"')]
            )
        return user, token

    def _me_locked(self, user: FakeUser, token: _AccessToken, request: _Request) -> _Response:
        return _json_response(200, user.as_json())

    def _list_workspaces_locked(self, user: FakeUser, token: _AccessToken, request: _Request) -> _Response:
        refused = _require_scope(token, "workspaces:read")
        if refused is not None:
            return refused
        return _json_response(200, {"data": copy.deepcopy(self._workspaces[user.id])})

    def _create_workspace_locked(self, user: FakeUser, token: _AccessToken, request: _Request) -> _Response:
        refused = _require_scope(token, "workspaces:write")
        if refused is not None:
            return refused
        body = request.json_object()
        name = body.get("name") if body is not None else None
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_WORKSPACE_NAME:
            return _api_error(400, dialect.INVALID_REQUEST)
        workspace = {"id": "ws_" + secrets.token_hex(8), "name": name.strip()}
        self._workspaces[user.id].append(workspace)
        return _json_response(201, dict(workspace))

    # ------------------------------------------------------------------ /_fake/ control endpoints

    def _serve_control(self, request: _Request) -> _Response:
        """Steer a fake in another process. Answers never contain a token or the client secret."""
        action = request.path[len(CONTROL_PREFIX) :].strip("/")
        handlers: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "counters"): lambda body: self.counters,
            ("GET", "config"): lambda body: self.config,
            ("POST", "config"): self._control_config,
            ("POST", "reset"): self._control_reset,
            ("POST", "faults"): self._control_faults,
            ("DELETE", "faults"): lambda body: self.clear_faults(),
            ("POST", "expire"): lambda body: {"expired": self.expire_access_tokens()},
            ("POST", "revoke"): self._control_revoke,
            ("POST", "users"): self._control_add_user,
        }
        handler = handlers.get((request.method, action))
        if handler is None:
            allowed = [method for method, name in handlers if name == action]
            if allowed:
                return _api_error(405, _METHOD_NOT_ALLOWED, [("Allow", ", ".join(allowed))])
            return _api_error(404, _NOT_FOUND)
        body = request.json_object() if request.body else {}
        if body is None:
            return _oauth_error(400, dialect.INVALID_REQUEST, "The body must be a JSON object.")
        try:
            result = handler(body)
        except ValueError as exc:
            return _oauth_error(400, dialect.INVALID_REQUEST, str(exc))
        return _json_response(200, result if result is not None else {"ok": True})

    def _control_config(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate every field first, then apply them all: a bad request changes nothing."""
        checks: dict[str, Callable[[Any], bool]] = {
            "token_lifetime": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "rotate_refresh_tokens": lambda v: isinstance(v, bool),
            "omit_scope_on_refresh": lambda v: isinstance(v, bool),
            "timeout_delay": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
            "code_lifetime": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
            "current_user_id": lambda v: isinstance(v, str) and v in self._users,
        }
        for name, value in body.items():
            if name not in checks:
                raise ValueError(f"unknown setting: {name}")
            if not checks[name](value):
                raise ValueError(f"invalid value for {name}")
        for name, value in body.items():
            setattr(self, name, value)
        return self.config

    def _control_add_user(self, body: dict[str, Any]) -> dict[str, Any]:
        user_id, email, name = body.get("id"), body.get("email"), body.get("name")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("id must be a non-empty string")
        if email is not None and not isinstance(email, str):
            raise ValueError("email must be a string or null")
        if name is not None and not isinstance(name, str):
            raise ValueError("name must be a string or null")
        self.add_user(user_id, email, name)
        return {"id": user_id}

    def _control_reset(self, body: dict[str, Any]) -> None:
        self.reset()
        if body.get("defaults"):
            self.restore_defaults()

    def _control_faults(self, body: dict[str, Any]) -> None:
        endpoint, kind = body.get("endpoint"), body.get("kind")
        if not isinstance(endpoint, str) or not isinstance(kind, str):
            raise ValueError("endpoint and kind are required")
        if body.get("always"):
            self.fail_always(endpoint, kind, retry_after=body.get("retry_after"))
        else:
            self.fail_next(endpoint, kind, times=body.get("times", 1), retry_after=body.get("retry_after"))

    def _control_revoke(self, body: dict[str, Any]) -> dict[str, int]:
        user_id = body.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise ValueError("user_id must be a string")
        return {"revoked": self.revoke_tokens(user_id)}


def _check_endpoint(endpoint: str) -> None:
    if endpoint not in FAULT_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}")


def _require_scope(token: _AccessToken, scope: str) -> _Response | None:
    """RFC 6750 §3.1: a 403 naming the missing scope, or ``None`` if the token has it."""
    if scope in token.scopes:
        return None
    challenge = f'Bearer error="{dialect.INSUFFICIENT_SCOPE}", scope="{scope}"'
    return _api_error(403, dialect.INSUFFICIENT_SCOPE, [("WWW-Authenticate", challenge)])


def _consent_body(
    request: _AuthorizeRequest, action: str, users: list[FakeUser], current_user_id: str
) -> str:
    """The consent form; every value from the request or a user is escaped."""
    e = html.escape
    if request.scopes:
        items = "".join(
            f"<li><code>{e(scope)}</code> — {e(SCOPE_MEANINGS.get(scope, scope))}</li>\n"
            for scope in request.scopes
        )
        scopes = f"<ul>\n{items}</ul>"
    else:
        scopes = "<p>Only your account id, name and email.</p>"
    options = "".join(
        f'<option value="{e(user.id)}"{" selected" if user.id == current_user_id else ""}>'
        f"{e(user.name)}{f' ({e(user.email)})' if user.email else ''}</option>\n"
        for user in users
    )
    hidden = "".join(
        f'<input type="hidden" name="{e(name)}" value="{e(value)}">\n'
        for name, value in request.hidden_fields().items()
    )
    return f"""<h1>Authorize {e(request.client_id)}</h1>
<p>The application <strong>{e(request.client_id)}</strong> asks to use your CloudSync account:</p>
{scopes}
<form method="post" action="{e(action)}">
{hidden}<p><label for="user">Sign in as</label>
<select id="user" name="user">
{options}</select></p>
<p><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></p>
</form>
<p><small>You will be sent back to {e(request.redirect_uri)}. This is the fake CloudSync for
development and tests.</small></p>"""


def mount(django_app: WSGIApp, fake: FakeCloudSync, prefix: str = "/fake-cloudsync") -> WSGIApp:
    """A WSGI app that serves ``fake`` under ``prefix`` and everything else with ``django_app``.

    For the example project's ``runserver``: one process, one port, and the fake's base URL is
    ``http://host:port<prefix>``. The prefix moves from ``PATH_INFO`` to ``SCRIPT_NAME``, so the
    fake builds its own links (the consent form's action) under the prefix.
    """
    prefix = "/" + prefix.strip("/")
    if prefix == "/":
        raise ValueError("mount() needs a non-empty prefix")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path != prefix and not path.startswith(prefix + "/"):
            return django_app(environ, start_response)
        fake_environ = dict(environ)
        fake_environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + prefix
        fake_environ["PATH_INFO"] = path[len(prefix) :]
        return fake(fake_environ, start_response)

    return app
