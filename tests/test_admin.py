"""The admin of stored tokens: it shows who, which account, what scope and until when, never a
token or ciphertext, and its two actions ("Refresh now", "Forget tokens") answer with messages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.socialaccount.models import SocialToken
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import sign_in

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_cloudsync_cloudsynctoken_changelist"
OTHER_KEY = "Qk9HVVMta2V5LW5vYm9keS1oYXMtdGhpcy1rZXkhISE="


@pytest.fixture
def token(client: Client, fake: Any) -> CloudSyncToken:
    """A row stored by a real sign-in with the fake CloudSync."""
    assert sign_in(client).status_code == 302
    return CloudSyncToken.objects.get()


def secrets_of(token: CloudSyncToken, fake: Any) -> list[str]:
    """Everything the admin must never render for ``token``."""
    values = [
        token.access_token(),
        token.refresh_token(),
        token.access_token_ciphertext,
        token.refresh_token_ciphertext,
        fake.client_secret,
    ]
    return [value for value in values if value]


def assert_shows_none_of(response: Any, secrets: list[str]) -> None:
    page = response.content.decode()
    for secret in secrets:
        assert secret not in page
        # A ciphertext's body alone (without its "v1$id$" prefix) must not show up either.
        assert secret.rsplit("$", 1)[-1] not in page


def run_action(admin_client: Client, action: str, *rows: CloudSyncToken) -> tuple[Any, list[str]]:
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(row.pk) for row in rows]},
        follow=True,
    )
    assert response.status_code == 200
    return response, [str(message) for message in response.context["messages"]]


def test_the_list_shows_account_user_environment_scope_and_expiry(admin_client: Client, token: Any) -> None:
    response = admin_client.get(reverse(CHANGELIST))

    page = response.content.decode()
    assert response.status_code == 200
    assert token.account_id in page
    assert str(token.user) in page
    assert "sandbox" in page  # the environment of an at_test_ token
    assert "workspaces:read offline_access" in page
    for column in ("column-expires_at", "column-refreshed_at", "column-scope", "column-user"):
        assert column in page


def test_the_detail_page_shows_the_grant_read_only(admin_client: Client, token: Any) -> None:
    response = admin_client.get(reverse("admin:django_cloudsync_cloudsynctoken_change", args=[token.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert token.account_id in page
    assert "Granted scope" in page
    assert "Access token expires at" in page
    assert "Last refreshed" in page
    assert 'name="_save"' not in page
    assert "<textarea" not in page


@pytest.mark.parametrize(
    ("page", "query"),
    [
        ("changelist", ""),
        ("changelist", "?q=usr_ada"),
        ("changelist", "?environment__exact=test"),
        ("change", ""),
        ("history", ""),
        ("app_list", ""),
        ("index", ""),
    ],
)
def test_no_admin_page_shows_a_token_or_ciphertext(
    admin_client: Client, token: Any, fake: Any, page: str, query: str
) -> None:
    secrets = secrets_of(token, fake)
    run_action(admin_client, "refresh_now", token)  # so that the history page has an entry
    refreshed = CloudSyncToken.objects.get()
    secrets += secrets_of(refreshed, fake)
    urls = {
        "changelist": reverse(CHANGELIST),
        "change": reverse("admin:django_cloudsync_cloudsynctoken_change", args=[token.pk]),
        "history": reverse("admin:django_cloudsync_cloudsynctoken_history", args=[token.pk]),
        "app_list": reverse("admin:app_list", args=["django_cloudsync"]),
        "index": reverse("admin:index"),
    }

    response = admin_client.get(urls[page] + query)

    assert response.status_code == 200
    assert_shows_none_of(response, secrets)
    if page in ("changelist", "change", "history"):
        assert token.account_id in response.content.decode()


def test_tokens_cannot_be_added_edited_or_deleted_in_the_admin(admin_client: Client, token: Any) -> None:
    change_url = reverse("admin:django_cloudsync_cloudsynctoken_change", args=[token.pk])

    assert admin_client.get(reverse("admin:django_cloudsync_cloudsynctoken_add")).status_code == 403
    assert (
        admin_client.post(change_url, {"account_id": "usr_mallory", "scope": "files:write"}).status_code
        == 403
    )
    delete_url = reverse("admin:django_cloudsync_cloudsynctoken_delete", args=[token.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="delete_selected"' not in page
    assert 'value="refresh_now"' in page
    assert 'value="forget_tokens"' in page
    stored = CloudSyncToken.objects.get()
    assert (stored.account_id, stored.scope) == (token.account_id, token.scope)


def test_refresh_now_refreshes_and_says_so(admin_client: Client, token: Any, fake: Any) -> None:
    response, messages = run_action(admin_client, "refresh_now", token)

    stored = CloudSyncToken.objects.get()
    assert fake.counters["refreshes"] == 1
    assert stored.version == token.version + 1
    assert stored.access_token() != token.access_token()
    assert len(messages) == 1
    assert messages[0].startswith("usr_ada: refreshed; the new access token expires at ")
    assert_shows_none_of(response, secrets_of(token, fake) + secrets_of(stored, fake))


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("server_error", "usr_ada: not refreshed, CloudSync had an internal error (HTTP 500"),
        ("invalid_json", "usr_ada: not refreshed, "),
    ],
)
def test_a_failed_refresh_is_a_friendly_message_and_keeps_the_tokens(
    admin_client: Client, token: Any, fake: Any, fault: str, expected: str
) -> None:
    fake.fail_next("token", fault)

    response, messages = run_action(admin_client, "refresh_now", token)

    assert len(messages) == 1
    assert messages[0].startswith(expected)
    assert "The stored tokens are unchanged. Try again later." in messages[0]
    stored = CloudSyncToken.objects.get()
    assert (stored.version, stored.access_token_ciphertext) == (token.version, token.access_token_ciphertext)
    assert_shows_none_of(response, secrets_of(token, fake))


def test_a_wrong_client_secret_is_a_friendly_message(
    admin_client: Client, token: Any, fake: Any, settings: Any
) -> None:
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["APPS"] = [
        {"client_id": fake.client_id, "secret": "not-the-client-secret"}
    ]

    response, messages = run_action(admin_client, "refresh_now", token)

    assert len(messages) == 1
    assert messages[0].startswith("usr_ada: not refreshed, ")
    assert "Check the CloudSync app's settings." in messages[0]
    assert CloudSyncToken.objects.get().version == token.version
    assert "not-the-client-secret" not in response.content.decode()


def test_a_grant_whose_app_left_the_settings_is_a_configuration_message(
    admin_client: Client, token: Any, fake: Any, settings: Any
) -> None:
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["APPS"] = [
        {"client_id": "another-app", "secret": "s3cr3t-x"}
    ]

    response, messages = run_action(admin_client, "refresh_now", token)

    assert len(messages) == 1
    assert messages[0].startswith("usr_ada: not refreshed, django-cloudsync is not configured: ")
    assert fake.counters["refresh_attempts"] == 0
    assert CloudSyncToken.objects.get().version == token.version
    assert_shows_none_of(response, [*secrets_of(token, fake), "s3cr3t-x"])


def test_refresh_now_with_a_revoked_grant_says_the_user_must_authorize_again(
    admin_client: Client, token: Any, fake: Any
) -> None:
    fake.revoke_tokens()

    response, messages = run_action(admin_client, "refresh_now", token)

    assert not CloudSyncToken.objects.exists()
    assert len(messages) == 1
    assert messages[0].startswith("usr_ada: CloudSync no longer accepts this refresh token")
    assert "the user must authorize CloudSync again" in messages[0]
    assert_shows_none_of(response, secrets_of(token, fake))


def test_refresh_now_without_a_refresh_token_keeps_the_row(
    admin_client: Client, client: Client, fake: Any, settings: Any
) -> None:
    settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["OFFLINE_ACCESS"] = False
    assert sign_in(client).status_code == 302
    token = CloudSyncToken.objects.get()
    assert token.refresh_token() is None

    _, messages = run_action(admin_client, "refresh_now", token)

    assert CloudSyncToken.objects.get().version == token.version
    assert fake.counters["refresh_attempts"] == 0
    assert len(messages) == 1
    assert "issued no refresh token" in messages[0]


def test_refresh_now_with_tokens_no_key_can_decrypt_says_so(
    admin_client: Client, token: Any, fake: Any, settings: Any
) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = [OTHER_KEY]

    _, messages = run_action(admin_client, "refresh_now", token)

    assert CloudSyncToken.objects.filter(pk=token.pk).exists()
    assert fake.counters["refresh_attempts"] == 0
    assert len(messages) == 1
    assert "cannot be decrypted with CLOUDSYNC_ENCRYPTION_KEYS" in messages[0]
    assert OTHER_KEY not in messages[0]


def test_refresh_now_reports_each_row(admin_client: Client, token: Any, fake: Any) -> None:
    fake.add_user("usr_bob", email="bob@example.com", name="Bob")
    assert sign_in(Client(), user_id="usr_bob").status_code == 302
    bob = CloudSyncToken.objects.get(account_id="usr_bob")
    fake.revoke_tokens("usr_bob")

    _, messages = run_action(admin_client, "refresh_now", token, bob)

    assert sorted(message.split(":")[0] for message in messages) == ["usr_ada", "usr_bob"]
    assert any(m.startswith("usr_ada: refreshed") for m in messages)
    assert any(m.startswith("usr_bob: CloudSync no longer accepts") for m in messages)
    assert list(CloudSyncToken.objects.values_list("account_id", flat=True)) == ["usr_ada"]


def test_forget_tokens_deletes_the_rows_and_says_the_users_must_authorize_again(
    admin_client: Client, token: Any, fake: Any
) -> None:
    response, messages = run_action(admin_client, "forget_tokens", token)

    assert not CloudSyncToken.objects.exists()
    assert messages == [
        "Forgot the tokens of 1 CloudSync account (usr_ada); its user must authorize CloudSync again."
    ]
    entry = LogEntry.objects.get(action_flag=DELETION)
    assert entry.object_repr == str(token)
    assert fake.counters["token_requests"] == 1  # the sign-in's code exchange only
    assert_shows_none_of(response, secrets_of(token, fake))


def staff_member(*permissions: str) -> Client:
    user = get_user_model().objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_cloudsync", codename__in=permissions)
    )
    staff = Client()
    staff.force_login(user)
    return staff


def test_a_staff_member_who_may_only_view_gets_no_actions(token: Any, fake: Any) -> None:
    staff = staff_member("view_cloudsynctoken")

    page = staff.get(reverse(CHANGELIST))
    staff.post(reverse(CHANGELIST), {"action": "forget_tokens", "_selected_action": [str(token.pk)]})
    staff.post(reverse(CHANGELIST), {"action": "refresh_now", "_selected_action": [str(token.pk)]})

    assert page.status_code == 200
    assert token.account_id in page.content.decode()
    assert 'value="forget_tokens"' not in page.content.decode()
    assert 'value="refresh_now"' not in page.content.decode()
    assert CloudSyncToken.objects.get().version == token.version
    assert fake.counters["refresh_attempts"] == 0


def test_forgetting_takes_the_delete_permission_and_refreshing_the_change_permission(
    token: Any, fake: Any
) -> None:
    staff = staff_member("view_cloudsynctoken", "delete_cloudsynctoken")

    page = staff.get(reverse(CHANGELIST)).content.decode()

    assert 'value="forget_tokens"' in page
    assert 'value="refresh_now"' not in page
    assert 'value="delete_selected"' not in page


# Query strings: nothing filters, searches or orders on a ciphertext (issue 13, item 7).

CIPHERTEXT_LOOKUPS = [
    "access_token_ciphertext__regex",
    "access_token_ciphertext__startswith",
    "access_token_ciphertext__exact",
    "access_token_ciphertext__gt",
    "refresh_token_ciphertext__istartswith",
    "refresh_token_ciphertext__contains",
    "access_token_ciphertext",
    "social_account__cloudsync_token__access_token_ciphertext__startswith",
    "social_account__user__socialaccount__cloudsync_token__refresh_token_ciphertext__startswith",
]


def probe(token: CloudSyncToken, lookup: str) -> str:
    """A value ``lookup`` matches for ``token``: a filter on it would tell how a ciphertext starts."""
    ciphertext = (
        token.refresh_token_ciphertext if "refresh_token" in lookup else token.access_token_ciphertext
    )
    if lookup.endswith("__regex"):
        return "^" + re.escape(ciphertext[:4])
    if lookup.endswith("__gt"):
        return "0"
    if lookup.endswith(("__exact", "_ciphertext")):
        return ciphertext
    return ciphertext[:4]


@pytest.mark.parametrize("lookup", CIPHERTEXT_LOOKUPS)
def test_a_view_only_staff_member_cannot_filter_on_a_ciphertext(token: Any, fake: Any, lookup: str) -> None:
    staff = staff_member("view_cloudsynctoken")
    assert CloudSyncToken.objects.filter(**{lookup: probe(token, lookup)}).count() == 1  # it would tell

    matching = staff.get(reverse(CHANGELIST), {lookup: probe(token, lookup)})
    not_matching = staff.get(reverse(CHANGELIST), {lookup: "~no-ciphertext-starts-so"})

    # Refused whether or not the value matches: the answer tells nothing about the ciphertext.
    assert matching.status_code == not_matching.status_code == 400
    assert token.account_id not in matching.content.decode()


@pytest.mark.parametrize("lookup", ["version__gte", "id__startswith", "pk", "user__password__startswith"])
def test_fields_the_admin_does_not_show_cannot_be_filtered_on(
    admin_client: Client, token: Any, lookup: str
) -> None:
    assert admin_client.get(reverse(CHANGELIST), {lookup: "0"}).status_code == 400


def test_a_superuser_cannot_filter_on_a_ciphertext_either(admin_client: Client, token: Any) -> None:
    response = admin_client.get(
        reverse(CHANGELIST), {"access_token_ciphertext__startswith": token.access_token_ciphertext[:3]}
    )

    assert response.status_code == 400


def test_the_shown_fields_can_still_be_filtered_on(admin_client: Client, token: Any) -> None:
    for params in (
        {"environment__exact": "test"},
        {"account_id": token.account_id},
        {"scope__contains": "workspaces"},
        {"social_account__user__id__exact": str(token.user_id)},
    ):
        response = admin_client.get(reverse(CHANGELIST), params)

        assert response.status_code == 200, params
        assert response.context["cl"].result_count == 1, params


@pytest.mark.parametrize(
    ("admin_url", "lookup"),
    [
        ("admin:auth_user_changelist", "socialaccount__cloudsync_token__access_token_ciphertext__startswith"),
        (
            "admin:socialaccount_socialaccount_changelist",
            "cloudsync_token__access_token_ciphertext__startswith",
        ),
    ],
)
def test_other_admins_cannot_filter_on_a_ciphertext_through_a_relation(
    admin_client: Client, token: Any, admin_url: str, lookup: str
) -> None:
    response = admin_client.get(reverse(admin_url), {lookup: token.access_token_ciphertext[:3]})

    assert response.status_code == 400


def test_search_never_looks_at_a_ciphertext(admin_client: Client, token: Any) -> None:
    for fragment in (token.access_token_ciphertext[-12:], token.refresh_token_ciphertext[-12:]):
        response = admin_client.get(reverse(CHANGELIST), {"q": fragment})

        assert response.status_code == 200
        assert response.context["cl"].result_count == 0


@pytest.mark.parametrize(
    "order", ["0", "1", "2", "3", "4", "5", "-1.2", "6", "99", "access_token_ciphertext"]
)
def test_ordering_never_uses_a_ciphertext(admin_client: Client, token: Any, order: str) -> None:
    response = admin_client.get(reverse(CHANGELIST), {"o": order})

    assert response.status_code in (200, 302)
    if response.status_code == 200:
        ordering = [str(each) for each in response.context["cl"].queryset.query.order_by]
        assert ordering
        assert not [each for each in ordering if "ciphertext" in each]


def test_allauths_social_token_admin_shows_nothing_sealed_with_store_tokens_on(
    admin_client: Client, client: Client, fake: Any, settings: Any
) -> None:
    settings.SOCIALACCOUNT_STORE_TOKENS = True
    assert sign_in(client).status_code == 302
    social_token = SocialToken.objects.get()
    marker = "v1$"

    pages = [
        admin_client.get(reverse("admin:socialaccount_socialtoken_changelist")),
        admin_client.get(reverse("admin:socialaccount_socialtoken_change", args=[social_token.pk])),
    ]

    for page in pages:
        assert page.status_code == 200
        assert marker not in page.content.decode()
    assert_shows_none_of(pages[1], secrets_of(CloudSyncToken.objects.get(), fake))
