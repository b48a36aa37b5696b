"""django_cloudsync.contrib.ninja against the real django-ninja.

The shared promises are in ``tests/api_contract.py``; ninja's own ways in are here.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("ninja")

from django.test import Client

from tests.api_contract import *  # noqa: F403 - the shared tests run here with ninja's `api`
from tests.api_contract import API
from tests.helpers import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> API:
    return API(
        workspaces="/api/ninja/workspaces",
        needs_write="/api/ninja/needs-write",
        untouched="/api/ninja/untouched",
        client="/api/ninja/client",
        anonymous_status=401,
        content_type="application/json; charset=utf-8",
    )


def test_the_auth_wrapper_needs_an_auth_and_takes_only_scope_names() -> None:
    from ninja.security import django_auth

    from django_cloudsync.contrib.ninja import CloudSyncAuth

    assert CloudSyncAuth(django_auth, scopes="workspaces:write").scopes == ["workspaces:write"]
    with pytest.raises(TypeError):
        CloudSyncAuth(scopes="workspaces:write")
    with pytest.raises(TypeError):
        CloudSyncAuth(django_auth, scopes=["a,b"])


def test_anonymous_users_get_ninjas_own_401(api: API, fake: Any) -> None:
    response = Client().get(api.workspaces)

    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}


def test_the_openapi_schema_still_builds(fake: Any) -> None:
    response = Client().get("/api/ninja/openapi.json")

    assert response.status_code == 200
    assert "/api/ninja/workspaces" in response.json()["paths"]


def test_the_client_helper_on_a_view_without_auth_is_djangos_users(fake: Any) -> None:
    browser = Client()
    assert browser.get("/api/ninja/client-without-auth").json() == {"connected": False}

    signed_in(browser)

    assert browser.get("/api/ninja/client-without-auth").json() == {"connected": True}
