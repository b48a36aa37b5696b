"""Sign in with CloudSync in a real browser: headless Chromium, the example site under
``runserver`` in a subprocess, and the fake CloudSync it serves under ``/fake-cloudsync/``.

Each test gets a fresh server process and database (copied from one migrated at the start), so
the tests do not depend on each other's users. Skips when Playwright or Chromium is missing
(see ``tests/browser_support.py``). ``CLOUDSYNC_UPDATE_SCREENSHOTS=1`` writes the screenshots
into ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser_support import (
    ExampleServer,
    chromium_context,
    contrast_ratio,
    missing_browser_reason,
    screenshot_dir,
)

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

_missing = missing_browser_reason()
if _missing is not None and os.environ.get("CLOUDSYNC_REQUIRE_BROWSER") == "1":
    # CI sets this: there a missing browser is a broken setup, not a reason to skip.
    pytest.fail(f"browser tests are required (CLOUDSYNC_REQUIRE_BROWSER=1): {_missing}", pytrace=False)
pytestmark = pytest.mark.skipif(_missing is not None, reason=f"browser tests: {_missing}")

SIGN_IN = "Sign in with CloudSync"
PHONE = (390, 844)
DESKTOP = (1280, 800)


# Fixtures.


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's database, migrated once for the module; each server starts from a copy."""
    workdir = tmp_path_factory.mktemp("example-template")
    server = ExampleServer(workdir)
    server.run("migrate", "--noinput")
    return server.database


@pytest.fixture
def site(tmp_path: Path, migrated_database: Path) -> Iterator[ExampleServer]:
    with ExampleServer(tmp_path, database_template=migrated_database) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    with chromium_context(width=DESKTOP[0], height=DESKTOP[1]) as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A new tab with no cookies (signed out everywhere), at desktop width."""
    browser.clear_cookies()
    tab = browser.new_page()
    tab.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
    try:
        yield tab
    finally:
        tab.close()


# Steps.


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def open_consent(page: Page, site: ExampleServer) -> None:
    """From the signed-out home page to CloudSync's consent page."""
    page.goto(site.url + "/")
    page.get_by_role("button", name=SIGN_IN).click()
    expect()(page).to_have_url(re.compile(re.escape(site.url + "/fake-cloudsync/oauth/authorize?")))
    expect()(page.get_by_role("heading", level=1)).to_contain_text("Authorize")


def sign_in(page: Page, site: ExampleServer) -> None:
    open_consent(page, site)
    page.get_by_role("button", name="Allow").click()
    expect()(page).to_have_url(site.url + "/")
    expect()(page.get_by_role("heading", name="Your workspaces")).to_be_visible()


def assert_in_the_example_layout(page: Page) -> None:
    """One of allauth's pages, in the example's layout, offering nothing this site does not have."""
    expect()(page.get_by_role("link", name="CloudSync example")).to_be_visible()
    expect()(page.locator("footer")).to_contain_text("Times are shown in UTC.")
    for missing in ("Sign Up", "Sign In", "Change Password", "Change Email", "Forgot your password?"):
        expect()(page.get_by_role("link", name=missing, exact=True)).to_have_count(0)
    expect()(page.get_by_text("Menu:")).to_have_count(0)
    expect()(page.locator("input[type=password]")).to_have_count(0)
    assert page.locator("link[rel=icon]").get_attribute("href") == "/static/example/favicon.svg"


def account_id(page: Page) -> str:
    return page.locator("dt:has-text('CloudSync account') + dd code").inner_text()


def workspace_names(page: Page) -> list[str]:
    return [item.split(" ")[0] for item in page.locator("#workspaces li").all_inner_texts()]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and proof that it is a PNG)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


# Signing in and out.


def test_sign_in_with_allow_lands_on_the_page_listing_workspaces(page: Page, site: ExampleServer) -> None:
    sign_in(page, site)

    assert account_id(page) == "usr_ada"
    assert workspace_names(page) == ["Personal", "Team"]
    expect()(page.get_by_role("heading", name="Hello, Ada")).to_be_visible()
    expect()(page.get_by_role("button", name=SIGN_IN)).to_have_count(0)


