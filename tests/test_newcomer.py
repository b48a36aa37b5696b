"""A newcomer follows the README's "Install it in your site" to the letter, on a new
``django-admin startproject mysite``, and signs a new user in through the pages.

The steps come from the README itself, so that the two cannot drift apart: each sample the test
applies carries an HTML comment on the line above its fence, ``<!-- newcomer: ACTION [PATH] -->``
(see ``tests/markdown_samples.py``):

- ``run``: the block's commands run in bash (``set -e``), the first in an empty directory, the
  next where the previous one ended (``cd mysite``);
- ``append PATH`` / ``write PATH``: the block is added to / becomes the file PATH, relative to the
  directory of ``manage.py``.

Where the test departs from the letter, and why:

- ``pip install`` lines are skipped: the package is already installed in this test run's virtualenv,
  whose ``python`` and ``django-admin`` come first on ``PATH`` (``tests/test_packaging.py``
  installs the wheel itself into a fresh one);
- the provider is pointed at the fake CloudSync the way ``docs/installation.md`` says ("Try it
  against the fake CloudSync"), that page's command starting the fake in its own process on a
  free port; ``YOUR_CLIENT_ID`` / ``YOUR_CLIENT_SECRET`` are the fake's;
- ``python manage.py runserver`` gets ``--noreload`` and a free loopback port, and runs until the
  test ends.

Then a ``requests.Session`` clicks through like a browser: the home page, the button's POST, the
fake's consent page (Allow), the callback, ``LOGIN_REDIRECT_URL``, the README's workspaces view.
``docs/testing.md``'s ``pytest.ini`` and test are then written into the site and run there.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import django
import pytest
import requests

from django_cloudsync.testing.flow import consent
from tests.markdown_samples import DOCS, README, Sample, sample, samples
from tests.processes import clean_environment, fake_cloudsync, free_port, run, serving

FAKE_CLIENT_ID = "fake-client-id"  # python -m django_cloudsync.testing's defaults
FAKE_CLIENT_SECRET = "fake-client-secret"
_TIMEOUT = 30
_STARTUP_POLLS = 240  # of 0.25 s: runserver on a busy 2-core machine


class _Page(HTMLParser):
    """The forms (action and hidden fields) and stylesheets of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.stylesheets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and values.get("type") == "hidden" and self.forms:
            self.forms[-1][1][values.get("name", "")] = values.get("value", "")
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(values.get("href", ""))


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def newcomer_environment() -> dict[str, str]:
    """A shell's environment whose ``python`` and ``django-admin`` are this test run's, with
    nothing of the checkout or of this test run (settings, CloudSync variables) leaking in."""
    env = clean_environment()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def newcomer_steps(page: Path) -> list[Sample]:
    return [each for each in samples(page) if each.marker is not None]


def shell(block: str, *, port: int) -> str:
    """A ``run`` block as the test runs it (see the module docstring)."""
    lines = [line for line in block.splitlines() if not re.match(r"\s*python -m pip install\b", line)]
    script = "\n".join(["set -e", *lines])
    script = script.replace("YOUR_CLIENT_ID", FAKE_CLIENT_ID).replace(
        "YOUR_CLIENT_SECRET", FAKE_CLIENT_SECRET
    )
    return re.sub(
        r"^python manage\.py runserver$",
        f"exec python manage.py runserver --noreload 127.0.0.1:{port}",
        script,
        flags=re.MULTILINE,
    )


@dataclass
class Site:
    directory: Path  # where manage.py is
    env: dict[str, str]
    url: str | None  # None: the README's commands stopped before the server answered
    output: Path  # the second run block's stdout and stderr, runserver's log among them

    def rows(self, table: str) -> int:
        # closing(): a connection's own `with` only commits, and an unclosed one warns on Python 3.13.
        with closing(sqlite3.connect(self.directory / "db.sqlite3")) as database:
            return int(database.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


@contextmanager
def follow_the_readme(
    workspace: Path, fake_url: str, *, settings_lines_left_out: str | None = None
) -> Iterator[Site]:
    env = newcomer_environment()
    first_run, *edits, last_run = newcomer_steps(README)
    assert (first_run.action, last_run.action) == ("run", "run")
    assert all(step.action in {"append", "write"} for step in edits)

    ended = run(["bash", "-c", shell(first_run.body, port=0) + "\npwd"], cwd=workspace, env=env)
    directory = Path(ended.stdout.splitlines()[-1])
    (pointing_at_the_fake,) = newcomer_steps(DOCS / "installation.md")
    fake_port = fake_url.rsplit(":", 1)[1].rstrip("/")
    for step in [*edits, pointing_at_the_fake]:
        body = step.body.replace("8765", fake_port) if step is pointing_at_the_fake else step.body
        if settings_lines_left_out and step.target == "mysite/settings.py":
            body = "\n".join(
                line for line in body.splitlines() if not re.search(settings_lines_left_out, line)
            )
        path = directory / step.target
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if step.action == "append" else "w") as file:
            file.write(("\n" if step.action == "append" else "") + body)

    port = free_port()
    output = directory / "commands.log"
    url = f"http://127.0.0.1:{port}/"
    command = ["bash", "-c", shell(last_run.body, port=port)]
    with serving(command, cwd=directory, env=env, log_path=output, url=url, polls=_STARTUP_POLLS) as first:
        yield Site(directory=directory, env=env, url=url if first is not None else None, output=output)


