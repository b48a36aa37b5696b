"""What the browser tests need: a headless Chromium driven by Playwright, and the example site
running as a real server in a subprocess, on the built-in fake CloudSync.

Nothing here downloads a browser. Chromium comes from the system (Debian: ``apt-get install
chromium``; elsewhere point ``CLOUDSYNC_CHROMIUM`` at a Chromium or Chrome binary), Playwright from
PyPI (``pip install playwright``, or the package's ``browser`` extra); without either, the browser
tests skip and say which is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import requests

from tests.processes import free_port

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
EXAMPLE_DIR: Final = REPO_ROOT / "example_project"
SCREENSHOT_DIR: Final = REPO_ROOT / "docs" / "screenshots"
#: Set to 1 to write the screenshots into docs/screenshots/ (the README embeds them).
UPDATE_SCREENSHOTS_ENV: Final = "CLOUDSYNC_UPDATE_SCREENSHOTS"

# Chromium must not reach out anywhere: no component updates, no sync, no QUIC probes, no first-run
# tasks. It is sandboxed by the test machine, not by itself (the suite may run as root).
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_CHROMIUM_CANDIDATES: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: How long the example server may take to migrate, to start answering, and to stop.
MIGRATE_TIMEOUT: Final = 120.0
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
#: How long a page may take to do anything (Playwright's default for actions and navigations).
PAGE_TIMEOUT_MS: Final = 15_000


def chromium_path() -> str | None:
    """The Chromium to drive: ``CLOUDSYNC_CHROMIUM``, else the first one on ``PATH``."""
    configured = os.environ.get("CLOUDSYNC_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in _CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_browser_reason() -> str | None:
    """Why the browser tests cannot run here, or ``None`` if they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright, or the 'browser' extra)"
    if chromium_path() is None:
        return "no Chromium found (apt-get install chromium, or set CLOUDSYNC_CHROMIUM)"
    return None


@contextmanager
def chromium_context(*, width: int = 1280, height: int = 800) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile in a temporary directory, closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no Chromium found")
    with (
        tempfile.TemporaryDirectory(prefix="cloudsync-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": width, "height": height},
            device_scale_factor=1,
            locale="en-US",
            timezone_id="UTC",
            color_scheme="light",
            reduced_motion="reduce",
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


class ExampleServer:
    """``example_project`` under ``manage.py runserver`` on a free loopback port, with its own database.

    The fake CloudSync is served by the same process under ``/fake-cloudsync/``. ``run(...)``
    executes ``manage.py`` commands against the same database (to inspect or prepare it).
    """

    def __init__(
        self, workdir: Path, *, database_template: Path | None = None, token_lifetime: int = 3600
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = workdir / "example.sqlite3"
        #: A migrated database to start from (copied), instead of migrating a new one.
        self.database_template = database_template
        self.log_path = workdir / "runserver.log"
        self.token_lifetime = token_lifetime
        self._process: subprocess.Popen[bytes] | None = None
        self._log: object | None = None

    @property
    def env(self) -> dict[str, str]:
        # Nothing of the caller's configuration leaks in: the example picks the fake CloudSync by
        # the absence of CLOUDSYNC_AUTH_URL, and reads its database and base URL from EXAMPLE_*.
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("CLOUDSYNC_", "EXAMPLE_", "DJANGO_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="example.settings",
            EXAMPLE_BASE_URL=self.url,
            EXAMPLE_DATABASE=str(self.database),
            CLOUDSYNC_FAKE_TOKEN_LIFETIME=str(self.token_lifetime),
            PYTHONUNBUFFERED="1",
        )
        return env

    def run(self, *args: str, timeout: float = MIGRATE_TIMEOUT) -> str:
        """Run ``manage.py ARGS`` against the server's database; its stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=EXAMPLE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result.stdout

    def start(self) -> ExampleServer:
        if self.database_template is not None:
            shutil.copyfile(self.database_template, self.database)
        else:
            self.run("migrate", "--noinput")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=EXAMPLE_DIR,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                if requests.get(self.url + "/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        log = self.log_tail()
        self.stop()
        raise RuntimeError(f"the example server did not start on {self.url}:\n{log}")

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``STOP_TIMEOUT`` seconds. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        log, self._log = self._log, None
        if log is not None:
            log.close()  # type: ignore[attr-defined]

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self) -> ExampleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def screenshot_dir(tmp_dir: Path) -> Path:
    """docs/screenshots/ when ``CLOUDSYNC_UPDATE_SCREENSHOTS=1``, else ``tmp_dir``."""
    if os.environ.get(UPDATE_SCREENSHOTS_ENV) == "1":
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        return SCREENSHOT_DIR
    return tmp_dir


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two computed CSS colours (``rgb(r, g, b)`` or ``rgba(...)``)."""

    def luminance(color: str) -> float:
        channels = [float(part) for part in color[color.index("(") + 1 : color.index(")")].split(",")[:3]]
        linear = [
            c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in channels
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
