"""The exceptions this app raises, catchable by meaning.

Every failure that reaches a caller is a :class:`CloudSyncError`: never a bare ``requests``
exception, a ``KeyError`` from an unexpected body, or a ``ValueError`` from bad JSON. Each error
carries the HTTP ``status`` and CloudSync's ``error`` code when there were any, and says whether
trying again later can help (``retryable``). No message, ``str()`` or ``repr()`` of these
errors ever contains a token, key or client secret: they are built only from status codes,
error codes and descriptions, never from request data.
"""

from __future__ import annotations

from typing import ClassVar

_MAX_DESCRIPTION = 200


class CloudSyncError(Exception):
    """Base class of every error raised by django-cloudsync."""

    #: Whether the same call may succeed if tried again later.
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "CloudSync request failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        error: str | None = None,
        description: str | None = None,
    ) -> None:
        self.status = status
        self.error = error
        # A server's description is shown to people; keep it short and plain.
        self.description = (description or "")[:_MAX_DESCRIPTION] or None
        self.message = message or self.default_message
        super().__init__(self.message)

    def __str__(self) -> str:
        details = [f"HTTP {self.status}" if self.status else "", self.error or ""]
        detail = ", ".join(d for d in details if d)
        return f"{self.message} ({detail})" if detail else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, error={self.error!r})"


class ConfigurationError(CloudSyncError):
    """The site's settings are incomplete or wrong (no encryption key, no client app, ...)."""

    default_message = "django-cloudsync is not configured correctly"


class NetworkError(CloudSyncError):
    """CloudSync could not be reached, or did not answer in time."""

    retryable = True
    default_message = "CloudSync could not be reached"


class Timeout(NetworkError):
    """CloudSync did not answer within the configured timeout."""

    default_message = "CloudSync did not answer in time"


class LockTimeout(Timeout):
    """Waiting for another worker took longer than ``CLOUDSYNC_LOCK_TIMEOUT``.

    The other worker held a lock these tokens need (a database lock, SQLite's write lock): try
    again later; nothing was changed.
    """

    default_message = "Another worker held a lock on the CloudSync tokens for too long"


class RefreshInProgress(LockTimeout):
    """Another worker is refreshing these tokens and did not finish within ``CLOUDSYNC_LOCK_TIMEOUT``."""

    default_message = "Another worker is refreshing the CloudSync tokens and did not finish in time"


class InvalidResponse(CloudSyncError):
    """CloudSync answered with something that is not what its documentation promises."""

    retryable = True
    default_message = "CloudSync sent an invalid response"


class APIError(CloudSyncError):
    """CloudSync's API answered with an HTTP error."""


class NotAuthenticated(APIError):
    """401: the token or key is missing, expired or revoked."""

    default_message = "CloudSync did not accept the credentials"


class InsufficientScope(APIError):
    """403: the grant lacks a permission; ``scope`` names it when CloudSync says which."""

    default_message = "The CloudSync grant lacks a required scope"

    def __init__(self, message: str | None = None, *, scope: str | None = None, **kwargs: object) -> None:
        self.scope = scope
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class RateLimited(APIError):
    """429: too many requests; ``retry_after`` is the wait CloudSync asked for, in seconds."""

    retryable = True
    default_message = "CloudSync is rate limiting these requests"

    def __init__(
        self, message: str | None = None, *, retry_after: float | None = None, **kwargs: object
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ServerError(APIError):
    """5xx: a fault on CloudSync's side; ``retry_after`` is the wait CloudSync asked for, if any."""

    retryable = True
    default_message = "CloudSync had an internal error"

    def __init__(
        self, message: str | None = None, *, retry_after: float | None = None, **kwargs: object
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class TokenRequestFailed(CloudSyncError):
    """The token endpoint refused a request for a reason other than a dead grant.

    For example ``invalid_client`` (wrong client secret) or ``invalid_request``. A 5xx from the
    token endpoint is a :class:`ServerError` instead, and a dead refresh token is
    :class:`ReauthorizationRequired`.
    """

    default_message = "CloudSync refused the token request"


class InvalidGrant(TokenRequestFailed):
    """``invalid_grant``: the code or refresh token is invalid, expired, revoked or already used."""

    default_message = "CloudSync rejected the grant"


class ReauthorizationRequired(CloudSyncError):
    """The refresh token is dead (revoked, expired or already used): the user must authorize again.

    The stored tokens have been forgotten by the time this is raised. ``scopes`` lists scopes
    to ask for again, when known.
    """

    default_message = "CloudSync access must be authorized again"

    def __init__(
        self, message: str | None = None, *, scopes: list[str] | None = None, **kwargs: object
    ) -> None:
        self.scopes = list(scopes or [])
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


__all__ = [
    "APIError",
    "CloudSyncError",
    "ConfigurationError",
    "InsufficientScope",
    "InvalidResponse",
    "LockTimeout",
    "NetworkError",
    "NotAuthenticated",
    "RateLimited",
    "ReauthorizationRequired",
    "RefreshInProgress",
    "ServerError",
    "Timeout",
    "TokenRequestFailed",
]


class UndecryptableToken(CloudSyncError):
    """A stored token could not be decrypted: its key is gone, or the ciphertext is not its row's.

    A ciphertext copied into another row or field fails here instead of authenticating the
    wrong account.
    """

    default_message = "A stored CloudSync token could not be decrypted"


__all__ += ["InvalidGrant", "UndecryptableToken"]
