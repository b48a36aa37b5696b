from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from hypothesis import settings as hypothesis_settings

from tests.helpers import RESPONSE_LIMIT
from testsupport import routers

# The property tests (tests/hostile/) take their example counts from these profiles: about a hundred
# examples each while working, a thousand in CI (HYPOTHESIS_PROFILE=ci). Loaded here, before any
# test module is imported, because a hypothesis ``settings`` object copies the counts of the profile
# loaded when it is created.
hypothesis_settings.register_profile("default", max_examples=100)
hypothesis_settings.register_profile("ci", max_examples=1000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "default")


@pytest.fixture
def fake(cloudsync_settings: Any) -> Any:
    """The fake CloudSync, with the site's settings pointing at it."""
    return cloudsync_settings


@pytest.fixture
def hostile_settings(settings: Any, fake: Any) -> Any:
    """The fake, a small response limit (``RESPONSE_LIMIT``), and no retries: one HTTP call per
    answer, so that each scripted answer is the one the code under test reads."""
    settings.CLOUDSYNC_MAX_RESPONSE_BYTES = RESPONSE_LIMIT
    settings.CLOUDSYNC_MAX_RETRIES = 0
    return fake


#: The database servers the suite can run on besides SQLite: alias -> (what it is, the variable
#: that names it, an example). tests/settings.py adds each alias when its variable is set.
SERVER_DATABASES = {
    "postgres": ("PostgreSQL", "CLOUDSYNC_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"),
    "mysql": ("MariaDB/MySQL", "CLOUDSYNC_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}


def pytest_configure(config: pytest.Config) -> None:
    registered = {line.split(":")[0] for line in config.getini("markers")}
    for alias, (name, variable, _example) in SERVER_DATABASES.items():
        if alias not in registered:
            config.addinivalue_line("markers", f"{alias}: needs the {name} server named by {variable}")


def _database_params(aliases: list[str]) -> list[Any]:
    """One fixture parameter per alias, each server's marked with its alias (``-m mysql``)."""
    return [
        pytest.param(
            alias, id=alias, marks=[getattr(pytest.mark, alias)] if alias in SERVER_DATABASES else []
        )
        for alias in aliases
    ]


def _routed_to(alias: str) -> Iterator[str]:
    """Route every model to ``alias`` until the test ends; skip, saying why, if it is not set up."""
    if alias in SERVER_DATABASES and alias not in django_settings.DATABASES:
        name, variable, example = SERVER_DATABASES[alias]
        pytest.skip(f"{name} tests need {variable} (e.g. {example})")
    with routers.database(alias):
        yield alias


@pytest.fixture(params=_database_params(list(SERVER_DATABASES)))
def on_server_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test once on each database server (PostgreSQL, MariaDB/MySQL), every model routed there;
    each skips without its URL."""
    yield from _routed_to(request.param)


@pytest.fixture(params=_database_params(["default", *SERVER_DATABASES]))
def on_each_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test on SQLite (``default``), then on each database server as ``on_server_database``."""
    yield from _routed_to(request.param)


@pytest.fixture
def database(on_each_database: str) -> str:
    """The alias the test runs on: SQLite, then each database server (skipped without its URL)."""
    return on_each_database
