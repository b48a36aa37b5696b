"""Soak test: the example site under real traffic, with faults, against the fake CloudSync.

The example project runs under gunicorn with several worker processes and threads, on
PostgreSQL (SQLite if no server answers), against the fake CloudSync in its own process, issuing
access tokens that live a couple of seconds. Many users, each with a browser session of their
own, call a page that uses ``request.user.cloudsync`` over and over while faults are switched on
part of the time (token endpoint 5xx and timeouts, API 429 and 5xx). At the end it reports:

- requests served, and the answers by kind (friendly errors are expected while faults are on;
  a 500 never is);
- refreshes per account, and early refreshes (a refresh of a grant whose newest access token had
  not yet lived half its lifetime, i.e. a second refresh for one expiry): must be 0;
- ``invalid_grant`` answers seen by the fake (a spent refresh token presented again): must be 0;
- tokens lost: accounts without a decryptable, working token at the end: must be 0.

It exits non-zero if any "must" fails. Everything is on loopback, bounded in requests and time.

``--asgi`` is the same soak on the async path: the example's ``asgi.py`` under uvicorn with
several worker processes, the load on its ``async def`` page ``/workspaces/async/`` (``await
request.user.acloudsync()``, ``aworkspaces()``), whose friendly errors are a 200 page with an
alert; the same checks. ``make soak`` (and CI) runs both short forms::

    python -m benchmarks.soak --quick          # gunicorn, 1,000 requests (40 s at most)
    python -m benchmarks.soak --quick --asgi   # uvicorn, async views
    python -m benchmarks.soak --requests 50000 --max-seconds 900 --users 100 [--asgi]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from django_cloudsync.testing.flow import consent

# benchmarks/soak/__main__.py: the repository's root is three levels up.
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_project"
HTTP_TIMEOUT = 15
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"

# The fault phases cycled through during the load, one per `--fault-period` seconds: faults
# are on part of the time, and every kind the issue names comes up.
FAULT_PHASES: list[list[dict[str, Any]]] = [
    [],
    [{"endpoint": "token", "kind": "server_error", "times": 3}],
    [],
    [{"endpoint": "api", "kind": "rate_limited", "times": 6, "retry_after": 0}],
    [{"endpoint": "token", "kind": "timeout", "times": 1}],
    [],
    [{"endpoint": "api", "kind": "server_error", "times": 6}],
    [{"endpoint": "api", "kind": "bad_gateway", "times": 4}],
]


#: The page the load calls: the sync JSON view under gunicorn, the async page under uvicorn.
JSON_PAGE = "/api/workspaces/"
ASYNC_PAGE = "/workspaces/async/"
#: How the async page shows a friendly error (example/templates/example/async_workspaces.html).
ASYNC_PAGE_ALERT = 'class="error" role="alert"'


def main() -> int:
    args = parse_args()
    report: dict[str, Any] = {}
    with database(args) as (database_env, database_label), fake_cloudsync(args) as fake_url:
        env = {
            **os.environ,
            **database_env,
            "DJANGO_SETTINGS_MODULE": "example.settings",
            "DJANGO_DEBUG": "0",
            "CLOUDSYNC_AUTH_URL": fake_url,
            "CLOUDSYNC_API_URL": fake_url,
            "CLOUDSYNC_TIMEOUT": str(args.site_timeout),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLE)]),
        }
        run([sys.executable, str(EXAMPLE / "manage.py"), "migrate", "--noinput", "-v0"], env)
        with site(args, env) as site_url:
            control = FakeControl(fake_url)
            control.post("config", {"timeout_delay": args.site_timeout + 1.0})
            sessions = [sign_in(site_url, control, index) for index in range(args.users)]
            print(f"soak: {len(sessions)} users signed in", flush=True)
            before = control.get("counters")  # count the load phase only
            started = time.monotonic()
            outcomes = load(args, site_url, control, sessions)
            elapsed = time.monotonic() - started
            control.delete("faults")
            counters = counters_since(before, control.get("counters"))
            final = [final_check(site_url, session, args.page) for session in sessions]
        stored = stored_tokens(env)
    report = summarize(args, database_label, outcomes, elapsed, counters, final, stored)
    print_report(report)
    return 0 if report["ok"] else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short run of CI: 12 users, 1,000 requests")
    parser.add_argument(
        "--asgi", action="store_true", help="uvicorn and the example's async page instead of gunicorn"
    )
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--requests", type=int, default=10_000, help="stop after this many requests")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop after this long in any case")
    parser.add_argument("--clients", type=int, default=12, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn (or uvicorn) worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--token-lifetime", type=int, default=2, help="the fake's access token lifetime (s)")
    parser.add_argument("--site-timeout", type=float, default=1.5, help="the site's CLOUDSYNC_TIMEOUT (s)")
    parser.add_argument("--fault-period", type=float, default=1.5, help="seconds per fault phase")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CLOUDSYNC_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even if PostgreSQL answers")
    args = parser.parse_args()
    if args.quick:
        args.users, args.requests, args.max_seconds = 12, 1_000, 40
    args.page = ASYNC_PAGE if args.asgi else JSON_PAGE
    return args


# Processes.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, env=env, check=True, timeout=300, cwd=ROOT)


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def fake_cloudsync(args: argparse.Namespace) -> Iterator[str]:
    command = [sys.executable, "-m", "django_cloudsync.testing", "--port", "0"]
    command += ["--token-lifetime", str(args.token_lifetime)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "Fake CloudSync listening on http://127.0.0.1:NNNN ..."
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if found is None:
            raise RuntimeError(f"the fake CloudSync did not start: {line!r}")
        yield found.group(0)
    finally:
        stop(process)


@contextmanager
def site(args: argparse.Namespace, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if args.asgi:
        command = [sys.executable, "-m", "uvicorn", "example.asgi:application", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(args.workers), "--no-access-log"]
    else:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "example.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
        ]
        command += ["--workers", str(args.workers), "--threads", str(args.threads), "--timeout", "60"]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(command, cwd=EXAMPLE, env={**env, "EXAMPLE_BASE_URL": url})
    try:
        deadline = time.monotonic() + 60
        while True:
            with suppress(requests.RequestException):
                if requests.get(url + "/", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the example site did not start")
            time.sleep(0.2)
        yield url
    finally:
        stop(process)


@contextmanager
def database(args: argparse.Namespace) -> Iterator[tuple[dict[str, str], str]]:
    """A fresh database for the example: a PostgreSQL database of its own, or a SQLite file."""
    name = f"cloudsync_soak_{os.getpid()}"
    if not args.sqlite and create_postgres_database(args.postgres_url, name):
        try:
            url = urlsplit(args.postgres_url)._replace(path=f"/{name}").geturl()
            yield {"EXAMPLE_POSTGRES_URL": url}, f"PostgreSQL ({name})"
        finally:
            import psycopg

            with psycopg.connect(args.postgres_url, autocommit=True, connect_timeout=5) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    print("soak: using SQLite", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        yield {"EXAMPLE_DATABASE": str(Path(directory) / "soak.sqlite3")}, "SQLite"


def create_postgres_database(admin_url: str, name: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no driver, no server, no permission: fall back to SQLite
        print(f"soak: PostgreSQL unavailable ({type(exc).__name__})", flush=True)
        return False
    return True


# Talking to the fake and the site.


class FakeControl:
    """The fake CloudSync's ``/_fake/`` control endpoints."""

    def __init__(self, url: str) -> None:
        self.url = url + "/_fake/"
        self.http = requests.Session()

    def get(self, action: str) -> Any:
        response = self.http.get(self.url + action, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return response.json()

    def post(self, action: str, body: dict[str, Any]) -> Any:
        response = self.http.post(self.url + action, json=body, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return response.json()

    def delete(self, action: str) -> None:
        self.http.delete(self.url + action, timeout=HTTP_TIMEOUT).raise_for_status()


def sign_in(site_url: str, control: FakeControl, index: int) -> requests.Session:
    """Sign a new CloudSync user in through the site's pages, as a browser would."""
    user_id = f"usr_soak_{index}"
    control.post("users", {"id": user_id, "email": f"soak{index}@example.com", "name": f"Soak User {index}"})
    session = requests.Session()
    home = session.get(site_url + "/", timeout=HTTP_TIMEOUT)
    login = session.post(
        site_url + "/accounts/cloudsync/login/?process=login",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": home.url},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    callback = consent(login.headers["Location"], user_id=user_id)
    landing = session.get(callback, timeout=HTTP_TIMEOUT)
    if landing.status_code != 200 or "workspaces" not in landing.text:
        raise RuntimeError(f"user {index} could not sign in ({landing.status_code})")
    return session


def call(site_url: str, session: requests.Session, page: str) -> str:
    """One API-using request to ``page``; the kind of answer."""
    try:
        response = session.get(site_url + page, allow_redirects=False, timeout=HTTP_TIMEOUT)
    except requests.RequestException as exc:
        return f"client error: {type(exc).__name__}"
    if response.status_code == 200 and page == ASYNC_PAGE and ASYNC_PAGE_ALERT in response.text:
        return "friendly error: " + (alert_text(response.text) or "(no message)")
    if response.status_code == 200:
        return "ok"
    if response.status_code in (502, 503):
        return f"friendly error: {response.json().get('error')}"
    if response.status_code == 302:
        return "sent to re-authorize"
    return f"HTTP {response.status_code}"


def alert_text(page: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', page)
    return found.group(1).strip() if found else ""


def load(
    args: argparse.Namespace, site_url: str, control: FakeControl, sessions: list[requests.Session]
) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    done = threading.Event()
    deadline = time.monotonic() + args.max_seconds
    issued = 0

    def client(own: list[requests.Session]) -> None:
        nonlocal issued
        rng = random.Random(len(own))
        while not done.is_set() and time.monotonic() < deadline:
            with lock:
                if issued >= args.requests:
                    return
                issued += 1
            outcome = call(site_url, rng.choice(own), args.page)
            with lock:
                outcomes[outcome] += 1

    def faults() -> None:
        phase = 0
        while not done.wait(args.fault_period):
            control.delete("faults")
            for fault in FAULT_PHASES[phase % len(FAULT_PHASES)]:
                control.post("faults", fault)
            phase += 1

    clients = [
        threading.Thread(target=client, args=(sessions[index :: args.clients],))
        for index in range(min(args.clients, len(sessions)))
    ]
    switcher = threading.Thread(target=faults)
    for thread in [*clients, switcher]:
        thread.start()
    for thread in clients:
        thread.join(timeout=args.max_seconds + 60)
    done.set()
    switcher.join(timeout=30)
    return outcomes


def counters_since(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The fake's counters of what happened between two snapshots."""
    since: dict[str, Any] = {}
    for name, value in after.items():
        if isinstance(value, dict):
            since[name] = {key: count - before.get(name, {}).get(key, 0) for key, count in value.items()}
        else:
            since[name] = value - before.get(name, 0)
    return since


def final_check(site_url: str, session: requests.Session, page: str) -> bool:
    """Faults off: does the account still have a working token? (Retryable answers are retried.)"""
    for _ in range(5):
        outcome = call(site_url, session, page)
        if outcome == "ok":
            return True
        if not outcome.startswith("friendly error"):
            return False
        time.sleep(0.5)
    return False


def stored_tokens(env: dict[str, str]) -> dict[str, int]:
    """Rows in the site's table, and how many of them decrypt (read with the site's settings)."""
    script = (
        "import django, json; django.setup()\n"
        "from django_cloudsync.models import CloudSyncToken\n"
        "rows = list(CloudSyncToken.objects.all())\n"
        "ok = 0\n"
        "for row in rows:\n"
        "    try:\n"
        "        row.access_token(); row.refresh_token(); ok += 1\n"
        "    except Exception:\n"
        "        pass\n"
        "print(json.dumps({'rows': len(rows), 'decryptable': ok}))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=EXAMPLE,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    counts: dict[str, int] = json.loads(output.stdout.strip().splitlines()[-1])
    return counts


# The report.


def summarize(
    args: argparse.Namespace,
    database_label: str,
    outcomes: Counter[str],
    elapsed: float,
    counters: dict[str, Any],
    final: list[bool],
    stored: dict[str, int],
) -> dict[str, Any]:
    refreshes = [counters["refreshes_by_user"].get(f"usr_soak_{index}", 0) for index in range(args.users)]
    served = sum(outcomes.values())
    server_errors = sum(count for kind, count in outcomes.items() if kind.startswith("HTTP 5"))
    lost = args.users - sum(final) + (args.users - stored["decryptable"])
    checks = {
        "no 500s": server_errors == 0,
        "no early (double) refresh": counters["early_refreshes"] == 0,
        "no invalid_grant": counters["invalid_grants"] == 0,
        "no token lost": lost == 0,
        "no re-authorization": outcomes["sent to re-authorize"] == 0,
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "database": database_label,
        "site": f"uvicorn, {args.workers} processes, async page {args.page}"
        if args.asgi
        else f"gunicorn, {args.workers} processes x {args.threads} threads, {args.page}",
        "clients": args.clients,
        "users": args.users,
        "token_lifetime_s": args.token_lifetime,
        "seconds": round(elapsed, 1),
        "requests_served": served,
        "requests_per_second": round(served / elapsed, 1) if elapsed else 0.0,
        "outcomes": dict(outcomes.most_common()),
        "faults_injected": counters["faults_injected"],
        "refreshes": counters["refreshes"],
        "refreshes_per_account": {
            "min": min(refreshes),
            "median": statistics.median(refreshes),
            "max": max(refreshes),
        },
        "expiry_windows_per_account": round(elapsed / (args.token_lifetime / 2), 1),
        "early_refreshes": counters["early_refreshes"],
        "refresh_attempts": counters["refresh_attempts"],
        "invalid_grants": counters["invalid_grants"],
        "tokens_lost": lost,
        "stored_rows": stored["rows"],
    }


def print_report(report: dict[str, Any]) -> None:
    print("\nsoak report")
    for key, value in report.items():
        if key in ("checks", "outcomes", "refreshes_per_account"):
            continue
        print(f"  {key:28} {value}")
    print(
        "  refreshes per account        "
        + ", ".join(f"{k} {v}" for k, v in report["refreshes_per_account"].items())
    )
    print("  answers:")
    for kind, count in report["outcomes"].items():
        print(f"    {count:7d}  {kind}")
    print("  checks:")
    for name, passed in report["checks"].items():
        print(f"    {'PASS' if passed else 'FAIL'}  {name}")
    print(json.dumps(report))


if __name__ == "__main__":
    sys.exit(main())
