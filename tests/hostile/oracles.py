"""What the hostile examples must come to, decided from CloudSync's documented dialect
(``docs/cloudsync-api.md``) and RFC 6749, never by calling the code under test; and the checks
that no secret got out.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model

from django_cloudsync import dialect, errors
from django_cloudsync.client import CloudSync
from django_cloudsync.models import MAX_ACCOUNT_ID_LENGTH, CloudSyncToken
from tests.helpers import RESPONSE_LIMIT
from tests.hostile.strategies import MAX_EXPIRES_IN, MAX_SCOPE_LENGTH, AppValue, Secret

User = get_user_model()
T = TypeVar("T")

#: What an access or refresh token looks like on the page: nothing token-like may ever be shown.
TOKEN_PREFIXES = tuple(
    prefix.encode() for prefix in (*dialect.ACCESS_TOKEN_PREFIXES, *dialect.REFRESH_TOKEN_PREFIXES)
)
#: RFC 6749 §5.1 as this app documents it (``django_cloudsync.oauth``): at most ten years.
PAGE_STATUSES = frozenset({200, 302, 400, 401, 403, 404})


def leaks(text: str | bytes, secrets: Mapping[Any, str]) -> list[str]:
    """The names of the secrets found in ``text``."""
    haystack = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [secret.value for secret, value in secrets.items() if value and value.encode() in haystack]


def persisted() -> dict[str, int]:
    """How many rows a sign-in writes: users, accounts, allauth tokens, email addresses, our tokens."""
    models: tuple[Any, ...] = (User, SocialAccount, SocialToken, EmailAddress, CloudSyncToken)
    return {model.__name__: model.objects.count() for model in models}


def assert_page_shows_no_secret(response: Any, secrets: Mapping[Any, str]) -> None:
    """Neither the body nor any header holds a secret or anything that looks like a token."""
    shown = response.content + "\n".join(f"{name}: {value}" for name, value in response.items()).encode()
    assert not leaks(shown, secrets)
    assert not [prefix for prefix in TOKEN_PREFIXES if prefix in shown]


def assert_logs_show_no_secret(records: list[logging.LogRecord], secrets: Mapping[Any, str]) -> None:
    for record in records:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!s} {record.exc_info[1]!r}"
        assert not leaks(text, secrets), record.getMessage()


def assert_error_shows_no_secret(exc: errors.CloudSyncError, secrets: Mapping[Secret, str]) -> None:
    for text in (str(exc), repr(exc), exc.description or "", exc.error or "", *map(str, exc.args)):
        assert not leaks(text, secrets), type(exc).__name__


def row_state(row: CloudSyncToken) -> tuple[Any, ...]:
    """Everything a refresh changes in a stored row."""
    return (
        row.access_token_ciphertext,
        row.refresh_token_ciphertext,
        row.version,
        row.expires_at,
        row.lifetime,
        row.scope,
    )


def attempt(call: Callable[[], T]) -> tuple[T | None, errors.CloudSyncError | None]:
    """``(result, None)`` or ``(None, the typed error)``; any other exception propagates."""
    try:
        return call(), None
    except errors.CloudSyncError as exc:
        return None, exc


# --------------------------------------------------------------------------- CloudSync's answers


@dataclass(frozen=True)
class Rendered:
    """A rendered answer and what CloudSync's documented dialect makes of it."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    @property
    def too_big(self) -> bool:
        return len(self.body) > RESPONSE_LIMIT

    @property
    def undecodable(self) -> bool:
        """A body under a content encoding it is not in: reading it is an ``InvalidResponse``."""
        return bool(self.body) and self.header("Content-Encoding") is not None

    @property
    def is_redirect(self) -> bool:
        """What requests takes for a redirect: it reads such a body itself (for ``Response.next``)."""
        return self.status in (301, 302, 303, 307, 308) and self.header("Location") is not None

    @property
    def unreadable(self) -> bool:
        """No body to judge at all."""
        return self.too_big or self.undecodable

    def json(self) -> tuple[bool, Any]:
        """``(True, document)`` if the answer is JSON by its media type and parses, else ``(False, None)``."""
        media_type = (self.header("Content-Type") or "").split(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            return False, None
        try:
            return True, json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return False, None


def is_valid_token_response(data: Any) -> bool:
    """RFC 6749 §5.1 in CloudSync's dialect: a Bearer ``access_token`` that can travel in a header,
    an optional refresh token of the same form, ``expires_in`` a positive number of seconds (at
    most ten years; ASCII digits in a string are tolerated), ``scope`` a string of bounded length
    without NUL (PostgreSQL cannot store one)."""
    if not isinstance(data, dict):
        return False
    access_token, token_type = data.get("access_token"), data.get("token_type")
    refresh_token, expires_in, scope = data.get("refresh_token"), data.get("expires_in"), data.get("scope")
    if not isinstance(access_token, str) or not dialect.TOKEN_PATTERN.fullmatch(access_token):
        return False
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        return False
    if refresh_token is not None and not (
        isinstance(refresh_token, str) and dialect.TOKEN_PATTERN.fullmatch(refresh_token)
    ):
        return False
    if isinstance(expires_in, str) and re.fullmatch(r"[0-9]{1,10}", expires_in):
        expires_in = int(expires_in)
    if expires_in is not None and not (
        isinstance(expires_in, int) and not isinstance(expires_in, bool) and 0 < expires_in <= MAX_EXPIRES_IN
    ):
        return False
    return scope is None or (
        isinstance(scope, str) and len(scope) <= MAX_SCOPE_LENGTH and "\x00" not in scope
    )


def token_endpoint_outcome(answer: Rendered) -> str:
    """``"tokens"``, ``"invalid_grant"`` (RFC 6749 §5.2: the grant is dead) or ``"refused"``."""
    if answer.unreadable:
        return "refused"
    is_json, data = answer.json()
    if answer.status in (200, 201):
        return "tokens" if is_json and is_valid_token_response(data) else "refused"
    if 400 <= answer.status < 500 and isinstance(data, dict) and data.get("error") == dialect.INVALID_GRANT:
        return "invalid_grant"
    return "refused"


def profile_outcome(answer: Rendered) -> bool:
    """Whether ``GET /v1/me`` answered a profile this app can sign in with: a JSON object whose
    ``id`` is a non-empty string of at most 191 characters (the account id column), with no NUL
    (which PostgreSQL cannot store)."""
    if answer.unreadable or not 200 <= answer.status < 300:
        return False
    is_json, profile = answer.json()
    account_id = profile.get("id") if is_json and isinstance(profile, dict) else None
    return (
        isinstance(account_id, str)
        and 0 < len(account_id) <= MAX_ACCOUNT_ID_LENGTH
        and "\x00" not in account_id
    )


#: The call under test: the method, the fake's endpoint that answers it, and what it accepts.
API_CALLS: dict[str, tuple[Callable[[CloudSync], Any], str, Callable[[Any], bool]]] = {
    "me": (
        lambda api: api.me(),
        "me",
        lambda data: isinstance(data, dict) and isinstance(data.get("id"), str) and bool(data["id"]),
    ),
    "workspaces": (
        lambda api: api.workspaces(),
        "workspaces",
        lambda data: (
            isinstance(data, dict)
            and isinstance(data.get("data"), list)
            and all(isinstance(item, dict) for item in data["data"])
        ),
    ),
    "get": (lambda api: api.get(dialect.ME_PATH), "api", lambda data: True),
}


Outcome = type[errors.CloudSyncError] | None


def api_expectation(answer: Rendered, call: str, *, refreshes_on_401: bool) -> tuple[Outcome, ...]:
    """The errors the client may raise for ``answer`` (``None``: it returns), by errors.py's contract."""
    if answer.undecodable:
        # The transports decode gzip/deflate themselves, bounded: a body that is not in its
        # Content-Encoding is not what CloudSync documents, whatever its status.
        return (errors.InvalidResponse,)
    if answer.too_big:
        return (errors.InvalidResponse,)
    status = answer.status
    if 200 <= status < 300:
        if status in (204, 205) or not answer.body.strip():
            document = None
        else:
            is_json, document = answer.json()
            if not is_json:
                return (errors.InvalidResponse,)
        return (None,) if API_CALLS[call][2](document) else (errors.InvalidResponse,)
    if status == 401:
        # A user's stored token is refreshed once and the call repeated (against the real fake).
        return (None,) if refreshes_on_401 else (errors.NotAuthenticated,)
    if status == 403:
        return (errors.InsufficientScope,)
    if status == 429:
        return (errors.RateLimited,)
    if status >= 500:
        return (errors.ServerError,)
    return (errors.APIError,)


# --------------------------------------------------------------------------- requests from apps


def is_real(token: dict[str, Any], values: Mapping[Any, str], *names: str) -> bool:
    fields = {"client_id": AppValue.CLIENT_ID, "code": AppValue.CODE, "code_verifier": AppValue.CODE_VERIFIER}
    fields |= {"redirect_uri": AppValue.REDIRECT_URI, "access_token": AppValue.ACCESS_TOKEN}
    return all(token.get(name) == values[fields[name]] for name in names)


def code_signs_in(body: Any, values: Mapping[Any, str]) -> bool:
    """RFC 6749 §4.1.3 and RFC 7636 §4.5, and the site's list: exactly the app's own values."""
    if (
        not isinstance(body, dict)
        or body.get("process") != "login"
        or not isinstance(body.get("token"), dict)
    ):
        return False
    return is_real(body["token"], values, "client_id", "code", "code_verifier", "redirect_uri")


def access_token_signs_in(body: Any, values: Mapping[Any, str]) -> bool:
    """allauth's request shape (an ``id_token`` is a string if any), the real token, and a scope
    string of RFC 6749 §3.3 as the app documents it (at most 2048 characters)."""
    if not isinstance(body, dict) or not isinstance(token := body.get("token"), dict):
        return False
    scope, id_token = token.get("scope"), token.get("id_token")
    return (
        body.get("provider") == "cloudsync"
        and body.get("process") == "login"
        and is_real(token, values, "client_id", "access_token")
        and (id_token is None or isinstance(id_token, str))
        and (
            scope is None
            or (isinstance(scope, str) and len(scope) <= MAX_SCOPE_LENGTH and "\x00" not in scope)
        )
    )