def test_deny_shows_a_friendly_cancelled_message(page: Page, site: ExampleServer) -> None:
    open_consent(page, site)

    page.get_by_role("button", name="Deny").click()

    expect()(page).to_have_url(site.url + "/accounts/3rdparty/login/cancelled/")
    expect()(page.locator("body")).to_contain_text(re.compile("cancel", re.IGNORECASE))
    assert_in_the_example_layout(page)
    page.goto(site.url + "/")
    expect()(page.get_by_role("button", name=SIGN_IN)).to_be_visible()  # still signed out


def test_sign_out_then_in_again_is_the_same_account(page: Page, site: ExampleServer) -> None:
    sign_in(page, site)
    first = account_id(page)

    page.get_by_role("button", name="Sign out").click()
    expect()(page.get_by_role("button", name=SIGN_IN)).to_be_visible()
    sign_in(page, site)

    assert account_id(page) == first == "usr_ada"
    expect()(page.get_by_role("heading", name="Hello, Ada")).to_be_visible()


def test_creating_a_workspace_asks_for_the_write_scope_first_in_plain_words(
    page: Page, site: ExampleServer
) -> None:
    sign_in(page, site)
    assert "workspaces:write" not in page.locator("dt:has-text('Granted scopes') + dd").inner_text()

    page.get_by_role("link", name="Create a workspace").click()
    # The site's own page says what is added, then CloudSync asks.
    expect()(page.get_by_role("heading", name="Allow more CloudSync access")).to_be_visible()
    expect()(page.locator(".cloudsync-consent__scopes")).to_have_text(
        re.compile(r"Create and manage workspaces\s+workspaces:write")
    )
    page.get_by_role("button", name="Continue to CloudSync").click()
    expect()(page.get_by_role("heading", level=1)).to_contain_text("Authorize")
    expect()(page.locator("main")).to_contain_text("workspaces:write")
    page.get_by_role("button", name="Allow").click()
    expect()(page).to_have_url(site.url + "/workspaces/new/")
    expect()(page.locator(".messages")).to_have_text("CloudSync access was updated.")
    page.get_by_label("Name").fill("Browser-made")
    page.get_by_role("button", name="Create").click()

    expect()(page).to_have_url(site.url + "/")
    expect()(page.locator(".messages")).to_contain_text("Created the workspace “Browser-made”.")
    assert workspace_names(page) == ["Personal", "Team", "Browser-made"]
    assert "workspaces:write" in page.locator("dt:has-text('Granted scopes') + dd").inner_text()


def test_cancel_on_the_consent_page_goes_back_and_asks_cloudsync_nothing(
    page: Page, site: ExampleServer
) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="Create a workspace").click()

    page.get_by_role("link", name="Cancel").click()

    expect()(page).to_have_url(site.url + "/")
    expect()(page.get_by_role("heading", name="Your workspaces")).to_be_visible()


def test_refusing_more_scopes_says_the_permission_was_not_granted(page: Page, site: ExampleServer) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="Create a workspace").click()
    page.get_by_role("button", name="Continue to CloudSync").click()

    page.get_by_role("button", name="Deny").click()

    expect()(page).to_have_url(site.url + "/")
    expect()(page.locator(".messages")).to_have_text(
        "The permission was not granted: your CloudSync access is unchanged."
    )
    expect()(page.locator("body")).not_to_contain_text("cancel logging in")
    assert "workspaces:write" not in page.locator("dt:has-text('Granted scopes') + dd").inner_text()


