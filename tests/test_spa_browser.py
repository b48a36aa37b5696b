"""The example's single-page app (``/spa/``) in headless Chromium: it signs in through allauth
headless's provider redirect, lists the workspaces with ``fetch`` from the site's django-ninja
API, and, when the fake CloudSync kills the grant, reads the JSON answer, sends the user through
consent again and comes back to a working list.

The example site runs under ``runserver`` in a subprocess (``tests/browser_support.py``), with the
fake CloudSync it serves under ``/fake-cloudsync/``. ``CLOUDSYNC_UPDATE_SCREENSHOTS=1`` writes the
screenshots (``spa-*.png``) into ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.browser_support import ExampleServer, chromium_context, missing_browser_reason, screenshot_dir

if TYPE_CHECKING:
    from playwright.sync_api import Page

_missing = missing_browser_reason()
if _missing is not None and os.environ.get("CLOUDSYNC_REQUIRE_BROWSER") == "1":
    pytest.fail(f"browser tests are required (CLOUDSYNC_REQUIRE_BROWSER=1): {_missing}", pytrace=False)
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"browser tests: {_missing}")

SIZE = {"width": 960, "height": 600}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[ExampleServer]:
    with ExampleServer(tmp_path) as server:
        yield server


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium_context(width=SIZE["width"], height=SIZE["height"]) as context:
        tab = context.new_page()
        yield tab


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def allow_on_cloudsyncs_consent(page: Page, site: ExampleServer) -> None:
    expect()(page).to_have_url(re.compile(re.escape(site.url + "/fake-cloudsync/oauth/authorize?")))
    page.get_by_role("button", name="Allow").click()
    expect()(page).to_have_url(site.url + "/spa/")


def control_the_fake(site: ExampleServer, action: str) -> None:
    response = requests.post(f"{site.url}/fake-cloudsync/_fake/{action}", json={}, timeout=10)
    assert response.status_code == 200, response.text


def test_the_spa_signs_in_lists_loses_the_grant_and_reconnects(
    page: Page, site: ExampleServer, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    page.goto(site.url + "/spa/")
    expect()(page.get_by_role("status")).to_have_text("You are signed out.")
    page.screenshot(path=str(shots / "spa-signed-out.png"), animations="disabled", caret="hide")

    page.get_by_role("button", name="Sign in with CloudSync").click()
    allow_on_cloudsyncs_consent(page, site)

    expect()(page.get_by_role("status")).to_have_text(re.compile("^Signed in as "))
    workspaces = page.locator("#workspaces li")
    expect()(workspaces).to_have_text(["Personal", "Team"])
    page.screenshot(path=str(shots / "spa-workspaces.png"), animations="disabled", caret="hide")

    # CloudSync revokes the grant; the next call refreshes, and the refresh is refused.
    control_the_fake(site, "revoke")
    control_the_fake(site, "expire")
    page.reload()

    alert = page.get_by_role("alert")
    expect()(alert).to_have_text("Your CloudSync access has ended: connect CloudSync again.")
    expect()(alert).to_have_attribute("data-code", "cloudsync_reauthorization_required")
    expect()(workspaces).to_have_count(0)
    page.screenshot(path=str(shots / "spa-reconnect.png"), animations="disabled", caret="hide")

    page.get_by_role("button", name="Connect CloudSync again").click()
    allow_on_cloudsyncs_consent(page, site)

    expect()(workspaces).to_have_text(["Personal", "Team"])
    expect()(page.get_by_role("alert")).to_have_count(0)
    for name in ("spa-signed-out.png", "spa-workspaces.png", "spa-reconnect.png"):
        assert (shots / name).stat().st_size < 150_000


def test_the_spas_api_answers_json_to_a_signed_out_fetch(site: ExampleServer) -> None:
    response = requests.get(
        site.url + "/api/v2/workspaces",
        headers={"Accept": "application/json"},
        timeout=10,
        allow_redirects=False,
    )

    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/json")
