"""The fake CloudSync's control endpoints under ``/_fake/``: what a test in another process (a
soak test, a browser test) uses instead of the Python methods. No answer contains a token or
the client secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from django_cloudsync import dialect

from .state import FakeState
from .wsgi import METHOD_NOT_ALLOWED, NOT_FOUND, Request, Response, api_error, json_response, oauth_error

#: The HTTP control endpoints live under this path (beside the OAuth and API paths).
CONTROL_PREFIX: Final = "/_fake/"


class ControlEndpoints(FakeState):
    """``/_fake/counters``, ``/_fake/config``, ``/_fake/faults``, ``/_fake/delays``, ...: the fake
    steered over HTTP."""

    def _serve_control(self, request: Request) -> Response:
        """Steer a fake in another process. Answers never contain a token or the client secret."""
        action = request.path[len(CONTROL_PREFIX) :].strip("/")
        handlers: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "counters"): lambda body: self.counters,
            ("GET", "config"): lambda body: self.config,
            ("POST", "config"): self._control_config,
            ("POST", "reset"): self._control_reset,
            ("POST", "faults"): self._control_faults,
            ("DELETE", "faults"): lambda body: self.clear_faults(),
            ("POST", "delays"): self._control_delays,
            ("DELETE", "delays"): lambda body: self.clear_delays(),
            ("POST", "expire"): lambda body: {"expired": self.expire_access_tokens()},
            ("POST", "revoke"): self._control_revoke,
            ("POST", "users"): self._control_add_user,
        }
        handler = handlers.get((request.method, action))
        if handler is None:
            allowed = [method for method, name in handlers if name == action]
            if allowed:
                return api_error(405, METHOD_NOT_ALLOWED, [("Allow", ", ".join(allowed))])
            return api_error(404, NOT_FOUND)
        body = request.json_object() if request.body else {}
        if body is None:
            return oauth_error(400, dialect.INVALID_REQUEST, "The body must be a JSON object.")
        try:
            result = handler(body)
        except ValueError as exc:
            return oauth_error(400, dialect.INVALID_REQUEST, str(exc))
        return json_response(200, result if result is not None else {"ok": True})

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

    def _control_delays(self, body: dict[str, Any]) -> None:
        """``{"endpoint", "seconds"}``, and ``"times"`` or ``"always": true``, and ``"drip"``."""
        endpoint, seconds, drip = body.get("endpoint"), body.get("seconds"), body.get("drip", False)
        if not isinstance(endpoint, str) or seconds is None:
            raise ValueError("endpoint and seconds are required")
        if body.get("always"):
            self.delay_always(endpoint, seconds, drip=drip)
        else:
            self.delay_next(endpoint, seconds, times=body.get("times", 1), drip=drip)

    def _control_revoke(self, body: dict[str, Any]) -> dict[str, int]:
        user_id = body.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise ValueError("user_id must be a string")
        return {"revoked": self.revoke_tokens(user_id)}
