"""pytest fixtures for testing against the fake CloudSync (the ``cloudsync`` pytest plugin).

Installed with the package and loaded in every pytest run (entry point ``pytest11``), including
runs with no Django settings: this module imports nothing from Django, and the one fixture that
needs Django reaches it only through pytest-django's ``settings`` fixture, when it is used.

- ``cloudsync_server``: one fake CloudSync on a loopback port for the whole session.
- ``cloudsync_fake``: that fake, wiped clean for the test.
- ``cloudsync_settings``: the same, with ``SOCIALACCOUNT_PROVIDERS["cloudsync"]`` pointing at it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from .fake import FakeCloudSync
from .server import FakeCloudSyncServer


@pytest.fixture(scope="session")
def cloudsync_server() -> Iterator[FakeCloudSyncServer]:
    """A started :class:`FakeCloudSyncServer`, shared by the session and stopped at its end.

    ``cloudsync_server.url`` is the base URL of the authorization server and of the API. Tests
    should normally use ``cloudsync_fake`` instead, which also gives them a clean fake.
    """
    with FakeCloudSyncServer() as server:
        yield server


@pytest.fixture
def cloudsync_fake(cloudsync_server: FakeCloudSyncServer) -> Iterator[FakeCloudSync]:
    """The session's fake CloudSync with no state left by earlier tests.

    Codes, tokens, counters and faults are forgotten; config and users are back to their
    defaults (``token_lifetime=3600``, refresh token rotation on, the default ``timeout_delay``,
    only the user ``usr_ada``). The fake is wiped again after the test, so a fault it left
    behind cannot reach a test that only uses ``cloudsync_server``.
    """
    fake = cloudsync_server.fake
    _wipe(fake)
    yield fake
    _wipe(fake)


@pytest.fixture
def cloudsync_settings(
    request: pytest.FixtureRequest, cloudsync_server: FakeCloudSyncServer, cloudsync_fake: FakeCloudSync
) -> FakeCloudSync:
    """Point Django at the fake CloudSync for this test; returns the fake (as ``cloudsync_fake``).

    Replaces ``settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]`` with a copy of the current one in
    which ``APPS`` holds the fake's client credentials and ``AUTH_URL`` and ``API_URL`` are the
    fake's URL; the other keys (``SCOPE``, ...) are kept. Needs pytest-django, whose ``settings``
    fixture undoes the change after the test.
    """
    try:
        settings = request.getfixturevalue("settings")
    except pytest.FixtureLookupError:
        pytest.fail("cloudsync_settings needs pytest-django (its `settings` fixture).", pytrace=False)
    settings.SOCIALACCOUNT_PROVIDERS = _providers_pointing_at(
        getattr(settings, "SOCIALACCOUNT_PROVIDERS", None), cloudsync_server.url, cloudsync_fake
    )
    return cloudsync_fake


def _wipe(fake: FakeCloudSync) -> None:
    fake.reset()
    fake.restore_defaults()


def _providers_pointing_at(providers: Any, url: str, fake: FakeCloudSync) -> dict[str, Any]:
    """A new ``SOCIALACCOUNT_PROVIDERS``: the existing one is deep-copied, never mutated in place."""
    merged: dict[str, Any] = copy.deepcopy(dict(providers or {}))
    cloudsync = dict(merged.get("cloudsync") or {})
    cloudsync.update(
        APPS=[{"client_id": fake.client_id, "secret": fake.client_secret}],
        AUTH_URL=url,
        API_URL=url,
    )
    merged["cloudsync"] = cloudsync
    return merged
