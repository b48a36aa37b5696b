"""A worker process of the refresh race: many threads use one expired token at once.

``python -m benchmarks.refresh_worker <config.json>``. Each thread loads the user's token the
way its mode does (``app``: ``client_for(user)``; ``hand-rolled``: the ``SocialToken`` row),
then all threads wait; the process prints ``ready``, and on a line from stdin every thread calls
``GET /v1/me`` at once. The last line printed is JSON: how many threads succeeded, and how the
others failed (error class and HTTP status only: never a message that could hold a token).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from typing import Any

#: Longest wait for any one step; every wait in this worker is bounded.
STEP_TIMEOUT = 60.0
#: Threads of one process that may hold a database connection at once while loading and saving:
#: PostgreSQL's max_connections (100 by default) is shared with whatever else runs on the server.
DATABASE_SLOTS = 8


def main(config_path: str) -> None:
    with open(config_path) as config_file:
        config = json.load(config_file)
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    from django.conf import settings

    settings.DATABASES = {"default": config["database"]}

    import django

    django.setup()
    from allauth.socialaccount.models import SocialToken
    from django.contrib.auth import get_user_model
    from django.db import connections

    from benchmarks import handrolled
    from django_cloudsync.sources import client_for
    from testsupport.baseline import PROVIDER_ID as BASELINE_PROVIDER_ID

    mode: str = config["mode"]
    user_pk: int = config["user_pk"]
    slots = threading.BoundedSemaphore(DATABASE_SLOTS)
    loaded = threading.Semaphore(0)
    go = threading.Event()
    outcomes: Counter[str] = Counter()
    outcomes_lock = threading.Lock()

    def record(outcome: str) -> None:
        with outcomes_lock:
            outcomes[outcome] += 1

    def save_with_a_slot(token: SocialToken) -> None:
        with slots:
            try:
                token.save()
            finally:
                connections.close_all()

    def race() -> None:
        client: Any = None
        token: SocialToken | None = None
        try:
            with slots:
                try:
                    if mode == "app":
                        client = client_for(get_user_model().objects.get(pk=user_pk))
                    else:
                        token = SocialToken.objects.get(
                            account__user_id=user_pk, account__provider=BASELINE_PROVIDER_ID
                        )
                finally:
                    connections.close_all()  # like a request that loaded it earlier
        except Exception as exc:
            record(f"load failed: {describe(exc)}")
            return
        finally:
            loaded.release()
        if not go.wait(timeout=STEP_TIMEOUT):
            record("never started")
            return
        try:
            if mode == "app":
                client.me()
            elif token is None:
                raise RuntimeError("no token row was loaded")
            else:
                handrolled.call_me(token, save=save_with_a_slot)
            record("ok")
        except Exception as exc:
            record(describe(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race, name=f"race-{index}") for index in range(config["threads"])]
    for thread in threads:
        thread.start()
    for _ in threads:
        if not loaded.acquire(timeout=STEP_TIMEOUT):
            break
    print("ready", flush=True)
    sys.stdin.readline()  # the parent's "go" (or EOF if it died: then go anyway, and end)
    go.set()
    for thread in threads:
        thread.join(timeout=STEP_TIMEOUT)
    print(json.dumps({"outcomes": dict(outcomes)}), flush=True)


def describe(exc: Exception) -> str:
    """The error's class, and its HTTP status or database message: never a token."""
    status = getattr(exc, "status", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if status:
        return f"{type(exc).__name__} (HTTP {status})"
    from django.db import DatabaseError

    if isinstance(exc, DatabaseError):
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    return type(exc).__name__


if __name__ == "__main__":
    main(sys.argv[1])
