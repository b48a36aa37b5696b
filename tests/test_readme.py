"""Every code sample of the README runs here, as written (placeholders filled in), and does what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template import engines
from django.test import Client, RequestFactory, override_settings

from django_cloudsync import checks
from django_cloudsync.middleware import attach
from django_cloudsync.testing.flow import app_authorization, sign_in

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.django_db


def samples(language: str) -> list[str]:
    """The README's fenced blocks of ``language``, in order, de-indented (some sit in a list)."""
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```", README, flags=re.MULTILINE | re.DOTALL)
    return [re.sub(rf"^{indent}", "", body, flags=re.MULTILINE) for indent, body in blocks]


def sample(language: str, containing: str) -> str:
    found = [body for body in samples(language) if containing in body]
    assert len(found) == 1, f"expected one {language} sample containing {containing!r}"
    return found[0]


def run(code: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = dict(names)
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (our own README)
    return namespace


def test_every_sample_is_covered_here() -> None:
    assert len(samples("python")) == 6
    assert len(samples("django")) == 1
    assert len(samples("http")) == 3
    assert len(samples("console")) == 1


def test_the_two_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for command in re.findall(r"^make (\w+)", sample("console", "make demo"), flags=re.MULTILINE):
        assert re.search(rf"^{command}:", makefile, flags=re.MULTILINE), command


def test_installed_apps_and_middleware_sample_pass_the_checks(settings: Any) -> None:
    names = run(sample("python", "INSTALLED_APPS"))

    assert set(names["INSTALLED_APPS"]) <= set(settings.INSTALLED_APPS)
    with override_settings(MIDDLEWARE=names["MIDDLEWARE"]):
        assert checks.check_middleware() == []


def test_provider_settings_sample_passes_the_checks(fake: Any) -> None:
    from django_cloudsync.crypto import generate_key

    environment = {
        "CLOUDSYNC_CLIENT_ID": fake.client_id,
        "CLOUDSYNC_CLIENT_SECRET": fake.client_secret,
        "CLOUDSYNC_ENCRYPTION_KEY": generate_key(),
    }
    names = run(sample("python", "SOCIALACCOUNT_PROVIDERS = {"), env=environment.__getitem__)

    providers = names["SOCIALACCOUNT_PROVIDERS"]
    assert providers["cloudsync"]["APPS"] == [{"client_id": fake.client_id, "secret": fake.client_secret}]
    with override_settings(
        SOCIALACCOUNT_PROVIDERS=providers, CLOUDSYNC_ENCRYPTION_KEYS=names["CLOUDSYNC_ENCRYPTION_KEYS"]
    ):
        assert checks.check_provider() == []
        assert checks.check_encryption_keys() == []


def test_template_sample_renders_both_buttons(rf: RequestFactory) -> None:
    # Signed out: the plain button signs in (a signed-in user would be offered "Connect CloudSync").
    request = rf.get("/")
    request.user = AnonymousUser()

    html = engines["django"].from_string(sample("django", "cloudsync_login_button")).render({}, request)

    assert html.count('method="post"') == 2
    assert "Sign in with CloudSync" in html
    assert "Connect CloudSync" in html
    assert "next=%2Ffiles%2F" in html


def test_view_sample_lists_the_workspaces(client: Client, fake: Any, rf: RequestFactory) -> None:
    sign_in(client)
    from django.contrib.auth import get_user_model

    workspaces = run(sample("python", "@cloudsync_required"))["workspaces"]
    request = rf.get("/workspaces/")
    request.user = get_user_model().objects.get()
    request.session = client.session
    attach(request)

    response = workspaces(request)

    assert response.status_code == 200
    assert b"<li>Personal</li>" in response.content


def test_client_sample_builds_each_kind_of_client(client: Client, fake: Any, settings: Any) -> None:
    from django.contrib.auth import get_user_model

    sign_in(client)
    settings.CLOUDSYNC_API_KEY = "sk_test_from_the_readme"

    names = run(sample("python", "app_client()"), user=get_user_model().objects.get())

    assert names["client_for"](get_user_model().objects.get()).me()["id"] == "usr_ada"
    assert names["app_client"]().environment == "test"


def test_testing_sample_passes(client: Client, cloudsync_settings: Any) -> None:
    test = run(sample("python", "def test_workspaces_page"))["test_workspaces_page"]

    test(client, cloudsync_settings)


def http_request(text: str) -> tuple[str, str, str, str]:
    """Method, path, content type and body of an HTTP sample."""
    head, _, body = text.partition("\n\n")
    request_line, *headers = head.splitlines()
    method, path = request_line.split()
    content_type = next(line.split(": ", 1)[1] for line in headers if line.startswith("Content-Type"))
    return method, path, content_type, body.strip()


def test_spa_redirect_sample_goes_to_cloudsync(client: Client, fake: Any) -> None:
    method, path, content_type, body = http_request(sample("http", "provider/redirect"))
    body = body.replace("https://app.example.com/signed-in", "/spa/signed-in")  # an allowed host

    response = client.generic(method, path, body, content_type=content_type)

    assert response.status_code == 302
    assert "/oauth/authorize?" in response["Location"]


def test_app_token_sample_signs_in(client: Client, fake: Any) -> None:
    method, path, content_type, body = http_request(sample("http", "provider/token"))
    issued = fake.issue_tokens(scope="workspaces:read")
    body = body.replace("YOUR_CLIENT_ID", fake.client_id).replace("at_live_...", issued["access_token"])

    response = client.generic(method, path, body, content_type=content_type)

    assert response.status_code == 200
    assert response.json()["meta"]["is_authenticated"] is True
    assert json.loads(body)["provider"] == "cloudsync"


def test_app_redirect_uris_sample_passes_the_checks_and_lets_the_app_code_sample_sign_in(
    client: Client, fake: Any, settings: Any
) -> None:
    run(sample("python", "APP_REDIRECT_URIS"), SOCIALACCOUNT_PROVIDERS=settings.SOCIALACCOUNT_PROVIDERS)
    assert checks.check_provider() == []
    method, path, content_type, body = http_request(sample("http", "app/code"))
    authorized = app_authorization(json.loads(body)["token"]["redirect_uri"])
    body = (
        body.replace("YOUR_CLIENT_ID", fake.client_id)
        .replace("THE_CODE", authorized.code)
        .replace("THE_VERIFIER", authorized.code_verifier)
    )

    response = client.generic(method, path, body, content_type=content_type)

    assert response.status_code == 200, response.content
    assert response.json()["meta"]["is_authenticated"] is True
    assert fake.counters["code_exchanges"] == 1


def test_every_setting_the_app_reads_is_in_the_settings_tables() -> None:
    package = ROOT / "src" / "django_cloudsync"
    source = "\n".join(path.read_text() for path in package.rglob("*.py"))
    read = set(re.findall(r'getattr\(settings, "(CLOUDSYNC_[A-Z_]+)"', source))
    read |= set(re.findall(r'provider_settings\(\)\.get\("([A-Z_]+)"', source))
    section = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))

    assert len(read) >= 13  # the patterns still find them
    assert read <= documented, sorted(read - documented)
