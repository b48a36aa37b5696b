"""Refreshing a stored token: once per expiry, keeping what the answer leaves out, losing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections, transaction

from django_cloudsync import errors, signals, tokens
from django_cloudsync.models import CloudSyncToken
from tests.helpers import JSON_HEADERS, NESTED_JSON, expire, signed_in

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ROOT = Path(__file__).resolve().parent.parent


def test_a_fresh_token_is_used_as_it_is(client: Any, fake: Any) -> None:
    token = signed_in(client)

    assert tokens.refresh_if_expired(token) is token
    assert fake.counters["refresh_attempts"] == 0


def test_a_short_lived_token_just_received_is_not_refreshed(client: Any, fake: Any, settings: Any) -> None:
    settings.CLOUDSYNC_REFRESH_LEEWAY = 60
    fake.token_lifetime = 4
    token = signed_in(client)

    assert not token.is_expiring()  # the leeway is capped at half the lifetime: 2 s
    assert token.expires_at is not None
    assert token.is_expiring(now=token.expires_at - timedelta(seconds=1.5))


def test_an_expiring_token_is_refreshed_and_stored_encrypted_in_the_same_row(client: Any, fake: Any) -> None:
    token = expire(signed_in(client))
    old_access, old_refresh = token.access_token(), token.refresh_token()
    sent: list[dict[str, Any]] = []
    signals.token_refreshed.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid="t1")
    try:
        refreshed = tokens.refresh_if_expired(token)
    finally:
        signals.token_refreshed.disconnect(dispatch_uid="t1")

    assert fake.counters["refreshes"] == 1
    assert fake.last_token_request["grant_type"] == "refresh_token"
    assert fake.last_token_request["client_id"] == fake.client_id
    stored = CloudSyncToken.objects.get()
    assert stored.pk == token.pk
    assert stored.version == token.version + 1
    assert stored.access_token() == refreshed.access_token() != old_access
    assert stored.refresh_token() != old_refresh  # the fake rotates refresh tokens
    assert old_access not in stored.access_token_ciphertext
    assert not stored.is_expiring()
    assert stored.refreshed_at is not None
    assert [kw["token"].pk for kw in sent] == [token.pk]


def test_a_refresh_without_refresh_token_or_scope_keeps_the_old_ones(client: Any, fake: Any) -> None:
    token = expire(signed_in(client))
    fake.rotate_refresh_tokens = False
    fake.omit_scope_on_refresh = True

    refreshed = tokens.refresh_if_expired(token)

    assert refreshed.refresh_token() == token.refresh_token()
    assert refreshed.scope == token.scope


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("server_error", errors.ServerError),
        ("bad_gateway", errors.ServerError),
        ("timeout", errors.Timeout),
        ("invalid_json", errors.InvalidResponse),
        ("html", errors.InvalidResponse),
    ],
)
def test_a_failed_refresh_keeps_the_stored_tokens(
    client: Any, fake: Any, settings: Any, fault: str, error: type[errors.CloudSyncError]
) -> None:
    settings.CLOUDSYNC_TIMEOUT = 0.3
    fake.timeout_delay = 0.6
    token = expire(signed_in(client))
    fake.fail_next("token", fault)

    with pytest.raises(error) as raised:
        tokens.refresh_if_expired(token)

    assert raised.value.retryable
    stored = CloudSyncToken.objects.get()
    assert (stored.access_token_ciphertext, stored.refresh_token_ciphertext, stored.version) == (
        token.access_token_ciphertext,
        token.refresh_token_ciphertext,
        token.version,
    )
    assert stored.refresh_lease_until is None  # given back: the next worker may try at once
    assert tokens.refresh_if_expired(stored).version == token.version + 1  # and it works next time


def test_invalid_grant_forgets_the_tokens_and_asks_for_reauthorization(client: Any, fake: Any) -> None:
    token = expire(signed_in(client))
    fake.revoke_tokens()
    sent: list[dict[str, Any]] = []
    signals.reauthorization_required.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid="t2")
    try:
        with pytest.raises(errors.ReauthorizationRequired) as raised:
            tokens.refresh_if_expired(token)
    finally:
        signals.reauthorization_required.disconnect(dispatch_uid="t2")

    assert not CloudSyncToken.objects.exists()
    assert raised.value.scopes == ["workspaces:read", "offline_access"]
    assert [(kw["account_id"], kw["user"]) for kw in sent] == [("usr_ada", token.user)]


def test_a_rejected_token_is_refreshed_once_even_if_not_expired(client: Any, fake: Any) -> None:
    token = signed_in(client)

    first = tokens.refresh_after_rejection(token)
    second = tokens.refresh_after_rejection(token)  # a second worker saw the same rejection

    assert fake.counters["refreshes"] == 1
    assert second.version == first.version == token.version + 1


def test_refresh_inside_the_callers_transaction_survives_its_rollback(
    on_server_database: str, client: Any, fake: Any
) -> None:
    token = expire(signed_in(client))

    class ViewFailed(Exception):
        pass

    seen: list[CloudSyncToken] = []

    def view() -> None:
        with transaction.atomic(using=on_server_database):  # as under ATOMIC_REQUESTS
            seen.append(tokens.refresh_if_expired(token))
            raise ViewFailed

    with pytest.raises(ViewFailed):
        view()  # the refresh committed on a connection of its own

    stored = CloudSyncToken.objects.get()
    assert stored.version == token.version + 1
    assert stored.access_token() == seen[0].access_token()


def test_a_failed_refresh_inside_the_callers_transaction_raises_there_and_keeps_the_tokens(
    on_server_database: str, client: Any, fake: Any
) -> None:
    token = expire(signed_in(client))
    fake.fail_next("token", "server_error", times=10)  # every retry too

    with pytest.raises(errors.ServerError), transaction.atomic(using=on_server_database):
        tokens.refresh_if_expired(token)  # on a connection of its own, in a thread of its own

    stored = CloudSyncToken.objects.get()
    assert (stored.access_token_ciphertext, stored.version) == (token.access_token_ciphertext, token.version)
    assert stored.refresh_lease_until is None
    assert fake.counters["refreshes"] == 0


def collect(signal: Any, uid: str) -> list[dict[str, Any]]:
    """What ``signal`` sends until the test ends (its receiver is disconnected by the caller)."""
    sent: list[dict[str, Any]] = []
    signal.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid=uid)
    return sent


def test_a_row_deleted_meanwhile_asks_for_reauthorization_without_asking_cloudsync(
    client: Any, fake: Any
) -> None:
    token = expire(signed_in(client))
    CloudSyncToken.objects.filter(pk=token.pk).delete()  # disconnected by another request
    sent = collect(signals.reauthorization_required, "t3")
    try:
        with pytest.raises(errors.ReauthorizationRequired) as raised:
            tokens.refresh_if_expired(token)
    finally:
        signals.reauthorization_required.disconnect(dispatch_uid="t3")

    assert raised.value.scopes == token.scopes
    assert sent == []  # whoever deleted the row decided about it
    assert fake.counters["refresh_attempts"] == 0


def test_a_token_without_refresh_token_is_used_until_rejected_then_forgotten(client: Any, fake: Any) -> None:
    signed_in(client)
    CloudSyncToken.objects.update(refresh_token_ciphertext="")  # CloudSync issued none
    token = expire(CloudSyncToken.objects.get())
    sent = collect(signals.reauthorization_required, "t4")
    try:
        used = tokens.refresh_if_expired(token)
        with pytest.raises(errors.ReauthorizationRequired):
            tokens.refresh_after_rejection(used)
    finally:
        signals.reauthorization_required.disconnect(dispatch_uid="t4")

    assert used.access_token() == token.access_token()
    assert used.version == token.version
    assert not CloudSyncToken.objects.exists()
    assert [kw["account_id"] for kw in sent] == [token.account_id]
    assert fake.counters["refresh_attempts"] == 0


# Exactly one refresh per expiry, however many ask at once.


def test_many_threads_refresh_once(client: Any, fake: Any) -> None:
    token = expire(signed_in(client))
    results: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(16)

    def use() -> None:
        try:
            row = CloudSyncToken.objects.get(pk=token.pk)
            start.wait(timeout=10)
            results.append(tokens.refresh_if_expired(row).access_token())
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert fake.counters["refreshes"] == 1
    assert fake.counters["invalid_grants"] == 0
    assert len(results) == 16
    assert len(set(results)) == 1


def run_workers(
    token: CloudSyncToken, server_url: str, alias: str, processes: int, threads: int, tmp: Path
) -> Any:
    from django.conf import settings

    config: dict[str, Any] = {
        "database": {**connections[alias].settings_dict},
        "providers": settings.SOCIALACCOUNT_PROVIDERS,
        "token_id": str(token.pk),
        "threads": threads,
        "start_at": time.time() + 3,
    }
    config["database"].pop("TEST", None)
    path = tmp / "worker.json"
    path.write_text(json.dumps(config, default=str))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.refresh_worker", str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=90)
        assert worker.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs


def assert_one_refresh(outputs: Any, fake: Any, expected: int) -> None:
    seen = [access for output in outputs for access in output["tokens"]]
    errors_seen = [error for output in outputs for error in output["errors"]]
    assert errors_seen == [], errors_seen[0]
    assert len(seen) == expected
    assert len(set(seen)) == 1
    assert fake.counters["refreshes"] == 1
    assert fake.counters["invalid_grants"] == 0


def test_many_processes_refresh_once_on_sqlite(
    client: Any, fake: Any, cloudsync_server: Any, tmp_path: Path
) -> None:
    token = expire(signed_in(client))

    outputs = run_workers(token, cloudsync_server.url, "default", processes=4, threads=8, tmp=tmp_path)

    assert_one_refresh(outputs, fake, expected=32)


def test_many_processes_and_threads_refresh_once_on_a_database_server(
    on_server_database: str, client: Any, fake: Any, cloudsync_server: Any, tmp_path: Path
) -> None:
    token = expire(signed_in(client))
    assert connections[on_server_database].vendor in ("postgresql", "mysql")

    outputs = run_workers(
        token, cloudsync_server.url, on_server_database, processes=4, threads=8, tmp=tmp_path
    )

    assert_one_refresh(outputs, fake, expected=32)


def test_many_processes_wait_out_a_slow_refresh_and_refresh_once(
    client: Any,
    fake: Any,
    cloudsync_server: Any,
    tmp_path: Path,
    database: str,
) -> None:
    token = expire(signed_in(client))
    # The claimer's answer is late: every other worker finds its lease, polls, and uses its tokens.
    fake.delay_next("token", 1.5)

    outputs = run_workers(token, cloudsync_server.url, database, processes=3, threads=4, tmp=tmp_path)

    assert_one_refresh(outputs, fake, expected=12)
    assert fake.counters["refresh_attempts"] == 1
    assert CloudSyncToken.objects.get().refresh_lease_until is None


def test_sign_in_and_refresh_work_under_atomic_requests(
    on_each_database: str, client: Any, fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(connections[on_each_database].settings_dict, "ATOMIC_REQUESTS", True)

    token = expire(signed_in(client))  # stored in the view's transaction, with its account
    response = client.get("/workspaces/")  # refreshed on a connection of its own, then used

    assert response.status_code == 200
    assert response.json()["connected"] is True
    assert fake.counters["refreshes"] == 1
    assert CloudSyncToken.objects.get().version == token.version + 1


# Pinned regressions: refresh answers with which the hostile properties (tests/hostile/) found a
# bug. All fixed; the first pins of each bug, and how it was fixed, are in tests/test_sign_in.py.


def test_bug_an_expires_in_of_non_ascii_digits_is_a_typed_refresh_error(
    client: Any, hostile_settings: Any
) -> None:
    # expires_in_digits: int("²") in oauth.TokenResponse.from_json raised ValueError.
    token = expire(signed_in(client))
    body = {"access_token": "at_test_new", "token_type": "Bearer", "expires_in": "²"}
    hostile_settings.respond_next("token", 200, json.dumps(body).encode(), JSON_HEADERS)

    with pytest.raises(errors.InvalidResponse):
        tokens.refresh_if_expired(token)


def test_bug_deeply_nested_json_from_the_token_endpoint_is_a_typed_refresh_error(
    client: Any, hostile_settings: Any
) -> None:
    # nested_json: http.parse_json let json's RecursionError through.
    token = expire(signed_in(client))
    hostile_settings.respond_next("token", 400, NESTED_JSON, JSON_HEADERS)

    with pytest.raises(errors.CloudSyncError):
        tokens.refresh_if_expired(token)
    assert CloudSyncToken.objects.get(pk=token.pk).version == token.version
