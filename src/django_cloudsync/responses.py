"""What the outside world is told when CloudSync access is missing, dead, too narrow, or failing.

One place decides, from the request, between a redirect (a page in a browser: today's trips
through CloudSync's consent, built by :mod:`.redirects`) and a JSON answer (an SPA's ``fetch``, a
mobile app, a DRF or django-ninja view). :class:`~.middleware.CloudSyncMiddleware`,
``@cloudsync_required`` and the DRF and ninja glue (:mod:`.contrib`) all answer through here.

The JSON answers use allauth headless's envelope, ``{"status": ..., "errors": [{"code": ...,
"message": ..., "param": ...}], "data": {...}}``, with a stable ``code`` per case (:data:`ERRORS`
is the whole table) and, where the user can fix it, ``data.scopes`` (what to ask for) and
``data.flows`` (how: allauth headless's provider redirect for a browser, the code-with-PKCE sign-in
for an app). No answer carries a token, a key or the client secret: messages are fixed strings,
never an error's text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import urlencode

from . import conf, dialect, errors, redirects

Resp = TypeVar("Resp", bound=HttpResponse)

#: allauth headless's two clients (``allauth.headless.constants.Client``), by value, so that this
#: module works on sites without ``allauth.headless``.
APP: Final = "app"
BROWSER: Final = "browser"

#: The error codes (``errors[0].code``) of the JSON answers, and what the client does about them.
REAUTHORIZATION_REQUIRED: Final = "cloudsync_reauthorization_required"
NOT_CONNECTED: Final = "cloudsync_not_connected"
SCOPE_REQUIRED: Final = "cloudsync_scope_required"
LOGIN_REQUIRED: Final = "cloudsync_login_required"
INVALID_SCOPE: Final = "cloudsync_invalid_scope"

#: A scope name as RFC 6749 §3.3 spells a scope-token (printable ASCII but space, ``"`` and
#: ``\\``), without the comma allauth splits dynamic scopes on, and of a sane length.
SCOPE_NAME: Final = re.compile(r"[\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]{1,64}")
#: The most scopes one request may ask for on top of the site's own.
MAX_REQUESTED_SCOPES: Final = 16


@dataclass(frozen=True)
class ErrorAnswer:
    """One row of :data:`ERRORS`: the HTTP status and the stable code of an answer."""

    status: int
    code: str
    message: str


#: Every answer's status and code, in one table (the README's "API backends" table is this).
#: The first row whose key the error is an instance of wins, so subclasses come first.
ERRORS: Final[tuple[tuple[type[errors.CloudSyncError] | str, ErrorAnswer], ...]] = (
    # The user must act: connect CloudSync (again), or grant more.
    (LOGIN_REQUIRED, ErrorAnswer(401, LOGIN_REQUIRED, "Sign in first.")),
    (INVALID_SCOPE, ErrorAnswer(400, INVALID_SCOPE, "Scopes are names, separated by commas.")),
    (NOT_CONNECTED, ErrorAnswer(403, NOT_CONNECTED, "Connect your CloudSync account first.")),
    (SCOPE_REQUIRED, ErrorAnswer(403, SCOPE_REQUIRED, "Your CloudSync grant lacks a scope this needs.")),
    (
        errors.ReauthorizationRequired,
        ErrorAnswer(
            403, REAUTHORIZATION_REQUIRED, "Your CloudSync access has ended: connect CloudSync again."
        ),
    ),
    (
        errors.UndecryptableToken,
        ErrorAnswer(
            403, "cloudsync_token_unreadable", "Your CloudSync access must be renewed: connect again."
        ),
    ),
    (
        errors.InsufficientScope,
        ErrorAnswer(403, "cloudsync_insufficient_scope", "CloudSync refused: the grant lacks a scope."),
    ),
    # CloudSync's trouble: try again later, or not at all.
    (errors.RateLimited, ErrorAnswer(429, "cloudsync_rate_limited", "CloudSync asks to slow down.")),
    (errors.Timeout, ErrorAnswer(504, "cloudsync_timeout", "CloudSync did not answer in time.")),
    (errors.NetworkError, ErrorAnswer(503, "cloudsync_unreachable", "CloudSync could not be reached.")),
    (errors.ServerError, ErrorAnswer(503, "cloudsync_server_error", "CloudSync had an internal error.")),
    (
        errors.InvalidResponse,
        ErrorAnswer(503, "cloudsync_invalid_response", "CloudSync sent an invalid response."),
    ),
    (
        errors.NotAuthenticated,
        ErrorAnswer(502, "cloudsync_not_authenticated", "CloudSync did not accept this site's access."),
    ),
    (
        errors.TokenRequestFailed,
        ErrorAnswer(502, "cloudsync_token_request_failed", "CloudSync refused this site's token request."),
    ),
    (
        errors.ConfigurationError,
        ErrorAnswer(500, "cloudsync_configuration_error", "This site's CloudSync setup is incomplete."),
    ),
    (errors.CloudSyncError, ErrorAnswer(502, "cloudsync_error", "CloudSync request failed.")),
)

#: The errors after which the user connects CloudSync again (``data.flows`` says how).
_RECONNECT: Final = (errors.ReauthorizationRequired, errors.UndecryptableToken, errors.InsufficientScope)


def error_row(key: errors.CloudSyncError | str) -> ErrorAnswer:
    """The row of :data:`ERRORS` for an error, or for one of the codes above."""
    for kind, row in ERRORS:
        if kind == key if isinstance(kind, str) else isinstance(key, kind):
            return row
    raise LookupError(key)


@dataclass(frozen=True)
class APIAnswer:
    """A JSON answer in allauth headless's envelope, rendered by Django, DRF or ninja alike."""

    status: int
    code: str
    message: str
    param: str | None = None
    data: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, row: ErrorAnswer, **kwargs: Any) -> APIAnswer:
        return cls(status=row.status, code=row.code, message=row.message, **kwargs)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        body: dict[str, Any] = {"status": self.status, "errors": [error]}
        if self.data is not None:
            body["data"] = dict(self.data)
        return body

    def finish(self, response: Resp) -> Resp:
        """``response`` (this answer's body, rendered by Django, DRF or ninja) with its headers,
        and allauth headless's never-cache headers: the answer is about one user."""
        for name, value in self.headers.items():
            response[name] = value
        add_never_cache_headers(response)
        return response

    def response(self) -> JsonResponse:
        return self.finish(JsonResponse(self.body(), status=self.status))


