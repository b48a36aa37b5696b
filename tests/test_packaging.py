"""What would be published: the sdist and the wheel hold the package and nothing else, and the
wheel, installed in a virtualenv of its own outside the checkout, runs a site that passes its
checks, migrates and signs in against the fake CloudSync shipped in that same wheel.

The build runs on a copy of the checkout, so that it never writes into the working tree (other
test runs, tox environments among them, may be building at the same time).
"""

from __future__ import annotations

import configparser
import itertools
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from packaging.version import Version

import django_cloudsync
from tests.processes import clean_environment, fake_cloudsync, run

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE_DIR = SRC / "django_cloudsync"
INSTALLED_SITE = Path(__file__).resolve().parent / "installed_site"
VERSION = django_cloudsync.__version__
DIST_NAME = f"django_cloudsync-{VERSION}"

# Left out of the copy that is built: tools' state, and earlier builds that would leak into this one.
_NOT_COPIED = {
    ".git",
    ".venv",
    ".tox",
    "build",
    "dist",
    "test-artifacts",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
}
# Files the sdist holds besides the package (setuptools adds PKG-INFO, setup.cfg and the egg-info).
_SDIST_PROJECT_FILES = {
    "PKG-INFO",
    "setup.cfg",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "MANIFEST.in",
}
# The requirements whose versions the fresh virtualenv takes from this test run's environment.
_PINNED_REQUIREMENTS = ("django", "django-allauth", "requests", "cryptography")


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class InstalledSite:
    python: Path
    directory: Path
    env: dict[str, str]
    migrate_output: str

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the virtualenv's Python in the site's directory (outside the checkout)."""
        return run(
            [str(self.python), *args], cwd=self.directory, env={**self.env, **(extra_env or {})}, check=False
        )

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("manage.py", *args)


def package_files() -> set[str]:
    """Every file of the package as the wheel holds it: relative to ``src/`` (caches excluded)."""
    return {
        path.relative_to(SRC).as_posix()
        for path in PACKAGE_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}
    }


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        return Parser().parsestr(archive.read(f"{DIST_NAME}.dist-info/METADATA").decode())


def expand_braces(pattern: str) -> list[str]:
    """tox's ``py{310,311}-dj42`` → ``["py310-dj42", "py311-dj42"]``."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[part] if index % 2 == 0 else part.split(",") for index, part in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def tox_config() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    return config


