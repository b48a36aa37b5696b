"""Subprocesses for the tests that run a site or the fake CloudSync outside this test process
(tests/test_packaging.py, tests/test_newcomer.py): bounded in time, their logs in files."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

SUBPROCESS_TIMEOUT = 300


def run(
    command: list[str], *, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}", pytrace=False
        )
    return result


def clean_environment() -> dict[str, str]:
    """This process's environment without what would let the checkout or its venv leak in."""
    leaky = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE"}
    return {
        name: value
        for name, value in os.environ.items()
        if name not in leaky and not name.startswith(("PYTEST_", "CLOUDSYNC_"))
    }


def free_port() -> int:
    """A loopback port nobody listens on now (for a server that cannot pick its own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@contextmanager
def fake_cloudsync(command: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``command`` (``python -m django_cloudsync.testing --port 0 ...``) until the block ends;
    yield the URL it says it listens on."""
    # Its log goes to a file, so that a chatty server can never block on a full pipe.
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        first_line = process.stdout.readline() if ready else ""
        match = re.match(r"Fake CloudSync listening on (http://\S+)", first_line)
        if match is None:
            pytest.fail(f"The fake CloudSync did not start: {first_line!r}\n{log_path.read_text()}")
        yield match.group(1)
    finally:
        stop(process)


@contextmanager
def serving(
    command: list[str], *, cwd: Path, env: dict[str, str], log_path: Path, url: str, polls: int = 240
) -> Iterator[requests.Response | None]:
    """Run the server ``command`` until the block ends, its output in ``log_path``; yield its first
    answer to ``url``, polled every 0.25 s while it starts, or ``None`` if it exited first."""
    # Its log goes to a file, so that a chatty server can never block on a full pipe.
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        first: requests.Response | None = None
        for _poll in range(polls):
            if process.poll() is not None:
                break
            try:
                first = requests.get(url, timeout=30)
                break
            except requests.ConnectionError:
                time.sleep(0.25)
        else:
            pytest.fail(f"The server did not start\n{log_path.read_text()}")
        yield first
    finally:
        if process.poll() is None:
            stop(process)
