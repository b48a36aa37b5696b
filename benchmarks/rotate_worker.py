"""A worker process of the key rotation benchmark: ``manage.py cloudsync_rotate_keys``, timed.

``python -m benchmarks.rotate_worker <config.json>`` runs the command on the configured database
with the configured key ring (new key first) and prints one JSON line: the command's seconds,
Django's start-up excluded, and this process's peak resident set size.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time


def main(config_path: str) -> None:
    with open(config_path) as config_file:
        config = json.load(config_file)
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    from django.conf import settings

    settings.DATABASES = {"default": config["database"]}
    settings.CLOUDSYNC_ENCRYPTION_KEYS = config["keys"]

    import django

    django.setup()
    from django.core.management import call_command

    output = io.StringIO()
    started = time.perf_counter()
    call_command("cloudsync_rotate_keys", stdout=output, stderr=output)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}), flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS since it started this program, in MB.

    Linux's ``VmHWM`` belongs to the program that ``exec`` started; ``getrusage``'s
    ``ru_maxrss`` would also count the parent's memory that the child shared until ``exec``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


if __name__ == "__main__":
    main(sys.argv[1])
