"""The ``cloudsync`` pytest plugin (``django_cloudsync.testing.pytest_plugin``) in a pytest run of
its own, as a project that installs the package gets it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_cloudsync_settings_without_pytest_django_fails_the_test_saying_what_it_needs(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_with_the_fake(cloudsync_fake):
            assert cloudsync_fake.counters["authorize"] == 0

        def test_with_django_settings(cloudsync_settings):
            pass
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:randomly")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*cloudsync_settings needs pytest-django (its `settings` fixture).*"])
    assert "FixtureLookupError" not in result.stdout.str()  # one line, not pytest's traceback
