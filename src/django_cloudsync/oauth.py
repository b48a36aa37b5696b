"""CloudSync's token endpoint: the code exchange and the refresh, in CloudSync's JSON dialect.

Both grants are a ``POST`` with a JSON body that carries the client credentials (CloudSync
documents no form body and no HTTP Basic auth). The answer is validated before anything uses
it: a token endpoint that answers garbage is an :class:`~django_cloudsync.errors.InvalidResponse`,
never a ``KeyError`` and never a half-saved row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.views.decorators.debug import sensitive_variables

from . import conf, dialect, errors
from .http import Outgoing, error_of, parse_json, send

# A hostile response cannot smuggle a header or a newline into our requests or logs.
_TOKEN_RE = dialect.TOKEN_PATTERN
_MAX_EXPIRES_IN = 10 * 365 * 24 * 3600
_MAX_SCOPE_LENGTH = 2048


@dataclass(frozen=True)
class TokenResponse:
    """A validated answer of the token endpoint (always a Bearer token). Its ``repr`` shows no token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int | None
    scope: str | None

    @property
    def environment(self) -> str | None:
        """``"live"`` or ``"test"``, from the access token's prefix."""
        return dialect.environment_of(self.access_token, dialect.ACCESS_TOKEN_PREFIXES)

    @classmethod
    def from_json(cls, data: Any) -> TokenResponse:
        """Validate a token response body; :class:`~django_cloudsync.errors.InvalidResponse` if it is off."""
        if not isinstance(data, dict):
            raise errors.InvalidResponse("The token response is not a JSON object")
        access_token = data.get("access_token")
        if not isinstance(access_token, str) or not _TOKEN_RE.fullmatch(access_token):
            raise errors.InvalidResponse("The token response has no valid access_token")
        token_type = data.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise errors.InvalidResponse("The token response is not for a Bearer token")
        refresh_token = data.get("refresh_token")
        if refresh_token is not None and (
            not isinstance(refresh_token, str) or not _TOKEN_RE.fullmatch(refresh_token)
        ):
            raise errors.InvalidResponse("The token response has an invalid refresh_token")
        expires_in = data.get("expires_in")
        if expires_in is not None:
            # bool is an int in Python; "3600" as a string is tolerated, 3600.5 is not.
            if isinstance(expires_in, str) and re.fullmatch(r"[0-9]{1,10}", expires_in):
                expires_in = int(expires_in)
            if not isinstance(expires_in, int) or isinstance(expires_in, bool):
                raise errors.InvalidResponse("The token response has an invalid expires_in")
            if not 0 < expires_in <= _MAX_EXPIRES_IN:
                raise errors.InvalidResponse("The token response has an out-of-range expires_in")
        scope = data.get("scope")
        if scope is not None and (
            not isinstance(scope, str) or len(scope) > _MAX_SCOPE_LENGTH or "\x00" in scope
        ):
            raise errors.InvalidResponse("The token response has an invalid scope")
        return cls(
            access_token=access_token,
            refresh_token=refresh_token or None,
            expires_in=expires_in,
            scope=dialect.join_scope(dialect.split_scope(scope)) if scope is not None else None,
        )


@sensitive_variables("client_secret", "code", "code_verifier")
def exchange_code(
    *,
    code: str,
    redirect_uri: str,
    client_id: str,
    client_secret: str,
    code_verifier: str | None = None,
) -> TokenResponse:
    """Exchange an authorization code for tokens (``grant_type=authorization_code``)."""
    body = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code,
        "redirect_uri": redirect_uri,
    }
    if code_verifier:
        body["code_verifier"] = code_verifier
    return _request_token(body)


@sensitive_variables("client_secret", "refresh_token")
def refresh(*, refresh_token: str, client_id: str, client_secret: str) -> TokenResponse:
    """Get a new access token (``grant_type=refresh_token``)."""
    return _request_token(
        {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
    )


@sensitive_variables()
def _request_token(body: dict[str, str]) -> TokenResponse:
    response = send(
        Outgoing(
            "POST",
            conf.auth_url() + dialect.TOKEN_PATH,
            json_body=body,
            headers={"Accept": "application/json"},
        )
    )
    status = response.status_code
    if status in (200, 201):
        return TokenResponse.from_json(parse_json(response))
    # A server may echo what it was sent; nothing from the request body reaches our errors.
    sent = [value for key, value in body.items() if key not in ("grant_type", "client_id", "redirect_uri")]
    answer = error_of(response, secrets=sent)
    error = answer.error
    if status >= 500:
        raise errors.ServerError(status=status, error=error)
    if error == dialect.INVALID_GRANT:
        raise errors.InvalidGrant(status=status, error=error, description=answer.description)
    if 400 <= status < 500 and error:
        raise errors.TokenRequestFailed(status=status, error=error, description=answer.description)
    raise errors.InvalidResponse("The token endpoint answered unexpectedly", status=status, error=error)
