"""The fake CloudSync's authorization server: the consent page at ``/oauth/authorize`` and the
token endpoint at ``/oauth/token`` (code exchange with PKCE, refresh with rotation and theft
detection), strict where the real service may be lenient.
"""

from __future__ import annotations

import copy
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from django_cloudsync import dialect

from .pages import consent_body, error_page, render_page
from .state import Code, FakeState
from .wsgi import Request, Response, html_response, json_response, oauth_error

# RFC 6749 error codes that the dialect module has no use for outside this fake.
_UNSUPPORTED_RESPONSE_TYPE: Final = "unsupported_response_type"
_UNSUPPORTED_GRANT_TYPE: Final = "unsupported_grant_type"
_INVALID_SCOPE: Final = "invalid_scope"


@dataclass(frozen=True)
class AuthorizeRequest:
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


def _redirect(location: str) -> Response:
    return Response(302, b"", [("Location", location), ("Referrer-Policy", "no-referrer")])


def _redirect_with(redirect_uri: str, params: dict[str, str]) -> Response:
    """Redirect to the client's ``redirect_uri`` with ``params`` added to its query."""
    query = urlencode(params)
    if redirect_uri.endswith(("?", "&")):
        return _redirect(redirect_uri + query)
    separator = "&" if "?" in redirect_uri else "?"
    return _redirect(redirect_uri + separator + query)


def _error_redirect(redirect_uri: str, state: str | None, error: str, description: str) -> Response:
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


def _single_values(params: dict[str, list[str]]) -> dict[str, str]:
    return {name: values[0] for name, values in params.items()}


class OAuthServer(FakeState):
    """``/oauth/authorize`` and ``/oauth/token``: the authorization server's part of the fake."""

    # ------------------------------------------------------------------ /oauth/authorize

    def _serve_authorize(self, request: Request) -> Response:
        if request.method == "GET":
            return self._show_consent(request)
        if request.method == "POST":
            return self._decide(request)
        return html_response(405, render_page("CloudSync — Method not allowed", ""), [("Allow", "GET, POST")])

    def _validate_authorize(self, params: dict[str, list[str]]) -> AuthorizeRequest | Response:
        """RFC 6749 §4.1.1 checks, in the order that decides between an error page and a redirect."""
        client_id = params.get("client_id", [])
        redirect_uri = params.get("redirect_uri", [])
        if len(client_id) != 1 or self.client_secret_of(client_id[0]) is None:
            return error_page("Unknown or missing client_id.")
        # An RFC 3986 URI is ASCII; another could not even be sent back in a Location header.
        if (
            len(redirect_uri) != 1
            or not redirect_uri[0].isascii()
            or not dialect.is_redirect_uri(redirect_uri[0])
        ):
            return error_page(
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
        return AuthorizeRequest(
            client_id=client_id[0],
            redirect_uri=uri,
            scopes=scopes,
            state=state,
            code_challenge=challenge,
            code_challenge_method=method if challenge is not None else None,
        )

    def _show_consent(self, request: Request) -> Response:
        with self._lock:
            self._last_authorize_params = _single_values(request.query)
        validated = self._validate_authorize(request.query)
        if isinstance(validated, Response):
            return validated
        with self._lock:
            self._counters["authorize"] += 1
            users = list(self._users.values())
            current = self._current_user_id
        page = render_page(
            "CloudSync — Authorize",
            consent_body(validated, request.script_name + dialect.AUTHORIZE_PATH, users, current),
        )
        return html_response(200, page, [("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer")])

    def _decide(self, request: Request) -> Response:
        """The consent form's answer: a code, or ``access_denied``, sent to the redirect URI."""
        form = request.form()
        decision = form.pop("decision", [""])[0]
        chosen_user = form.pop("user", [""])[0]
        validated = self._validate_authorize(form)
        if isinstance(validated, Response):
            return validated
        if decision == "deny":
            return _error_redirect(
                validated.redirect_uri, validated.state, dialect.ACCESS_DENIED, "The user denied the request."
            )
        if decision != "allow":
            return error_page("Choose Allow or Deny.")
        with self._lock:
            user_id = chosen_user or self._current_user_id
            if user_id not in self._users:
                return error_page("Unknown user.")
            code = secrets.token_urlsafe(32)
            self._codes[code] = Code(
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

    def _serve_token(self, request: Request) -> Response:
        if request.method != "POST":
            return oauth_error(405, dialect.INVALID_REQUEST, "Use POST.", [("Allow", "POST")])
        fields = request.json_object()
        self._note_token_request(request, fields)
        fault = self._take_fault(("token",))
        if fault is not None:
            return self._fault_response(fault)
        if fields is None:
            return oauth_error(
                400,
                dialect.INVALID_REQUEST,
                "The body must be a JSON object sent as Content-Type: application/json.",
            )
        secret = self.client_secret_of(fields.get("client_id"))
        if secret is None or not _constant_time_equal(fields.get("client_secret"), secret):
            return oauth_error(401, dialect.INVALID_CLIENT, "Client authentication failed.")
        grant_type = fields.get("grant_type")
        with self._lock:
            now = self._clock()
            if grant_type == "authorization_code":
                return self._exchange_code_locked(fields, now)
            if grant_type == "refresh_token":
                return self._refresh_locked(fields, now)
        if not grant_type:
            return oauth_error(400, dialect.INVALID_REQUEST, "grant_type is required.")
        return oauth_error(
            400, _UNSUPPORTED_GRANT_TYPE, "Only authorization_code and refresh_token are supported."
        )

    def _note_token_request(self, request: Request, fields: dict[str, Any] | None) -> None:
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

    def _invalid_grant_locked(self, description: str) -> Response:
        self._counters["invalid_grants"] += 1
        return oauth_error(400, dialect.INVALID_GRANT, description)

    def _exchange_code_locked(self, fields: dict[str, Any], now: float) -> Response:
        """``grant_type=authorization_code``, RFC 6749 §4.1.3, with PKCE (RFC 7636 §4.6)."""
        code = fields.get("code")
        if not isinstance(code, str) or not code:
            return oauth_error(400, dialect.INVALID_REQUEST, "code is required.")
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
        record.grant_id = self._new_grant_locked(record.user_id, record.scopes, record.client_id)
        self._counters["code_exchanges"] += 1
        payload = self._issue_tokens_locked(record.grant_id, record.scopes, now, with_refresh=None)
        return json_response(200, payload)

    def _refresh_locked(self, fields: dict[str, Any], now: float) -> Response:
        """``grant_type=refresh_token``, RFC 6749 §6, with rotation and reuse detection (RFC 9700 §4.14)."""
        token = fields.get("refresh_token")
        if not isinstance(token, str) or not token:
            return oauth_error(400, dialect.INVALID_REQUEST, "refresh_token is required.")
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
                return oauth_error(400, _INVALID_SCOPE, "A refresh may only narrow the granted scope.")
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
        return json_response(200, payload)