def tox_env_names() -> list[str]:
    lines = tox_config()["tox"]["env_list"].split()
    return [name for line in lines for name in expand_braces(line)]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist, and the wheel that ``python -m build`` builds from that sdist."""
    checkout = tmp_path_factory.mktemp("source") / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=lambda directory, names: [
            name
            for name in names
            if (Path(directory) == ROOT and name in _NOT_COPIED) or name.endswith(".egg-info")
        ],
    )
    outdir = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(outdir), str(checkout)], cwd=checkout)
    (sdist,) = outdir.glob("*.tar.gz")
    (wheel,) = outdir.glob("*.whl")
    return Dists(sdist=sdist, wheel=wheel)


@pytest.fixture(scope="module")
def installed_site(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> InstalledSite:
    """A virtualenv with only the wheel and its dependencies, and a migrated site beside it."""
    workspace = tmp_path_factory.mktemp("installed")
    env = clean_environment()
    venv = workspace / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=workspace, env=env)
    python = venv / "bin" / "python"
    # The same versions as this run's environment: the wheel is tested against what the suite
    # just passed on, and pip finds them in its cache instead of on the network.
    constraints = workspace / "constraints.txt"
    constraints.write_text("".join(f"{name}=={installed_version(name)}\n" for name in _PINNED_REQUIREMENTS))
    run(
        [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints), str(dists.wheel)],
        cwd=workspace,
        env=env,
    )
    directory = workspace / "site"
    shutil.copytree(INSTALLED_SITE, directory, ignore=shutil.ignore_patterns("__pycache__"))
    migrate = run([str(python), "manage.py", "migrate", "--noinput"], cwd=directory, env=env)
    return InstalledSite(python=python, directory=directory, env=env, migrate_output=migrate.stdout)


@pytest.fixture
def fake_cloudsync_url(installed_site: InstalledSite) -> Iterator[str]:
    """A fake CloudSync run from the installed package (``python -m django_cloudsync.testing``)."""
    with fake_cloudsync(
        [str(installed_site.python), "-m", "django_cloudsync.testing", "--port", "0"],
        cwd=installed_site.directory,
        env=installed_site.env,
        log_path=installed_site.directory / "fake-cloudsync.log",
    ) as url:
        yield url


# The wheel.


def test_wheel_holds_every_package_file_and_nothing_else(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as archive:
        names = set(archive.namelist())

    shipped = {name for name in names if not name.startswith(f"{DIST_NAME}.dist-info/")}

    assert shipped == package_files()


def test_wheel_ships_templates_static_files_migrations_and_py_typed(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as archive:
        names = set(archive.namelist())

    assert {
        "django_cloudsync/templates/cloudsync/login_button.html",
        "django_cloudsync/static/cloudsync/cloudsync.css",
        "django_cloudsync/migrations/__init__.py",
        "django_cloudsync/migrations/0001_initial.py",
        "django_cloudsync/py.typed",
        "django_cloudsync/templatetags/cloudsync.py",
        "django_cloudsync/testing/__main__.py",
        f"{DIST_NAME}.dist-info/licenses/LICENSE",
    } <= names


def test_wheel_has_no_tests_example_project_or_caches(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as archive:
        names = archive.namelist()

    unwanted = re.compile(r"(^|/)(tests|example_project|\.venv|__pycache__)/|\.py[co]$|\.sqlite3$")
    assert [name for name in names if unwanted.search(name)] == []


def test_wheel_registers_the_pytest_plugin(dists: Dists) -> None:
    entry_points = configparser.ConfigParser()
    with zipfile.ZipFile(dists.wheel) as archive:
        entry_points.read_string(archive.read(f"{DIST_NAME}.dist-info/entry_points.txt").decode())

    assert dict(entry_points["pytest11"]) == {"cloudsync": "django_cloudsync.testing.pytest_plugin"}


def test_wheel_version_is_the_package_version_and_license_is_mit(dists: Dists) -> None:
    metadata = wheel_metadata(dists.wheel)

    assert metadata["Version"] == VERSION
    assert dists.wheel.name == f"{DIST_NAME}-py3-none-any.whl"
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == ">=3.10"


def classifier_versions(metadata: Message, prefix: str) -> set[str]:
    """The versions named by classifiers ``<prefix><version>``, e.g. ``Framework :: Django :: 5.2``."""
    return {
        classifier.removeprefix(prefix)
        for classifier in metadata.get_all("Classifier") or []
        if re.fullmatch(rf"{re.escape(prefix)}\d+\.\d+", classifier)
    }


def test_classifiers_name_every_django_and_python_the_tox_matrix_tests(dists: Dists) -> None:
    metadata = wheel_metadata(dists.wheel)
    envs = tox_env_names()

    djangos = {f"{major}.{minor}" for name in envs for major, minor in re.findall(r"\bdj(\d)(\d+)\b", name)}
    pythons = {f"3.{minor}" for name in envs for minor in re.findall(r"\bpy3(\d+)\b", name)}
    assert classifier_versions(metadata, "Framework :: Django :: ") == djangos
    assert classifier_versions(metadata, "Programming Language :: Python :: ") == pythons


def test_tox_tests_the_oldest_allauth_the_package_accepts(dists: Dists) -> None:
    requirements = wheel_metadata(dists.wheel).get_all("Requires-Dist") or []
    (allauth,) = [requirement for requirement in requirements if requirement.startswith("django-allauth")]
    floor = re.search(r">=\s*([\d.]+)", allauth)
    tox_deps = tox_config()["testenv"]["deps"]
    oldest = re.search(r"allautholdest:\s*django-allauth\[socialaccount\]==([\d.]+)", tox_deps)

    assert floor is not None
    assert oldest is not None
    # Compared as versions: 65.14 and 65.14.0 are the same release.
    assert Version(oldest.group(1)) == Version(floor.group(1))


def test_changelog_has_a_section_for_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()

    assert re.search(rf"^## \[{re.escape(VERSION)}\]", changelog, re.MULTILINE)


# The sdist.


def test_sdist_holds_the_package_and_the_project_files_only(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as archive:
        files = {
            member.name.removeprefix(f"{DIST_NAME}/") for member in archive.getmembers() if member.isfile()
        }

    egg_info = {name for name in files if name.startswith("src/django_cloudsync.egg-info/")}
    assert files - egg_info == {f"src/{name}" for name in package_files()} | _SDIST_PROJECT_FILES


def test_twine_check_passes_on_the_sdist_and_the_wheel(dists: Dists) -> None:
    # What PyPI would refuse: metadata, and a README that does not render as the long description.
    result = run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.sdist), str(dists.wheel)], cwd=ROOT
    )

    assert result.stdout.count("PASSED") == 2, result.stdout


# The wheel, installed outside the checkout.


def test_installed_site_passes_the_deploy_checks(installed_site: InstalledSite) -> None:
    result = installed_site.manage("check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "django_cloudsync." not in result.stdout + result.stderr


def test_installed_site_applies_the_packaged_migrations(installed_site: InstalledSite) -> None:
    assert "Applying django_cloudsync.0001_initial... OK" in installed_site.migrate_output


def test_installed_site_finds_the_packaged_static_file(installed_site: InstalledSite) -> None:
    result = installed_site.manage("findstatic", "cloudsync/cloudsync.css", "--first")

    assert result.returncode == 0, result.stderr
    found = Path(result.stdout.strip().splitlines()[-1].strip())
    assert found.is_relative_to(installed_site.python.parent.parent)
    assert found.name == "cloudsync.css"


def test_installed_wheel_signs_in_against_its_own_fake_cloudsync(
    installed_site: InstalledSite, fake_cloudsync_url: str
) -> None:
    result = installed_site.run("sign_in_once.py", extra_env={"CLOUDSYNC_URL": fake_cloudsync_url})

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["package_file"]).is_relative_to(installed_site.python.parent.parent)
    assert report["status"] == 302
    assert report["signed_in_user"] == report["user_id"]
    assert report["accounts"] == [["cloudsync", "usr_ada"]]
    assert report["stored_tokens"] == 1
    assert report["me"] == "usr_ada"
    assert report["button_posts_to"] is True
