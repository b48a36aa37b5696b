"""The refresh race: 50 threads in each of 4 processes use one expired token at the same moment.

Each mode gets a fresh token pair from the fake, expired in the database, then four worker
processes (``benchmarks.refresh_worker``) load it on 50 threads each and, on one signal, call
``GET /v1/me``. The fake counts the token endpoint calls. It rotates refresh tokens and treats a
spent refresh token as theft (it revokes the grant), as RFC 9700 recommends, so a race that
refreshes twice does not only waste calls: it signs the user out of CloudSync.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.db import connections

from django_cloudsync.models import CloudSyncToken

from . import seed
from .context import Context
from .report import Row

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "usr_bench_refresh"
PROCESSES = 4
THREADS = 50
#: Bounds on waiting for the workers: to get ready (Django setup, loading), and to finish.
READY_TIMEOUT = 120.0
FINISH_TIMEOUT = 180.0


def run(context: Context) -> list[Row]:
    rows = []
    for label, alias, skip_reason in context.databases():
        figure = (
            f"token-endpoint calls, {THREADS} threads x {PROCESSES} processes on one expired token, {label}"
        )
        if alias is None:
            rows.append(Row(figure, "1", f"skipped: {skip_reason}", "skipped", met=None))
            continue
        app = race(context, alias, "app")
        handrolled = race(context, alias, "hand-rolled")
        everyone = PROCESSES * THREADS
        app_ok = app["outcomes"].get("ok", 0)
        rows.append(
            Row(
                figure=figure,
                target="1",
                app=str(app["token_requests"]),
                handrolled=str(handrolled["token_requests"]),
                met=app["token_requests"] == 1 and app_ok == everyone and app["invalid_grants"] == 0,
                notes=[f"{label}: " + _summary("app", app) + " " + _summary("hand-rolled", handrolled)],
            )
        )
    return rows


def _summary(label: str, result: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{count} {outcome}" for outcome, count in sorted(result["outcomes"].items()))
    text = (
        f"{label}: successful refreshes {result['refreshes']}, "
        f"invalid_grant answers {result['invalid_grants']}; "
        f"threads: {outcomes}"
    )
    if result.get("stored_version_moves") is not None:
        text += f"; the stored row's version moved by {result['stored_version_moves']}"
    if result["worker_failures"]:
        text += f"; worker failures: {'; '.join(result['worker_failures'])}"
    return text + "."


def race(context: Context, alias: str, mode: str) -> dict[str, Any]:
    """Seed a user with an expired token on ``alias``; run the workers in ``mode``; what happened."""
    fake = context.fake
    seed.wipe(alias)
    user = seed.connected_user(fake, ACCOUNT_ID, alias=alias)
    seed.expire_all(alias)
    version_before = CloudSyncToken.objects.using(alias).get(social_account__user=user).version
    config_path = context.workdir / f"refresh-{alias}-{mode}.json"
    database = {**connections[alias].settings_dict}
    database.pop("TEST", None)
    config_path.write_text(
        json.dumps({"database": database, "mode": mode, "user_pk": user.pk, "threads": THREADS}, default=str)
    )

    before = fake.counters
    outcomes, failures = _run_workers(config_path)
    after = fake.counters
    result: dict[str, Any] = {
        key: after[key] - before[key]
        for key in ("token_requests", "refreshes", "invalid_grants", "api_calls")
    }
    result["outcomes"] = outcomes
    result["worker_failures"] = failures
    if mode == "app":
        result["stored_version_moves"] = (
            CloudSyncToken.objects.using(alias).get(social_account__user=user).version - version_before
        )
    seed.wipe(alias)
    return result


def _run_workers(config_path: Path) -> tuple[Counter[str], list[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    workers = [
        subprocess.Popen(  # noqa: S603 (this interpreter, our own module, a path we wrote)
            [sys.executable, "-m", "benchmarks.refresh_worker", str(config_path)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    failures: list[str] = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        for worker in workers:
            assert worker.stdout is not None
            remaining = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([worker.stdout], [], [], remaining)
            line = worker.stdout.readline().strip() if readable else ""
            if line != "ready":
                failures.append(f"a worker was not ready ({line or 'timed out'})")
        for worker in workers:  # all at once, so the processes race each other too
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outcomes: Counter[str] = Counter()
        for worker in workers:
            out, err = worker.communicate(timeout=FINISH_TIMEOUT)
            lines = out.strip().splitlines()
            if worker.returncode != 0 or not lines:
                last = err.strip().splitlines()[-1] if err.strip() else f"exit status {worker.returncode}"
                failures.append(last[:200])
                continue
            outcomes.update(json.loads(lines[-1])["outcomes"])
        return outcomes, failures
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate(timeout=10)
