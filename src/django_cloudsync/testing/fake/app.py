"""The fake CloudSync WSGI application: the authorization server, the API and the control
endpoints of this package's modules, put together behind one dispatch."""

from __future__ import annotations

from collections.abc import Iterable

from django_cloudsync import dialect

from .api import CloudSyncAPI
from .control import CONTROL_PREFIX, ControlEndpoints
from .faults import API_ROOT, delayed_body, switch_endpoints
from .oauth import OAuthServer
from .wsgi import NOT_FOUND, Environ, Request, Response, StartResponse, api_error


class FakeCloudSync(OAuthServer, CloudSyncAPI, ControlEndpoints):
    """The fake CloudSync WSGI application. Thread-safe: every piece of state is behind one lock.

    ``token_lifetime`` (seconds, the ``expires_in`` of new access tokens), ``rotate_refresh_tokens``,
    ``omit_scope_on_refresh``, ``timeout_delay`` and ``code_lifetime`` are plain attributes that a
    test may change at any time. ``clock`` is the monotonic clock expiry is measured with.

    Switches make it misbehave on purpose (:mod:`~django_cloudsync.testing.fake.faults`): faults
    answer wrongly (``fail_next``, ``fail_always``, ``respond_next``), delays answer late, held
    back or dripped (``delay_next``, ``delay_always``); ``/_fake/faults`` and ``/_fake/delays``
    set them from another process.
    """

    def __repr__(self) -> str:
        return f"<FakeCloudSync client_id={self.client_id!r} users={len(self._users)}>"

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point. Paths are relative to ``SCRIPT_NAME``, so the fake can be mounted."""
        request = Request.from_environ(environ)
        response = self._dispatch(request)
        # Taken once the request is handled: a delay makes the answer late, not the work.
        delay = self._take_delay(switch_endpoints(request.path))
        start_response(response.status_line, response.wsgi_headers())
        return delayed_body(response.body, delay)

    def _dispatch(self, request: Request) -> Response:
        if request.body_too_large:
            return api_error(413, dialect.INVALID_REQUEST)
        if request.path == dialect.AUTHORIZE_PATH:
            return self._serve_authorize(request)
        if request.path == dialect.TOKEN_PATH:
            return self._serve_token(request)
        if request.path.startswith(API_ROOT):
            return self._serve_api(request)
        if request.path.startswith(CONTROL_PREFIX):
            return self._serve_control(request)
        return api_error(404, NOT_FOUND)
