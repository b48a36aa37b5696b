"""Every code sample of the README and of the docs pages runs here, as written (placeholders filled
in), and does what the page says; the pages' links lead somewhere.

The README's install is followed for real, on a new ``startproject`` site, by
``tests/test_newcomer.py``; here it is checked in-process, quickly. ``docs/cloudsync-api.md`` is
CloudSync's own documentation, quoted: its samples are CloudSync's, not this app's, and are not run.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
import sys
import types
from importlib.metadata import requires
from pathlib import Path
from typing import Any

import django
import pytest
import requests
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AnonymousUser
from django.template import Context, Engine, engines
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.urls import path

from django_cloudsync import checks, responses
from django_cloudsync.crypto import generate_key
from django_cloudsync.middleware import attach
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.testing.flow import app_authorization, asign_in, sign_in
from tests.markdown_samples import DOCS, README, ROOT, anchors, pages, sample, samples
from tests.processes import clean_environment, free_port, serving
from tests.processes import run as run_command

pytestmark = pytest.mark.django_db

INSTALLATION = DOCS / "installation.md"
ASYNC = DOCS / "async.md"
CLIENT = DOCS / "client.md"
HEADLESS = DOCS / "headless.md"
TESTING = DOCS / "testing.md"
CONTRIBUTING = DOCS / "contributing.md"
API_BACKENDS = DOCS / "api-backends.md"

# Every page's samples by language: a new sample fails here until a test below runs it.
SAMPLES_PER_PAGE = {
    "README.md": {"console": 4, "python": 4, "django": 2},
    "docs/api-backends.md": {"sh": 1, "python": 2, "json": 1},
    # The python samples run in tests/test_async.py, beside the async views they document; the
    # uvicorn line is the README's, run here.
    "docs/async.md": {"python": 3, "console": 1},
    "docs/client.md": {"python": 1},
    "docs/cloudsync-api.md": {"": 3, "json": 1, "python": 1},  # CloudSync's, quoted: not run
    "docs/contributing.md": {"console": 1},
    "docs/headless.md": {"http": 3, "python": 1},
    "docs/index.md": {},
    "docs/installation.md": {"console": 2, "python": 3, "django": 1},
    "docs/internals.md": {"": 1},  # the diagram
    "docs/key-rotation.md": {},
    "docs/performance.md": {},
    "docs/security.md": {},
    "docs/settings.md": {},
    "docs/testing.md": {"ini": 1, "python": 1},
    "docs/views.md": {},
}


def run(code: str, page: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = dict(names)
    exec(compile(code, page, "exec"), namespace)  # noqa: S102  (our own pages)
    return namespace


def startproject_settings() -> str:
    """The settings.py that ``django-admin startproject mysite`` writes, from Django's own template."""
    template = Path(django.__file__).parent / "conf" / "project_template" / "project_name" / "settings.py-tpl"
    context = {"project_name": "mysite", "secret_key": "docs-test-only", "docs_version": "stable"}
    return Engine().from_string(template.read_text()).render(Context(context, autoescape=False))


def readme_settings(**environment: str) -> dict[str, Any]:
    """A new project's settings with the README's lines appended, read with ``environment``."""
    appended = sample(README, "python", "INSTALLED_APPS +=").body
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CLOUDSYNC_CLIENT_ID", "CLOUDSYNC_CLIENT_SECRET", "CLOUDSYNC_ENCRYPTION_KEYS"):
            patch.delenv(name, raising=False)
        for name, value in environment.items():
            patch.setenv(name, value)
        return run(
            startproject_settings() + "\n" + appended,
            "README.md",
            __file__=str(ROOT / "mysite" / "settings.py"),
        )


def test_every_sample_is_counted_here() -> None:
    found = {}
    for page in pages():
        counts: dict[str, int] = {}
        for each in samples(page):
            counts[each.language] = counts.get(each.language, 0) + 1
        found[page.relative_to(ROOT).as_posix()] = counts

    assert found == SAMPLES_PER_PAGE