def test_manage_connected_accounts_is_in_the_example_layout(page: Page, site: ExampleServer) -> None:
    sign_in(page, site)
    expect()(page.locator("dt:has-text('Access token expires') + dd")).to_contain_text("UTC")

    page.get_by_role("link", name="Manage connected accounts").click()

    expect()(page).to_have_url(site.url + "/accounts/3rdparty/")
    expect()(page.locator("main")).to_contain_text("Ada Lovelace")
    assert_in_the_example_layout(page)


def test_the_sign_in_page_offers_cloudsync_only(page: Page, site: ExampleServer) -> None:
    page.goto(site.url + "/accounts/login/")

    expect()(page.get_by_role("link", name="CloudSync", exact=True)).to_be_visible()
    assert_in_the_example_layout(page)


# The button: keyboard, accessible name, layout, brand.


def test_the_button_is_reachable_with_tab_and_pressing_enter_signs_in(
    page: Page, site: ExampleServer
) -> None:
    page.goto(site.url + "/")
    button = page.get_by_role("button", name=SIGN_IN)

    for _ in range(10):
        page.keyboard.press("Tab")
        if button.evaluate("element => element === document.activeElement"):
            break
    expect()(button).to_be_focused()
    outline = button.evaluate(
        "element => [getComputedStyle(element).outlineStyle, getComputedStyle(element).outlineWidth]"
    )
    assert outline == ["solid", "3px"]  # a visible focus ring

    page.keyboard.press("Enter")

    expect()(page).to_have_url(re.compile(re.escape(site.url + "/fake-cloudsync/oauth/authorize?")))


@pytest.mark.parametrize(("width", "height"), [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_button_fits_phone_and_desktop_widths(
    page: Page, site: ExampleServer, width: int, height: int
) -> None:
    page.set_viewport_size({"width": width, "height": height})
    page.goto(site.url + "/")
    button = page.get_by_role("button", name=SIGN_IN)

    expect()(button).to_be_visible()
    box = button.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width
    assert box["height"] >= 44  # touch target
    assert button.evaluate("element => element.scrollWidth <= element.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling


def test_the_brand_colour_is_a_custom_property_a_site_can_override(page: Page, site: ExampleServer) -> None:
    page.goto(site.url + "/")
    button = page.get_by_role("button", name=SIGN_IN)
    colours = "element => [getComputedStyle(element).color, getComputedStyle(element).backgroundColor]"
    text, default = button.evaluate(colours)
    assert default == "rgb(26, 86, 219)"
    assert contrast_ratio(text, default) >= 4.5  # WCAG AA for the label

    page.add_style_tag(content=":root { --cloudsync-brand: rgb(15, 118, 110); }")

    assert button.evaluate(colours) == [text, "rgb(15, 118, 110)"]


# Screenshots for the README.


def test_screenshots_of_the_sign_in_pages(page: Page, site: ExampleServer, tmp_path: Path) -> None:
    target = screenshot_dir(tmp_path)
    page.set_viewport_size({"width": 960, "height": 600})

    # The steps to each page, in order: each starts where the one before left the browser.
    def signed_in() -> None:
        page.get_by_role("button", name="Allow").click()
        expect()(page.get_by_role("heading", name="Your workspaces")).to_be_visible()

    def consent_page() -> None:
        page.get_by_role("link", name="Create a workspace").click()
        expect()(page.get_by_role("button", name="Continue to CloudSync")).to_be_visible()

    def connections() -> None:
        page.goto(site.url + "/accounts/3rdparty/")
        expect()(page.locator("main")).to_contain_text("Ada Lovelace")

    shots: dict[str, Callable[[], object]] = {
        "login-button.png": lambda: page.goto(site.url + "/"),
        "consent.png": lambda: open_consent(page, site),
        "signed-in.png": signed_in,
        "consent-page.png": consent_page,
        "connections.png": connections,
    }

    for name, reach in shots.items():
        reach()
        page.screenshot(path=str(target / name), animations="disabled", caret="hide")

    for name in shots:
        path = target / name
        assert png_size(path) == (960, 600)
        assert path.stat().st_size < 150_000, f"{name} is {path.stat().st_size} bytes"