# Who is asking.


def headless_client(request: Any) -> str | None:
    """allauth headless's client for this request (``"app"``, ``"browser"``), or ``None``.

    allauth marks the requests its own views serve; an API view of the site is not marked, so
    an ``X-Session-Token`` header (allauth's app sessions) or an ``Authorization`` header (its JWT
    access tokens, DRF's tokens) makes it an app, and a request that prefers JSON a browser's SPA.
    """
    marked = getattr(getattr(request, "allauth", None), "headless", None)
    client = getattr(marked, "client", None)
    if client is not None:
        return str(getattr(client, "value", client))
    if "x-session-token" in request.headers or "authorization" in request.headers:
        return APP
    if prefers_json(request):
        return BROWSER
    return None


def wants_json(request: Any) -> bool:
    """Whether this request gets JSON answers from this app instead of redirects."""
    return headless_client(request) is not None


#: An ``Accept`` header is read up to this many media ranges; the rest cannot change the answer
#: for a sensible client, and a hostile one gets no quadratic work out of us.
_MAX_MEDIA_RANGES: Final = 32
_JSON_TYPES: Final = ("application/json",)
_HTML_TYPES: Final = ("text/html", "application/xhtml+xml")


def prefers_json(request: Any) -> bool:
    """``Accept`` ranks ``application/json`` above HTML (a tie goes to the one named first).

    Wildcards count for neither: ``fetch()``'s default ``*/*`` and a browser's navigation (which
    names ``text/html``) keep today's redirects; an SPA sends ``Accept: application/json``.
    """
    best: dict[str, tuple[float, int]] = {}
    for position, media_range in enumerate(request.headers.get("Accept", "").split(",")[:_MAX_MEDIA_RANGES]):
        media_type, *params = media_range.split(";")
        kind = "json" if media_type.strip().lower() in _JSON_TYPES else None
        if media_type.strip().lower() in _HTML_TYPES:
            kind = "html"
        if kind is None:
            continue
        quality = _quality(params)
        if kind not in best or quality > best[kind][0]:
            best[kind] = (quality, -position)
    json_rank = best.get("json", (0.0, 0))
    return json_rank[0] > 0 and json_rank > best.get("html", (0.0, 0))


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            # NaN, infinities and out-of-range values are not a preference.
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