def test_every_readme_sample_is_a_make_target_a_newcomer_step_or_the_async_section() -> None:
    unmarked = [each.body for each in samples(README) if each.marker is None]

    # The async section's two samples run below, outside the newcomer's startproject site.
    assert unmarked == [
        sample(README, "console", "make demo").body,
        sample(README, "python", "acloudsync()").body,
        sample(README, "console", "uvicorn").body,
    ]


@pytest.mark.parametrize("page", [README, CONTRIBUTING], ids=lambda page: page.name)
def test_the_two_commands_are_make_targets(page: Path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    commands = re.findall(r"^make (\w+)", sample(page, "console", "make demo").body, flags=re.MULTILINE)

    assert commands == ["demo", "test"]
    for command in commands:
        assert re.search(rf"^{command}:", makefile, flags=re.MULTILINE), command


def test_readme_settings_pass_the_checks(fake: Any) -> None:
    names = readme_settings(
        CLOUDSYNC_CLIENT_ID=fake.client_id,
        CLOUDSYNC_CLIENT_SECRET=fake.client_secret,
        CLOUDSYNC_ENCRYPTION_KEYS=f"{generate_key()} {generate_key()}",
    )

    assert "django.contrib.staticfiles" in names["INSTALLED_APPS"]
    assert names["INSTALLED_APPS"][-4:] == [
        "allauth",
        "allauth.account",
        "allauth.socialaccount",
        "django_cloudsync",
    ]
    assert len(names["CLOUDSYNC_ENCRYPTION_KEYS"]) == 2
    assert names["LOGIN_REDIRECT_URL"] == "/"
    assert names["TEMPLATES"][0]["DIRS"] == [ROOT / "templates"]
    with override_settings(
        MIDDLEWARE=names["MIDDLEWARE"],
        SOCIALACCOUNT_PROVIDERS=names["SOCIALACCOUNT_PROVIDERS"],
        CLOUDSYNC_ENCRYPTION_KEYS=names["CLOUDSYNC_ENCRYPTION_KEYS"],
    ):
        assert checks.check_middleware() == []
        assert checks.check_provider() == []
        assert checks.check_encryption_keys() == []


def test_readme_settings_load_without_the_environment_and_the_checks_name_what_is_missing() -> None:
    names = readme_settings()

    with override_settings(
        SOCIALACCOUNT_PROVIDERS=names["SOCIALACCOUNT_PROVIDERS"],
        CLOUDSYNC_ENCRYPTION_KEYS=names["CLOUDSYNC_ENCRYPTION_KEYS"],
    ):
        (no_key,) = checks.check_encryption_keys()
        assert [message.id for message in checks.check_provider()] == ["django_cloudsync.E006"]
    assert no_key.id == "django_cloudsync.E001"
    assert "cloudsync_generate_key" in (no_key.hint or "")


def test_installation_provider_sample_passes_the_checks(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("CLOUDSYNC_CLIENT_ID", fake.client_id)
    monkeypatch.setenv("CLOUDSYNC_CLIENT_SECRET", fake.client_secret)
    names = run(sample(INSTALLATION, "python", "SOCIALACCOUNT_PROVIDERS = {").body, "installation.md", os=os)

    cloudsync = names["SOCIALACCOUNT_PROVIDERS"]["cloudsync"]
    assert cloudsync["APPS"] == [{"client_id": fake.client_id, "secret": fake.client_secret}]
    assert cloudsync["SCOPE"] == ["files:read", "workspaces:read"]
    with override_settings(SOCIALACCOUNT_PROVIDERS=names["SOCIALACCOUNT_PROVIDERS"]):
        assert checks.check_provider() == []


def test_installation_fake_settings_point_the_provider_at_the_fake_of_the_console_sample() -> None:
    providers: dict[str, Any] = {"cloudsync": {}}
    run(
        sample(INSTALLATION, "python", '["AUTH_URL"]').body,
        "installation.md",
        SOCIALACCOUNT_PROVIDERS=providers,
    )
    command = sample(INSTALLATION, "console", "django_cloudsync.testing").body
    port = re.search(r"--port (\d+)", command)

    assert port is not None
    assert providers["cloudsync"] == {
        "AUTH_URL": f"http://127.0.0.1:{port[1]}",
        "API_URL": f"http://127.0.0.1:{port[1]}",
    }


def test_installation_console_sample_installs_from_a_checkout_or_a_wheel() -> None:
    # tests/test_packaging.py builds the wheel with `python -m build` and installs it with pip.
    lines = sample(INSTALLATION, "console", "pip install").body.splitlines()

    assert lines[0] == "python -m pip install path/to/django-cloudsync"
    assert lines[1].startswith("python -m build path/to/django-cloudsync")


def test_installation_button_sample_signs_in_or_connects(rf: RequestFactory, django_user_model: Any) -> None:
    button = engines["django"].from_string(sample(INSTALLATION, "django", "process=").body)
    signed_out, signed_in = rf.get("/"), rf.get("/")
    signed_out.user = AnonymousUser()
    signed_in.user = django_user_model.objects.create_user("ada")

    for_a_visitor, for_a_user = button.render({}, signed_out), button.render({}, signed_in)

    # The plain button follows the visitor: a sign-in, or Connect for a signed-in user.
    assert for_a_visitor.count('method="post"') == for_a_user.count('method="post"') == 2
    assert (for_a_visitor.count("Sign in with CloudSync"), for_a_visitor.count("Connect CloudSync")) == (1, 1)
    assert (for_a_user.count("Sign in with CloudSync"), for_a_user.count("Connect CloudSync")) == (0, 2)
    assert "next=%2Ffiles%2F" in for_a_visitor


@pytest.mark.parametrize("page", [README, INSTALLATION], ids=lambda page: page.name)
def test_view_sample_lists_the_workspaces(page: Path, client: Client, fake: Any, rf: RequestFactory) -> None:
    from django.contrib.auth import get_user_model

    sign_in(client)
    view = sample(page, "python", "request.user.cloudsync.workspaces()")
    workspaces = run(view.body, page.name)["workspaces"]
    request = rf.get("/workspaces/")
    request.user = get_user_model().objects.get()
    request.session = client.session
    attach(request)

    response = workspaces(request)

    assert response.status_code == 200
    assert b"<li>Personal</li><li>Team</li>" in response.content


def test_readme_templates_render_the_button_and_the_workspaces(
    rf: RequestFactory, django_user_model: Any, settings: Any
) -> None:
    settings.STATIC_URL = "/static/"  # a new project's "static/"
    request = rf.get("/")
    request.user = django_user_model.objects.create_user("ada")
    home = engines["django"].from_string(sample(README, "django", "cloudsync_login_button").body)
    listing = engines["django"].from_string(sample(README, "django", "for workspace in").body)

    page = home.render({}, request)

    assert 'href="/static/cloudsync/cloudsync.css"' in page
    assert "Signed in as ada." in page
    assert 'method="post"' in page
    assert listing.render({"workspaces": [{"name": "Personal"}]}).strip() == "<ul><li>Personal</li></ul>"


def test_readme_async_view_sample_renders_the_readme_template(fake: Any, settings: Any) -> None:
    import tests.urls

    view = sample(README, "python", "acloudsync()").body
    workspaces = run(view, "README.md", __name__="docs_readme_async")["workspaces"]
    urlconf = types.ModuleType("docs_readme_async_urls")
    urlconf.urlpatterns = [path("readme/async/", workspaces), *tests.urls.urlpatterns]  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = urlconf
    browser = AsyncClient()

    anonymous = async_to_sync(browser.get)("/readme/async/")
    signed_in = async_to_sync(asign_in)(browser)
    # The README's own workspaces.html is the only template the view can find.
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {
                "loaders": [
                    (
                        "django.template.loaders.locmem.Loader",
                        {"workspaces.html": sample(README, "django", "for workspace in").body},
                    )
                ]
            },
        }
    ]
    listed = async_to_sync(browser.get)("/readme/async/")

    assert anonymous.status_code == 302  # sign in first
    assert signed_in.status_code == 302
    assert listed.status_code == 200
    assert listed.content.decode().strip() == "<ul><li>Personal</li><li>Team</li></ul>"
    assert fake.api_calls_by_path["/v1/workspaces"] == 1


