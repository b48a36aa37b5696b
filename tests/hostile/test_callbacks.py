"""The sign-in callback, sent generated queries: bad, repeated, badly encoded, flooded, or almost real.

Whatever it is sent, it answers a page (never a 500), persists nothing, exchanges no code, echoes
nothing token-like, and logs no error of its own.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import event, given

from django_cloudsync import conf
from django_cloudsync.testing.flow import start
from tests.hostile.examples import state_of
from tests.hostile.oracles import PAGE_STATUSES, assert_page_shows_no_secret, persisted
from tests.hostile.strategies import HOSTILE, Marker, Query, queries

pytestmark = pytest.mark.django_db

User = get_user_model()

CALLBACK_PATH = "/accounts/cloudsync/login/callback/"


@HOSTILE
@given(query=queries)
def test_no_generated_callback_gets_a_500_or_persists_or_echoes_anything(
    hostile_settings: Any, app_logs: pytest.LogCaptureFixture, query: Query
) -> None:
    fake = hostile_settings
    app_logs.clear()
    browser = Client(raise_request_exception=False)
    resolved: dict[Marker, str] = {}

    def resolve(value: str | Marker) -> str:
        if isinstance(value, str):
            return value
        if value not in resolved:
            if value is Marker.STATE:
                resolved[value] = state_of(start(browser))
            elif value is Marker.FOREIGN_STATE:
                resolved[value] = state_of(start(Client()))
            else:
                resolved[value] = conf.auth_url()
        return resolved[value]

    query_string = query.encode(resolve)
    before, token_requests = persisted(), fake.counters["token_requests"]

    response = browser.generic("GET", CALLBACK_PATH, QUERY_STRING=query_string)

    event(f"HTTP {response.status_code}")
    event("with a real state" if Marker.STATE in resolved else "without a real state")
    if fake.counters["token_requests"] > token_requests:
        event("reached the code exchange")
    assert response.status_code in PAGE_STATUSES, response.status_code
    assert persisted() == before
    assert fake.counters["code_exchanges"] == 0  # no generated code is a real one
    assert_page_shows_no_secret(response, {})
    # django.security logs refused input (too many fields) at ERROR by design: that is a 400.
    unexpected = [
        r for r in app_logs.records if r.levelno >= logging.ERROR and not r.name.startswith("django.security")
    ]
    assert not unexpected, unexpected[0].getMessage()
