"""The wire rules, which the client, the checks and the fake's server share."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from django_cloudsync import checks, errors, wire
from django_cloudsync.testing.server import FakeCloudSyncServer


@pytest.mark.parametrize("host", ["localhost", "localhost.", "LOCALHOST", "127.0.0.1", "127.9.8.7", "::1"])
def test_loopback_hosts(host: str) -> None:
    assert wire.is_loopback_host(host)


@pytest.mark.parametrize("host", ["localhost.example", "example.com", "10.0.0.1", "::2", "0.0.0.0", ""])  # noqa: S104
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not wire.is_loopback_host(host)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example", True),
        ("http://localhost.:8000", True),
        ("http://[::1]:8000", True),
        ("http://127.0.0.2", True),
        ("http://api.example", False),
        ("https://", False),
        ("ftp://localhost", False),
        ("http://[::1", False),
    ],
)
def test_https_or_loopback(url: str, allowed: bool) -> None:
    assert wire.is_https_or_loopback(url) is allowed


def test_checks_and_the_fake_server_take_localhost_with_a_dot_as_the_client_does(settings: Any) -> None:
    providers = {"cloudsync": {"API_URL": "http://localhost.:9", "AUTH_URL": "http://localhost.:9"}}
    settings.SOCIALACCOUNT_PROVIDERS = providers
    settings.DEBUG = False

    assert "django_cloudsync.E007" not in [message.id for message in checks.check_provider()]
    assert FakeCloudSyncServer(host="localhost.").host == "localhost."
    with pytest.raises(ValueError, match="loopback"):
        FakeCloudSyncServer(host="0.0.0.0")  # noqa: S104


@pytest.mark.parametrize(
    "base",
    [
        "ftp://api.example",
        "https://",
        "https://user:pw@api.example",
        "https://api.example?x=1",
        "https://[::1",
    ],
)
def test_unusable_base_urls_are_configuration_errors(base: str) -> None:
    with pytest.raises(errors.ConfigurationError):
        wire.split_base_url(base)


@pytest.mark.parametrize(
    "path", ["v1/me", "//evil.example/x", "/v1/../admin", "/v1/%2e%2e/x", "/a b", "/a#b"]
)
def test_paths_that_could_leave_the_api_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        wire.join_url("https://api.example/base", path)


def test_a_path_joins_under_the_base() -> None:
    assert wire.join_url("https://api.example/base", "/v1/me") == "https://api.example/base/v1/me"


def test_an_error_body_is_read_with_its_challenge_and_scrubbed() -> None:
    secret = "rt_test_secret"
    body = json.dumps({"error": "invalid_request", "error_description": f"bad\r\n{secret}"}).encode()

    parsed = wire.parse_error(body, 'Bearer scope="files:read", error="ignored"', secrets=[secret])

    assert parsed == wire.ErrorBody("invalid_request", "bad  [redacted]", "files:read")


def test_an_error_code_that_echoes_a_secret_is_dropped() -> None:
    assert wire.parse_error(b"", 'Bearer error="at_test_abc"', secrets=["at_test_abc"]).error is None
    assert wire.parse_error(b'{"error": "not a code!"}').error is None
    assert wire.parse_error(b'{"error": {"code": "conflict", "message": "exists"}}') == wire.ErrorBody(
        "conflict", "exists"
    )


def test_retry_after_takes_seconds_or_a_date() -> None:
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert wire.retry_after_seconds("7") == 7.0
    assert wire.retry_after_seconds("Wed, 01 Jan 2025 00:00:30 GMT", now=now) == 30.0
    assert wire.retry_after_seconds("\u00b2") is None
    assert wire.retry_after_seconds("") is None