@pytest.fixture
def fake_url(tmp_path: Path) -> Iterator[str]:
    """The fake CloudSync, started with docs/installation.md's command (on a free port)."""
    command = sample(DOCS / "installation.md", "console", "django_cloudsync.testing").body.strip()
    env = newcomer_environment()
    with fake_cloudsync(
        ["bash", "-c", "exec " + command.replace("--port 8765", "--port 0")],
        cwd=tmp_path,
        env=env,
        log_path=tmp_path / "fake-cloudsync.log",
    ) as url:
        yield url


def sign_in_through_the_pages(site_url: str) -> tuple[list[requests.Response], requests.Session]:
    """Home page, the button, the fake's consent (Allow), the callback and where it leads."""
    browser = requests.Session()
    home = browser.get(site_url, timeout=_TIMEOUT)
    page = parse(home.text)
    stylesheet = browser.get(urljoin(site_url, page.stylesheets[0]), timeout=_TIMEOUT)
    ((action, fields),) = page.forms
    button = browser.post(urljoin(site_url, action), data=fields, allow_redirects=False, timeout=_TIMEOUT)
    callback = consent(button.headers["Location"], decision="allow")
    landed = browser.get(callback, timeout=_TIMEOUT)
    return [home, stylesheet, button, *landed.history, landed], browser


def test_a_new_user_signs_in_on_a_new_project_set_up_as_the_readme_says(
    tmp_path: Path, fake_url: str
) -> None:
    with follow_the_readme(tmp_path, fake_url) as site:
        assert site.url is not None, site.output.read_text()
        answers, browser = sign_in_through_the_pages(site.url)
        workspaces = browser.get(urljoin(site.url, "workspaces/"), timeout=_TIMEOUT)
        log = site.output.read_text()

    home, stylesheet, button, callback, *_, landed = answers
    assert [answer.status_code for answer in [home, stylesheet, button, callback]] == [200, 200, 302, 302]
    assert stylesheet.headers["Content-Type"].startswith("text/css")
    assert "/oauth/authorize?" in button.headers["Location"]
    assert landed.url == site.url  # LOGIN_REDIRECT_URL = "/"
    assert landed.status_code == 200
    assert "Signed in as " in landed.text
    assert workspaces.status_code == 200
    assert "<li>Personal</li><li>Team</li>" in workspaces.text
    assert '" 500 ' not in log
    assert site.rows("auth_user") == 1
    assert site.rows("socialaccount_socialaccount") == 1
    assert site.rows("django_cloudsync_cloudsynctoken") == 1
    assert site.rows("socialaccount_socialtoken") == 0


def test_the_testing_pages_sample_passes_in_the_new_project(tmp_path: Path, fake_url: str) -> None:
    with follow_the_readme(tmp_path, fake_url) as site:
        for step in newcomer_steps(DOCS / "testing.md"):
            (site.directory / step.target).write_text(step.body)
        exports = [
            line for line in newcomer_steps(README)[-1].body.splitlines() if line.startswith("export ")
        ]
        script = shell(
            "\n".join([*exports, "python -m pytest -p no:cacheprovider -q test_workspaces.py"]), port=0
        )
        result = run(["bash", "-c", script], cwd=site.directory, env=site.env, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_with_allauths_email_defaults_start_up_stops_at_e011_naming_what_to_set(
    tmp_path: Path, fake_url: str
) -> None:
    # Without the README's EMAIL_BACKEND, allauth would mail every new user's verification link
    # through SMTP on localhost:25: E011 stops `migrate` before anyone can try to sign in.
    if django.VERSION >= (6, 1):
        pytest.skip("Django 6.1's startproject configures mail (MAILERS, the console): nothing to stop")
    with follow_the_readme(
        tmp_path, fake_url, settings_lines_left_out=r"EMAIL_BACKEND|allauth mails|MAILERS"
    ) as site:
        assert "EMAIL_BACKEND" not in (site.directory / "mysite" / "settings.py").read_text()
        log = site.output.read_text()

    assert site.url is None, log
    assert "django_cloudsync.E011" in log
    assert 'ACCOUNT_EMAIL_VERIFICATION = "none"' in log
    assert "django.core.mail.backends.console.EmailBackend" in log
    assert "Traceback" not in log
