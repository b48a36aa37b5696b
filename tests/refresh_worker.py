"""A worker process for the concurrency tests: many threads use one expired token at once.

Run by ``run_workers`` in tests/test_refresh.py (the many-processes tests) as
``python -m tests.refresh_worker <config.json>``; prints one JSON line: the access token
each thread ended up with, and the errors seen.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback


def main(config_path: str) -> None:
    with open(config_path) as config_file:
        config = json.load(config_file)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    from django.conf import settings

    settings.DATABASES = {"default": config["database"]}
    settings.DATABASE_ROUTERS = []
    settings.SOCIALACCOUNT_PROVIDERS = config["providers"]

    import django

    django.setup()
    from django.db import connections

    from django_cloudsync.models import CloudSyncToken
    from django_cloudsync.tokens import refresh_if_expired

    results: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def use_token() -> None:
        try:
            token = CloudSyncToken.objects.get(pk=config["token_id"])
            # Start together, so the threads of every process race for the refresh.
            time.sleep(max(0.0, config["start_at"] - time.time()))
            access = refresh_if_expired(token).access_token()
            with lock:
                results.append(access)
        except Exception:
            with lock:
                errors.append(traceback.format_exc())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=use_token) for _ in range(config["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    print(json.dumps({"tokens": results, "errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1])
