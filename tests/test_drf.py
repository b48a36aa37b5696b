"""django_cloudsync.contrib.drf against the real Django REST framework.

The shared promises are in ``tests/api_contract.py``; DRF's own ways in are here: its token
authentication, allauth headless's JWT, the permission's arguments, DRF's exception handler.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("rest_framework")

from django.test import Client
from rest_framework.authtoken.models import Token

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import app_authorization
from tests.api_contract import *  # noqa: F403 - the shared tests run here with DRF's `api`
from tests.api_contract import API, app_session_token, password_user_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> API:
    return API(
        workspaces="/api/drf/workspaces/",
        needs_write="/api/drf/needs-write/",
        untouched="/api/drf/untouched/",
        client="/api/drf/client/",
        # DRF answers with its first authentication class's scheme: allauth's X-Session-Token
        # names none, so 403.
        anonymous_status=403,
    )


def test_drfs_own_token_authentication_gets_the_users_client(api: API, client: Client, fake: Any) -> None:
    app_session_token(client, fake)
    token = Token.objects.create(user=CloudSyncToken.objects.get().user)

    response = Client().get(api.workspaces, HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200, response.content
    assert response.json() == {"workspaces": ["Personal", "Team"]}


def test_allauths_jwt_access_token_gets_the_users_client(api: API, fake: Any, settings: Any) -> None:
    settings.HEADLESS_TOKEN_STRATEGY = "allauth.headless.tokens.strategies.jwt.JWTTokenStrategy"
    authorized = app_authorization("com.example.cloudsync:/oauth2redirect").token(fake.client_id)
    signed_in = Client().post(
        "/accounts/cloudsync/app/code",
        json.dumps({"process": "login", "token": authorized}),
        content_type="application/json",
    )
    access_token = signed_in.json()["meta"]["access_token"]

    response = Client().get(api.workspaces, HTTP_AUTHORIZATION=f"Bearer {access_token}")

    assert response.status_code == 200, response.content
    assert response.json() == {"workspaces": ["Personal", "Team"]}


def test_the_permission_takes_a_scope_string_and_refuses_what_is_not_scope_names() -> None:
    from django_cloudsync.contrib.drf import HasCloudSync

    assert HasCloudSync(scopes="workspaces:write files:read").scopes == ["workspaces:write", "files:read"]
    assert HasCloudSync().scopes == []
    permission = HasCloudSync(scopes=["files:read"])
    assert permission() is permission  # DRF instantiates each entry of permission_classes
    with pytest.raises(TypeError):
        HasCloudSync(scopes=["workspaces:write files:read"])
    with pytest.raises(TypeError):
        HasCloudSync(scopes=[None])  # type: ignore[list-item]


def test_anonymous_users_get_drfs_own_answer(api: API, fake: Any) -> None:
    response = Client().get(api.workspaces)

    assert response.status_code == 403
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_drfs_default_exception_handler_renders_the_answer_too(
    api: API, client: Client, fake: Any, settings: Any
) -> None:
    # A site that keeps DRF's exception handler still gets the envelope from the permission.
    settings.REST_FRAMEWORK = {"DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]}
    token = password_user_token(Client())

    response = Client().get(api.workspaces, HTTP_X_SESSION_TOKEN=token)

    assert response.status_code == 403
    body = response.json()
    assert body["status"] == 403
    assert body["errors"][0]["code"] == "cloudsync_not_connected"
    assert body["data"]["flows"][0]["id"] == "cloudsync_app_code"
