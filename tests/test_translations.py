"""The package's catalogs: every user-facing string translated, compiled, and used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

import django_cloudsync

PACKAGE = Path(django_cloudsync.__file__).resolve().parent
LANGUAGES = ("de", "fr", "es", "pt_BR", "ja")
#: The fake CloudSync's pages speak for CloudSync, not for the site: they are not translated.
NOT_TRANSLATED = "testing/*"


def catalog(root: Path, language: str) -> Path:
    return root / "locale" / language / "LC_MESSAGES" / "django.po"


def gettext_tool(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def remade_catalogs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``makemessages`` run on a copy of the package, merging into a copy of its catalogs."""
    copy = tmp_path_factory.mktemp("catalogs") / "django_cloudsync"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "makemessages",
            *(f"--locale={language}" for language in LANGUAGES),
            f"--ignore={NOT_TRANSLATED}",
        ],
        cwd=copy,
        # As a maintainer runs it in the package directory: no site, no settings.
        env={name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        check=True,
        timeout=120,
    )
    return copy


@pytest.mark.parametrize("language", LANGUAGES)
def test_makemessages_finds_nothing_untranslated_or_fuzzy(remade_catalogs: Path, language: str) -> None:
    po = catalog(remade_catalogs, language)
    entries = gettext_tool("msgattrib", "--no-obsolete", str(po)).count("\nmsgid ")

    assert entries >= 40  # the button, the consent page, its messages, the admin's labels
    assert gettext_tool("msgattrib", "--untranslated", "--no-obsolete", str(po)) == ""
    assert gettext_tool("msgattrib", "--only-fuzzy", "--no-obsolete", str(po)) == ""


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_shipped_mo_is_compiled_from_the_shipped_po(tmp_path: Path, language: str) -> None:
    compiled = tmp_path / "django.mo"
    gettext_tool("msgfmt", "--check", "-o", str(compiled), str(catalog(PACKAGE, language)))

    assert compiled.read_bytes() == catalog(PACKAGE, language).with_suffix(".mo").read_bytes()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "label"),
    [
        ("de", "Mit CloudSync anmelden"),
        ("fr", "Se connecter avec CloudSync"),
        ("es", "Iniciar sesión con CloudSync"),
        ("pt-br", "Entrar com o CloudSync"),
        ("ja", "CloudSync でサインイン"),
    ],
)
def test_the_button_renders_translated_under_language_code(
    client: Client, settings: Any, language: str, label: str
) -> None:
    settings.LANGUAGE_CODE = language

    page = client.get("/").content.decode()

    assert label in page
    assert "Sign in with CloudSync" not in page
