"""What a hostile example starts from: real secrets just issued by the fake, a browser that has
been to CloudSync's consent page, an app that holds a code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from django_cloudsync.testing.flow import app_authorization, consent, start
from tests.hostile.strategies import AppValue, Secret

#: The first of the test site's APP_REDIRECT_URIS.
APP_REDIRECT_URI = "com.example.cloudsync:/oauth2redirect"


def fresh_secrets(fake: Any) -> dict[Secret, str]:
    """Real tokens, just issued by the fake, for an answer that is meant to sign in."""
    issued = fake.issue_tokens()
    return {
        Secret.ACCESS_TOKEN: issued["access_token"],
        Secret.REFRESH_TOKEN: issued["refresh_token"],
        Secret.CLIENT_SECRET: fake.client_secret,
        Secret.STORED_ACCESS_TOKEN: "",
        Secret.STORED_REFRESH_TOKEN: "",
        Secret.CODE: "",
    }


def state_of(authorize_url: str) -> str:
    return parse_qs(urlsplit(authorize_url).query)["state"][0]


def start_sign_in(fake: Any, app_logs: pytest.LogCaptureFixture) -> tuple[Client, str, dict[Secret, str]]:
    """A browser that has been to CloudSync's consent page: its callback URL, and the secrets."""
    fake.clear_faults()
    app_logs.clear()
    secrets = fresh_secrets(fake)
    browser = Client(raise_request_exception=False)
    callback = consent(start(browser))
    secrets[Secret.CODE] = parse_qs(urlsplit(callback).query)["code"][0]
    return browser, callback, secrets


def valid_token_answer(secrets: Mapping[Secret, str]) -> tuple[int, bytes, list[tuple[str, str]]]:
    body = {
        "access_token": secrets[Secret.ACCESS_TOKEN],
        "refresh_token": secrets[Secret.REFRESH_TOKEN],
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "workspaces:read offline_access",
    }
    return 200, json.dumps(body).encode(), [("Content-Type", "application/json")]


def app_values(fake: Any) -> dict[Any, str]:
    """An app that has just been through CloudSync's consent page, and holds a fresh access token."""
    authorized = app_authorization(APP_REDIRECT_URI)
    return {
        AppValue.CLIENT_ID: fake.client_id,
        AppValue.CODE: authorized.code,
        AppValue.CODE_VERIFIER: authorized.code_verifier,
        AppValue.REDIRECT_URI: authorized.redirect_uri,
        AppValue.ACCESS_TOKEN: fake.issue_tokens()["access_token"],
        Secret.CLIENT_SECRET: fake.client_secret,
    }
