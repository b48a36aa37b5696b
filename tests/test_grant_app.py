"""A grant knows the CloudSync app that obtained it, and is refreshed with that app (issue 13, item 6).

A site may have several CloudSync apps: allauth's documented hidden app for a mobile client, or
one app per ``Site``. The fake knows them all (``add_client``) and, as a strict server does,
refuses a refresh by any client but the one the grant was issued to.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from allauth.socialaccount.models import SocialApp
from django.test import Client

from django_cloudsync import errors, tokens
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import app_authorization
from tests.helpers import expire, signed_in

pytestmark = pytest.mark.django_db

APP_CODE_URL = "/accounts/cloudsync/app/code"
APP_REDIRECT_URI = "com.example.cloudsync:/oauth2redirect"
MOBILE: dict[str, Any] = {"client_id": "mobile-app", "secret": "mobile-secret", "settings": {"hidden": True}}
SECOND: dict[str, Any] = {"client_id": "second-site-app", "secret": "second-site-secret"}


def with_apps(settings: Any, fake: Any, *apps: dict[str, Any]) -> None:
    """The site's app, and ``apps`` beside it, in settings and registered with the fake."""
    for app in apps:
        fake.add_client(app["client_id"], app["secret"])
    cloudsync = settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]
    settings.SOCIALACCOUNT_PROVIDERS = {
        **settings.SOCIALACCOUNT_PROVIDERS,
        "cloudsync": {**cloudsync, "APPS": [*cloudsync["APPS"], *apps]},
    }


def mobile_sign_in(client: Client) -> CloudSyncToken:
    """The mobile app's code flow with its own client id, posted to the site's app endpoint."""
    token = app_authorization(APP_REDIRECT_URI, client_id=MOBILE["client_id"]).token(MOBILE["client_id"])
    response = client.post(
        APP_CODE_URL, json.dumps({"process": "login", "token": token}), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return CloudSyncToken.objects.get()


def assert_refreshed_by(row: CloudSyncToken, client_id: str, fake: Any) -> None:
    """The row, expired, is refreshed once, by the app ``client_id``."""
    refreshed = tokens.refresh_if_expired(expire(row))

    assert refreshed.version == row.version + 1
    assert fake.last_token_request["client_id"] == client_id


def test_a_redirect_sign_in_records_the_sites_app(client: Client, fake: Any) -> None:
    assert signed_in(client).client_id == fake.client_id


def test_a_hidden_apps_grant_is_refreshed_with_that_app(client: Client, fake: Any, settings: Any) -> None:
    with_apps(settings, fake, MOBILE)
    row = mobile_sign_in(client)
    assert row.client_id == "mobile-app"

    assert_refreshed_by(row, "mobile-app", fake)
    assert fake.counters["invalid_grants"] == 0


def test_a_sign_in_through_another_app_replaces_the_grant_whole(
    client: Client, fake: Any, settings: Any
) -> None:
    with_apps(settings, fake, MOBILE)
    signed_in(client)  # the site's app, with a refresh token
    issued_to_the_app = fake.issue_tokens(scope="workspaces:read")  # no refresh token

    response = Client().post(
        "/_allauth/app/v1/auth/provider/token",
        json.dumps(
            {
                "provider": "cloudsync",
                "process": "login",
                "token": {
                    "client_id": MOBILE["client_id"],
                    "access_token": issued_to_the_app["access_token"],
                },
            }
        ),
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    row = CloudSyncToken.objects.get()
    assert row.client_id == "mobile-app"
    assert row.refresh_token() is None  # the site app's refresh token is not kept with the app's grant


def test_with_two_visible_apps_each_grant_uses_its_own(client: Client, fake: Any, settings: Any) -> None:
    row = signed_in(client)
    # allauth's redirect flow needs one visible app per Site; a refresh runs for any site.
    with_apps(settings, fake, SECOND)

    assert_refreshed_by(row, fake.client_id, fake)


def test_a_grant_stored_before_apps_were_recorded_is_refreshed_by_the_one_visible_app(
    client: Client, fake: Any, settings: Any
) -> None:
    row = signed_in(client)
    CloudSyncToken.objects.update(client_id="")  # as migration 0002 leaves existing rows
    with_apps(settings, fake, MOBILE)  # hidden: not a candidate

    assert_refreshed_by(row, fake.client_id, fake)


def test_an_old_grant_with_two_visible_apps_is_a_configuration_error(
    client: Client, fake: Any, settings: Any
) -> None:
    row = signed_in(client)
    CloudSyncToken.objects.update(client_id="")
    with_apps(settings, fake, SECOND)
    before = fake.counters["token_requests"]

    with pytest.raises(errors.ConfigurationError):
        tokens.refresh_if_expired(expire(row))

    assert fake.counters["token_requests"] == before
    assert CloudSyncToken.objects.get().version == row.version  # kept: the operator can fix it


def test_a_grant_whose_app_is_gone_is_a_configuration_error(client: Client, fake: Any, settings: Any) -> None:
    row = signed_in(client)
    CloudSyncToken.objects.update(client_id="removed-app")

    with pytest.raises(errors.ConfigurationError, match="removed-app"):
        tokens.refresh_if_expired(expire(row))

    assert CloudSyncToken.objects.filter(pk=row.pk).exists()


def test_one_client_id_listed_twice_with_one_secret_is_one_app(client: Client, fake: Any) -> None:
    # As a site listing its app once per Site (SocialApp rows) and in settings as well.
    row = signed_in(client)
    for name in ("CloudSync, first site", "CloudSync, second site"):
        SocialApp.objects.create(
            provider="cloudsync", name=name, client_id=fake.client_id, secret=fake.client_secret
        )

    assert_refreshed_by(row, fake.client_id, fake)


def test_a_social_app_row_of_another_app_is_found_by_its_client_id(client: Client, fake: Any) -> None:
    row = signed_in(client)
    fake.add_client(SECOND["client_id"], SECOND["secret"])
    SocialApp.objects.create(provider="cloudsync", name="Second", **SECOND)
    CloudSyncToken.objects.update(client_id=SECOND["client_id"])  # as if the second app obtained it

    with pytest.raises(errors.ReauthorizationRequired):
        # The fake issued this grant to the first app: the second app's refresh is refused as
        # another client's, which proves the refresh went out with the second app's credentials.
        tokens.refresh_if_expired(expire(row))

    assert fake.last_token_request["client_id"] == SECOND["client_id"]
