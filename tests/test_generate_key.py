"""``cloudsync_generate_key`` runs where a new site starts: before any key is set (check E001)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import ManagementUtility

from django_cloudsync.crypto import parse_key
from tests.test_checks import ids

ROOT = Path(__file__).resolve().parent.parent


def cloudsync_check_ids() -> list[str]:
    return ids(run_checks())


@pytest.mark.parametrize("keys", [None, [], ["not a key"]])
def test_the_command_runs_its_system_checks_and_still_prints_a_key_while_no_usable_key_is_set(
    settings: Any, keys: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.CLOUDSYNC_ENCRYPTION_KEYS = keys
    assert set(cloudsync_check_ids()) & {"django_cloudsync.E001", "django_cloudsync.E002"}

    # manage.py's own path (run_from_argv), which runs the command's system checks unless it
    # declares none; call_command would skip them.
    ManagementUtility(["manage.py", "cloudsync_generate_key"]).execute()

    assert len(parse_key(capsys.readouterr().out.strip())) == 32


def test_manage_py_cloudsync_generate_key_works_on_a_site_with_no_key(tmp_path: Path) -> None:
    # A site as `startproject` leaves it plus our app: no CLOUDSYNC_ENCRYPTION_KEYS at all.
    (tmp_path / "keyless_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\ndel CLOUDSYNC_ENCRYPTION_KEYS\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "keyless_settings",
    }
    check = subprocess.run(
        [sys.executable, "-m", "django", "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode != 0
    assert "django_cloudsync.E001" in check.stderr

    result = subprocess.run(
        [sys.executable, "-m", "django", "cloudsync_generate_key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert len(parse_key(result.stdout.strip())) == 32


@pytest.mark.django_db
def test_e003s_hint_rotation_command_runs_while_the_old_key_is_still_second(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # E003's hint: a key of its own first, the SECRET_KEY-equal one second, then rotate.
    old_key = "g7f3n6m0z8dzuXg3DnDnS2R6c5z1C3o6r2D8o0w1F2E="
    settings.SECRET_KEY = old_key
    settings.CLOUDSYNC_ENCRYPTION_KEYS = ["xCHPAMGPkhXrXVp3vGuk4K6Fm-3vQIz6qKdk1Ej2bL0=", old_key]
    assert "django_cloudsync.E003" in cloudsync_check_ids()

    ManagementUtility(["manage.py", "cloudsync_rotate_keys", "--skip-checks", "--check"]).execute()

    assert "0 rows" in capsys.readouterr().out