# What the client does next.


def connect_flows(
    request: Any, scopes: Iterable[str], granted: Iterable[str] = (), *, process: str = "connect"
) -> list[dict[str, Any]]:
    """How this request's client connects CloudSync with ``scopes`` (``data.flows``).

    A browser (SPA) POSTs a form to allauth headless's provider redirect: ``fields``, plus its
    own ``callback_url`` and CSRF token; the ``scope`` in the URL is asked for on top of the
    site's ``SCOPE`` and what the user granted before. An app runs CloudSync's authorize request
    itself with ``scope`` (all of it: the new grant replaces the stored one) and posts the code
    and its PKCE verifier to ``url``. Without allauth headless, allauth's own login URL.
    """
    asked = list(dict.fromkeys(scopes))
    flows = _app_flows(request, asked, granted, process) if headless_client(request) == APP else []
    redirect_url = _url("headless:browser:socialaccount:redirect_to_provider")
    if not flows and redirect_url is not None:
        query = f"?{urlencode({'scope': ','.join(asked)})}" if asked else ""
        flows.append(
            _flow(
                "provider_redirect",
                process,
                redirect_url + query,
                fields={"provider": conf.PROVIDER_ID, "process": process},
            )
        )
    if not flows:
        flows.append(
            _flow(
                "redirect", process, redirects.login_url(request, process=process, scopes=asked), method="GET"
            )
        )
    return flows


def _app_flows(request: Any, asked: list[str], granted: Iterable[str], process: str) -> list[dict[str, Any]]:
    from allauth.socialaccount.adapter import get_adapter

    flows: list[dict[str, Any]] = []
    code_url = _url(f"{conf.PROVIDER_ID}_app_code")
    token_url = _url("headless:app:socialaccount:provider_token")
    provider = get_adapter().get_provider(request, conf.PROVIDER_ID)
    if code_url is not None and conf.app_redirect_uris():
        flows.append(
            _flow(
                "cloudsync_app_code",
                process,
                code_url,
                authorize_url=f"{conf.auth_url()}{dialect.AUTHORIZE_PATH}",
                client_id=provider.app.client_id,
                scope=dialect.join_scope([*provider.get_scope(), *granted, *asked]),
            )
        )
    if token_url is not None and provider.supports_token_authentication:
        flows.append(_flow("provider_token", process, token_url))
    return flows


def _flow(flow_id: str, process: str, url: str, *, method: str = "POST", **extra: Any) -> dict[str, Any]:
    return {
        "id": flow_id,
        "provider": conf.PROVIDER_ID,
        "process": process,
        "method": method,
        "url": url,
        **extra,
    }


def _url(name: str) -> str | None:
    """The path of a URL name, or ``None`` where the site does not serve it (allauth headless
    not included, or without this client)."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


# The answers.


def missing_scopes(client: Any, required: Iterable[str]) -> list[str]:
    """The scopes of ``required`` that ``client``'s grant lacks (all of them without a client)."""
    granted = set(client.scopes or ()) if client is not None else set()
    return [scope for scope in required if scope not in granted]