def test_the_uvicorn_line_serves_the_examples_async_page(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    line = sample(README, "console", "uvicorn").body.strip()
    directory, uvicorn = line.split(" && ")
    program, *arguments = shlex.split(uvicorn)
    makefile = (ROOT / "Makefile").read_text()

    assert sample(ASYNC, "console", "uvicorn").body.strip() == line  # one command, in two places
    assert directory == "cd example_project"
    # make demo's virtualenv: the Makefile's BIN, seen from example_project/.
    assert program == "../.venv/bin/uvicorn"
    assert re.search(r"^VENV := \.venv$", makefile, flags=re.MULTILINE)
    assert re.search(r"^BIN := \$\(VENV\)/bin$", makefile, flags=re.MULTILINE)
    # This test run's interpreter stands in for make demo's virtualenv, on a free port and a
    # database of its own, migrated as make demo does.
    example = ROOT / directory.split()[1]
    port = free_port()
    arguments[arguments.index("--port") + 1] = str(port)
    site = f"http://127.0.0.1:{port}"
    environment = clean_environment() | {
        "EXAMPLE_DATABASE": str(tmp_path / "db.sqlite3"),
        "EXAMPLE_BASE_URL": site,  # where the example finds its fake CloudSync
    }
    run_command([sys.executable, "manage.py", "migrate", "--noinput"], cwd=example, env=environment)
    log_path = tmp_path / "uvicorn.log"
    server = [sys.executable, "-m", "uvicorn", *arguments]
    with serving(server, cwd=example, env=environment, log_path=log_path, url=f"{site}/") as home:
        assert home is not None, log_path.read_text()
        async_page = requests.get(f"{site}/workspaces/async/", allow_redirects=False, timeout=30)
        fake_login = requests.get(f"{site}/accounts/login/", timeout=30)

    assert home.status_code == 200
    assert "Sign in with CloudSync" in home.text
    assert async_page.status_code == 302  # @cloudsync_required: an anonymous visitor signs in first
    assert async_page.headers["Location"].startswith("/accounts/login/")
    assert fake_login.status_code == 200


def test_client_sample_builds_each_kind_of_client(client: Client, fake: Any, settings: Any) -> None:
    from django.contrib.auth import get_user_model

    sign_in(client)
    settings.CLOUDSYNC_API_KEY = "sk_test_from_the_docs"

    names = run(
        sample(CLIENT, "python", "app_client()").body, "client.md", user=get_user_model().objects.get()
    )

    assert names["client_for"](get_user_model().objects.get()).me()["id"] == "usr_ada"
    assert names["app_client"]().environment == "test"


def test_testing_samples_configure_pytest_and_pass(client: Client, cloudsync_settings: Any) -> None:
    config = configparser.ConfigParser()
    config.read_string(sample(TESTING, "ini", "[pytest]").body)
    test = run(sample(TESTING, "python", "def test_workspaces_page").body, "testing.md")[
        "test_workspaces_page"
    ]

    assert config["pytest"]["DJANGO_SETTINGS_MODULE"] == "mysite.settings"  # the README's startproject
    assert [mark.name for mark in test.pytestmark] == ["django_db"]
    test(client, cloudsync_settings)


def http_request(text: str) -> tuple[str, str, str, str]:
    """Method, path, content type and body of an HTTP sample."""
    head, _, body = text.partition("\n\n")
    request_line, *headers = head.splitlines()
    method, path = request_line.split()
    content_type = next(line.split(": ", 1)[1] for line in headers if line.startswith("Content-Type"))
    return method, path, content_type, body.strip()


def test_spa_redirect_sample_goes_to_cloudsync(client: Client, fake: Any) -> None:
    method, path, content_type, body = http_request(sample(HEADLESS, "http", "provider/redirect").body)
    body = body.replace("https://app.example.com/signed-in", "/spa/signed-in")  # an allowed host

    response = client.generic(method, path, body, content_type=content_type)

    assert response.status_code == 302
    assert "/oauth/authorize?" in response["Location"]


def test_app_token_sample_signs_in(client: Client, fake: Any) -> None:
    method, path, content_type, body = http_request(sample(HEADLESS, "http", "provider/token").body)
    issued = fake.issue_tokens(scope="workspaces:read")
    body = body.replace("YOUR_CLIENT_ID", fake.client_id).replace("at_live_...", issued["access_token"])

    response = client.generic(method, path, body, content_type=content_type)

    assert response.status_code == 200
    assert response.json()["meta"]["is_authenticated"] is True
    assert json.loads(body)["provider"] == "cloudsync"


def test_app_redirect_uris_sample_passes_the_checks_and_lets_the_app_code_sample_sign_in(
    client: Client, fake: Any, settings: Any
) -> None:
    run(
        sample(HEADLESS, "python", "APP_REDIRECT_URIS").body,
        "headless.md",
        SOCIALACCOUNT_PROVIDERS=settings.SOCIALACCOUNT_PROVIDERS,
    )
    assert checks.check_provider() == []
    method, path, content_type, body = http_request(sample(HEADLESS, "http", "app/code").body)
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


# docs/api-backends.md: the samples become views of a URLconf of their own, beside the test site's.


def api_backends_sample(containing: str) -> dict[str, Any]:
    return run(sample(API_BACKENDS, "python", containing).body, "api-backends.md")


@pytest.fixture
def docs_api(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's DRF view at ``/docs/drf/workspaces/`` and its ninja API under ``/docs/ninja/``."""
    pytest.importorskip("rest_framework")
    pytest.importorskip("ninja")
    import tests.urls

    drf_settings, drf_views = sample(API_BACKENDS, "python", "HasCloudSync").body.split("# views.py")
    settings.REST_FRAMEWORK = run(drf_settings, "api-backends.md")["REST_FRAMEWORK"]
    workspaces_view = run(drf_views, "api-backends.md")["Workspaces"]
    # django-ninja before 1.4 refuses a second NinjaAPI of one namespace; each test builds one.
    monkeypatch.setenv("NINJA_SKIP_REGISTRY", "1")
    ninja_api = api_backends_sample("NinjaAPI")["api"]
    urlconf = types.ModuleType("docs_api_urls")
    urlconf.urlpatterns = [  # type: ignore[attr-defined]
        path("docs/drf/workspaces/", workspaces_view.as_view()),
        path("docs/ninja/", ninja_api.urls),
        *tests.urls.urlpatterns,
    ]
    settings.ROOT_URLCONF = urlconf


def test_api_backends_install_lines_name_the_extras_and_their_floors() -> None:
    lines = sample(API_BACKENDS, "sh", "pip install").body.splitlines()
    floors = {
        re.search(r"\[(\w+)\]", line)[1]: re.search(r">= ([\d.]+)", line)[1]  # type: ignore[index]
        for line in lines
    }
    extras = set(requires("django-cloudsync") or [])

    assert floors == {"drf": "3.15", "ninja": "1.3"}
    assert f'djangorestframework>={floors["drf"]}; extra == "drf"' in extras
    assert f'django-ninja>={floors["ninja"]}; extra == "ninja"' in extras


def test_api_backends_drf_sample_lists_the_workspaces_or_answers_json(
    docs_api: None, client: Client, fake: Any, django_user_model: Any
) -> None:
    sign_in(client)
    listed = client.get("/docs/drf/workspaces/")
    fake.revoke_tokens()
    fake.expire_access_tokens()
    dead_grant = client.get("/docs/drf/workspaces/")
    password_user = Client()
    password_user.force_login(django_user_model.objects.create_user("grace"))
    not_connected = password_user.get("/docs/drf/workspaces/")

    assert listed.status_code == 200, listed.content
    assert [workspace["name"] for workspace in listed.json()["workspaces"]] == ["Personal", "Team"]
    # The settings sample's exception handler answers the dead grant, with never-cache headers.
    assert dead_grant.status_code == 403
    assert dead_grant.json()["errors"][0]["code"] == "cloudsync_reauthorization_required"
    assert "no-cache" in dead_grant["Cache-Control"]
    assert not CloudSyncToken.objects.exists()
    assert not_connected.status_code == 403
    assert not_connected.json()["errors"][0]["code"] == "cloudsync_not_connected"


def test_api_backends_ninja_sample_asks_for_the_write_scope_with_the_pages_json_answer(
    docs_api: None, client: Client, fake: Any
) -> None:
    sign_in(client)
    listed = client.get("/docs/ninja/workspaces")
    calls = fake.counters["api_calls"]
    refused = client.post("/docs/ninja/workspaces?name=Docs")

    assert listed.status_code == 200, listed.content
    assert [workspace["name"] for workspace in listed.json()["workspaces"]] == ["Personal", "Team"]
    assert refused.status_code == 403
    assert refused.json() == json.loads(sample(API_BACKENDS, "json", "cloudsync_scope_required").body)
    assert fake.counters["api_calls"] == calls  # refused before CloudSync is asked


def test_api_backends_ninja_sample_creates_a_workspace_with_the_write_scope(
    docs_api: None, client: Client, fake: Any
) -> None:
    sign_in(client, scope="workspaces:write")

    created = client.post("/docs/ninja/workspaces?name=Docs")
    listed = client.get("/docs/ninja/workspaces")

    assert created.status_code == 200, created.content
    assert created.json()["name"] == "Docs"
    assert [workspace["name"] for workspace in listed.json()["workspaces"]] == ["Personal", "Team", "Docs"]


def test_api_backends_table_is_the_error_table() -> None:
    rows = re.findall(
        r"^\| [^|]+ \| (\d{3})[^|]* \| `(cloudsync_\w+)` \|", API_BACKENDS.read_text(), re.MULTILINE
    )

    assert {(int(status), code) for status, code in rows} == {
        (answer.status, answer.code) for _, answer in responses.ERRORS
    }
    assert len(rows) == len(responses.ERRORS)


def test_the_performance_pages_benchmark_table_is_benchmarks_readmes() -> None:
    def table(page: Path) -> list[str]:
        return re.findall(r"^\| \d+ \|.*$", page.read_text(), flags=re.MULTILINE)

    rows = table(DOCS / "performance.md")

    assert len(rows) >= 15
    assert rows == table(ROOT / "benchmarks" / "README.md")


def test_every_test_the_security_page_cites_exists() -> None:
    def defined_in(*files: Path) -> list[str]:
        source = "\n".join(file.read_text() for file in files)
        return re.findall(r"^(?:async )?def (test_\w+)", source, flags=re.MULTILINE)

    everywhere = defined_in(*(ROOT / "tests").rglob("test_*.py"))
    cited = re.findall(r"`(tests/[\w/]+\.py(?:::\w+)?|test_[\w*]+)`", (DOCS / "security.md").read_text())

    assert len(cited) >= 20  # the pattern still finds them
    for citation in cited:
        path, _, name = citation.partition("::") if citation.startswith("tests/") else ("", "", citation)
        assert not path or (ROOT / path).is_file(), citation
        if name:
            names = defined_in(ROOT / path) if path else everywhere
            assert fnmatch.filter(names, name), citation


def test_every_setting_the_app_reads_is_in_the_settings_tables() -> None:
    package = ROOT / "src" / "django_cloudsync"
    source = "\n".join(path.read_text() for path in package.rglob("*.py"))
    read = set(re.findall(r'getattr\(settings, "(CLOUDSYNC_[A-Z_]+)"', source))
    read |= set(re.findall(r'provider_settings\(\)\.get\("([A-Z_]+)"', source))
    documented = set(
        re.findall(r"^\| `([A-Z_]+)` \|", (DOCS / "settings.md").read_text(), flags=re.MULTILINE)
    )

    assert len(read) >= 13  # the patterns still find them
    assert read <= documented, sorted(read - documented)


def test_every_check_id_is_in_the_settings_page() -> None:
    package = ROOT / "src" / "django_cloudsync" / "checks"
    source = "\n".join(path.read_text() for path in sorted(package.glob("*.py")))
    ids = set(re.findall(r'id="django_cloudsync\.([EW]\d{3})"', source))
    documented = set(re.findall(r"`(?:django_cloudsync\.)?([EW]\d{3})`", (DOCS / "settings.md").read_text()))

    assert len(ids) >= 19
    assert ids <= documented, sorted(ids - documented)


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    links = re.findall(r"\]\((?!https?:|mailto:)([^)\s]+)\)", page.read_text())

    for link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_file(), f"{page.name}: {link}"
        if anchor:
            assert anchor in anchors(target), f"{page.name}: {link}"
