"""Fixtures of the hostile-input properties (the ``hostile_settings`` fixture is the suite's)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from django_cloudsync.models import CloudSyncToken
from tests.helpers import signed_in


@pytest.fixture
def app_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of the app, allauth and Django's request handling (cleared per example)."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


@pytest.fixture
def connected(hostile_settings: Any) -> Callable[[], CloudSyncToken]:
    """The stored token of a user who signed in for real; signs in again if an example forgot it."""
    fake = hostile_settings

    def stored() -> CloudSyncToken:
        existing = CloudSyncToken.objects.first()
        if existing is not None:
            return existing
        fake.clear_faults()
        return signed_in(Client())

    return stored
