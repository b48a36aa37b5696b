"""The fake CloudSync's API under ``/v1``: ``GET /v1/me``, ``GET`` and ``POST /v1/workspaces``,
with bearer tokens only in the ``Authorization`` header (RFC 6750 §2.1) and scope checks.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from typing import Final

from django_cloudsync import dialect

from .faults import switch_endpoints
from .state import AccessToken, FakeState, FakeUser
from .wsgi import METHOD_NOT_ALLOWED, NOT_FOUND, Request, Response, api_error, json_response

_MAX_WORKSPACE_NAME: Final = 100


def _bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1), else ``None``."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


def _require_scope(token: AccessToken, scope: str) -> Response | None:
    """RFC 6750 §3.1: a 403 naming the missing scope, or ``None`` if the token has it."""
    if scope in token.scopes:
        return None
    challenge = f'Bearer error="{dialect.INSUFFICIENT_SCOPE}", scope="{scope}"'
    return api_error(403, dialect.INSUFFICIENT_SCOPE, [("WWW-Authenticate", challenge)])


class CloudSyncAPI(FakeState):
    """The ``/v1`` API: the resource server's part of the fake."""

    # ------------------------------------------------------------------ /v1 API

    def _serve_api(self, request: Request) -> Response:
        with self._lock:
            self._counters["api_calls"] += 1
            self._api_calls_by_path[request.path] += 1
        fault = self._take_fault(switch_endpoints(request.path))
        if fault is not None:
            return self._fault_response(fault)
        routes: dict[str, dict[str, Callable[[FakeUser, AccessToken, Request], Response]]] = {
            dialect.ME_PATH: {"GET": self._me_locked},
            dialect.WORKSPACES_PATH: {
                "GET": self._list_workspaces_locked,
                "POST": self._create_workspace_locked,
            },
        }
        methods = routes.get(request.path)
        if methods is None:
            return api_error(404, NOT_FOUND)
        handler = methods.get(request.method)
        if handler is None:
            return api_error(405, METHOD_NOT_ALLOWED, [("Allow", ", ".join(methods))])
        with self._lock:
            authenticated = self._authenticate_locked(request)
            if isinstance(authenticated, Response):
                return authenticated
            user, token = authenticated
            return handler(user, token, request)

    def _authenticate_locked(self, request: Request) -> tuple[FakeUser, AccessToken] | Response:
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
            return api_error(
                401, dialect.INVALID_TOKEN, [("WWW-Authenticate", f'Bearer error="{dialect.INVALID_TOKEN}"')]
            )
        return user, token

    def _me_locked(self, user: FakeUser, token: AccessToken, request: Request) -> Response:
        return json_response(200, user.as_json())

    def _list_workspaces_locked(self, user: FakeUser, token: AccessToken, request: Request) -> Response:
        refused = _require_scope(token, "workspaces:read")
        if refused is not None:
            return refused
        return json_response(200, {"data": copy.deepcopy(self._workspaces[user.id])})

    def _create_workspace_locked(self, user: FakeUser, token: AccessToken, request: Request) -> Response:
        refused = _require_scope(token, "workspaces:write")
        if refused is not None:
            return refused
        body = request.json_object()
        name = body.get("name") if body is not None else None
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_WORKSPACE_NAME:
            return api_error(400, dialect.INVALID_REQUEST)
        workspace = {"id": "ws_" + secrets.token_hex(8), "name": name.strip()}
        self._workspaces[user.id].append(workspace)
        return json_response(201, dict(workspace))
