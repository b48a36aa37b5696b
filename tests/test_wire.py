"""The wire rules, which the client, the checks and the fake's server share."""

from __future__ import annotations

import json
import sys
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


def test_a_path_that_would_give_a_base_without_a_host_one_is_refused() -> None:
    # split_base_url() refuses such a base first; join_url() holds on its own all the same.
    with pytest.raises(ValueError, match="stay on"):
        wire.join_url("https:/", "/v1/me")  # "https://v1/me": the path became the host


@pytest.mark.parametrize(
    ("base", "shown"),
    [
        ("https://user:pw@api.example/base", "https://api.example/base"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_a_base_url_is_displayed_without_userinfo(base: str, shown: str) -> None:
    assert wire.display_url(base) == shown


def test_scrubbing_skips_empty_secrets() -> None:
    # A request may carry an empty value (no PKCE verifier): it must not redact every gap.
    assert wire.scrub("code at_test_abc\n", ["", "at_test_abc"]) == f"code {wire.REDACTED} "
    assert wire.scrub("", ["x"]) is None


def test_retry_after_reads_a_date_in_minus_zero_as_gmt() -> None:
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert wire.retry_after_seconds("Wed, 01 Jan 2025 00:00:30 -0000", now=now) == 30.0
    assert wire.retry_after_seconds("Tue, 31 Dec 2024 23:59:00 GMT", now=now) == 0.0
    assert wire.retry_after_seconds("soon") is None


def test_a_deadline_that_has_passed_bounds_nothing_and_says_so() -> None:
    # The smallest positive float: over as soon as it starts (the clock cannot tell it from now).
    deadline = wire.Deadline(sys.float_info.min)

    assert deadline.remaining() == 0.0
    with pytest.raises(errors.Timeout, match="CLOUDSYNC_DEADLINE"):
        deadline.bound(5.0)
    assert repr(deadline) == f"<Deadline {sys.float_info.min:g}s, 0.000s left>"
