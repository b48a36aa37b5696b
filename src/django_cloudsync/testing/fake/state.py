"""Everything the fake CloudSync remembers, in memory, behind one lock: users and their
workspaces, codes, grants, tokens, counters, the settings a test may change, and the queued
switches. The helpers tests call to read or reset that state live here too.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from django_cloudsync import dialect

from .faults import DEFAULT_TIMEOUT_DELAY, FAULT_ENDPOINTS, FaultSwitches

#: Authorization codes live this long (seconds), as RFC 6749 §4.1.2 recommends at most 10 minutes.
DEFAULT_CODE_LIFETIME: Final = 60.0
DEFAULT_USER: Final = ("usr_ada", "ada@example.com", "Ada Lovelace")

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
    "delayed_answers",
)


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
class Code:
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
class Grant:
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
class AccessToken:
    grant_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class RefreshToken:
    grant_id: str
    #: Spent by a rotating refresh: presenting it again is taken as theft.
    rotated: bool = False


def _default_workspaces(user: FakeUser) -> list[dict[str, str]]:
    """Two workspaces per user, with ids that are stable across resets and processes."""
    digest = hashlib.sha256(user.id.encode()).hexdigest()[:10]
    return [
        {"id": f"ws_{digest}_personal", "name": "Personal"},
        {"id": f"ws_{digest}_team", "name": "Team"},
    ]


class FakeState(FaultSwitches):
    """The fake's state and the helpers tests use on it (see :class:`FakeCloudSync`)."""

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
        #: Other registered applications (client id: secret), from :meth:`add_client`.
        self._other_clients: dict[str, str] = {}
        self.token_lifetime = token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        #: Test switch: answer refreshes without ``scope`` (the dialect says: keep the old one).
        self.omit_scope_on_refresh = False
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
        """Forget codes, tokens, counters, faults, delays and created workspaces; keep users and config."""
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
            self._other_clients = {}

    def _forget_locked(self) -> None:
        self._codes: dict[str, Code] = {}
        self._grants: dict[str, Grant] = {}
        self._access_tokens: dict[str, AccessToken] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self._faults = {endpoint: deque() for endpoint in FAULT_ENDPOINTS}
        self._delays = {endpoint: deque() for endpoint in FAULT_ENDPOINTS}
        self._counters = dict.fromkeys(_COUNTER_NAMES, 0)
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
        :class:`FakeCloudSyncServer` accepted; ``faults_injected`` and ``delayed_answers`` the
        answers a fault or a delay switch changed.
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

    # ------------------------------------------------------------------ grants and tokens

    def add_client(self, client_id: str, client_secret: str) -> None:
        """Register another application (a site's second app, a mobile app): its codes and
        refresh tokens are its own, and another client presenting them gets ``invalid_grant``."""
        with self._lock:
            self._other_clients[client_id] = client_secret

    def client_secret_of(self, client_id: object) -> str | None:
        """The secret of a registered client, or ``None`` for a client id the fake does not know."""
        if client_id == self.client_id:
            return self.client_secret
        with self._lock:
            return self._other_clients.get(client_id) if isinstance(client_id, str) else None

    def _new_grant_locked(self, user_id: str, scopes: tuple[str, ...], client_id: str | None = None) -> str:
        grant_id = secrets.token_hex(12)
        self._grants[grant_id] = Grant(client_id=client_id or self.client_id, user_id=user_id, scopes=scopes)
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
        self._access_tokens[access_token] = AccessToken(grant_id, scopes, now + lifetime)
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
            self._refresh_tokens[refresh_token] = RefreshToken(grant_id)
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

    def _code_matters(self, record: Code, now: float) -> bool:
        if record.grant_id is None:
            return record.expires_at > now
        return not self._grants[record.grant_id].revoked