def connection_answer(request: Any, client: Any, required: Iterable[str]) -> APIAnswer | None:
    """The JSON answer for a user without CloudSync or without ``required``, or ``None``."""
    missing = missing_scopes(client, required)
    if client is not None and not missing:
        return None
    code = SCOPE_REQUIRED if client is not None else NOT_CONNECTED
    granted = list(client.scopes or ()) if client is not None else []
    return APIAnswer.of(
        error_row(code),
        param="scope" if missing else None,
        data={"scopes": missing, "flows": connect_flows(request, missing, granted)},
    )


def error_answer(request: Any, exc: errors.CloudSyncError) -> APIAnswer:
    """The JSON answer for an error a CloudSync call raised (see :data:`ERRORS`)."""
    row = error_row(exc)
    if isinstance(exc, _RECONNECT):
        scopes = list(getattr(exc, "scopes", None) or ())
        if isinstance(exc, errors.InsufficientScope) and exc.scope and exc.scope in dialect.KNOWN_SCOPES:
            scopes.append(exc.scope)
        user = getattr(request, "user", None)
        process = "connect" if getattr(user, "is_authenticated", False) else "login"
        data = {"scopes": scopes, "flows": connect_flows(request, scopes, process=process)}
        return APIAnswer.of(row, param="scope" if scopes else None, data=data)
    if isinstance(exc, errors.RateLimited) and exc.retry_after is not None:
        wait = math.ceil(exc.retry_after)
        return APIAnswer.of(row, data={"retry_after": wait}, headers={"Retry-After": str(wait)})
    return APIAnswer.of(row)


def login_required(request: HttpRequest) -> HttpResponse:
    """An anonymous user: ``LOGIN_URL`` for a page, a 401 with the sign-in flows for an API client."""
    if not wants_json(request):
        # Imported here: auth's views import its forms, hence the user model, which the
        # provider (importing this module while apps load) must not need yet.
        from django.contrib.auth.views import redirect_to_login

        # An unsafe path (``//host/...``) becomes the site's default destination.
        next_url = redirects.current_path(request) or resolve_url(settings.LOGIN_REDIRECT_URL)
        return redirect_to_login(next_url)
    data = {"scopes": [], "flows": connect_flows(request, (), process="login")}
    return APIAnswer.of(error_row(LOGIN_REQUIRED), data=data).response()


def connection_required(request: HttpRequest, client: Any, missing: Iterable[str]) -> HttpResponse:
    """A user without CloudSync, or whose grant lacks ``missing``: consent, or a 403 saying so."""
    if not wants_json(request):
        return redirects.redirect_to_consent(request, missing)
    answer = connection_answer(request, client, missing)
    assert answer is not None  # the caller found something missing
    return answer.response()


def for_exception(request: HttpRequest, exc: Exception) -> HttpResponse | None:
    """The answer to an error a view let escape, or ``None`` to let Django handle it.

    A dead grant sends a page through consent again; an API client gets its JSON answer for
    every CloudSync error. Anything else is not this app's to answer.
    """
    if not isinstance(exc, errors.CloudSyncError):
        return None
    if wants_json(request):
        return error_answer(request, exc).response()
    if isinstance(exc, errors.ReauthorizationRequired):
        return redirects.redirect_to_reauthorize(request, exc.scopes)
    return None


def requested_scopes(request: Any) -> list[str] | None:
    """The scopes in this request's ``?scope=`` (comma-separated, as allauth reads them), or
    ``None`` if it holds something that is not a list of scope names."""
    value = request.GET.get("scope", "")
    scopes = [scope for scope in value.split(",") if scope] if value else []
    if len(scopes) > MAX_REQUESTED_SCOPES or not all(SCOPE_NAME.fullmatch(scope) for scope in scopes):
        return None
    return list(dict.fromkeys(scopes))


def invalid_scope(request: Any) -> JsonResponse:
    """A 400 for a ``scope`` parameter that is not scope names."""
    return APIAnswer.of(error_row(INVALID_SCOPE), param="scope").response()
