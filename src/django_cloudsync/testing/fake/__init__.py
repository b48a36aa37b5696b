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

The package has one module per job: :mod:`.wsgi` (requests, responses, :func:`mount`),
:mod:`.state` (what the fake remembers, and the helpers that read or reset it), :mod:`.faults`
(the fault and delay switches), :mod:`.pages` (the consent and error pages), :mod:`.oauth` (the
authorization server), :mod:`.api` (the ``/v1`` API), :mod:`.control` (the ``/_fake/``
endpoints) and :mod:`.app` (:class:`FakeCloudSync`, which puts them together).
"""

from .app import FakeCloudSync
from .control import CONTROL_PREFIX
from .faults import (
    DEFAULT_TIMEOUT_DELAY,
    DRIP_CHUNK_BYTES,
    FAULT_ENDPOINTS,
    FAULT_KINDS,
    GZIP_BOMB_BYTES,
    MAX_DELAY,
    SCRIPTED,
)
from .pages import SCOPE_MEANINGS
from .state import DEFAULT_CODE_LIFETIME, DEFAULT_USER, FakeUser
from .wsgi import MAX_BODY_BYTES, Environ, StartResponse, WSGIApp, mount

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_CODE_LIFETIME",
    "DEFAULT_TIMEOUT_DELAY",
    "DEFAULT_USER",
    "DRIP_CHUNK_BYTES",
    "FAULT_ENDPOINTS",
    "FAULT_KINDS",
    "GZIP_BOMB_BYTES",
    "MAX_BODY_BYTES",
    "MAX_DELAY",
    "SCOPE_MEANINGS",
    "SCRIPTED",
    "Environ",
    "FakeCloudSync",
    "FakeUser",
    "StartResponse",
    "WSGIApp",
    "mount",
]
