"""django_cloudsync.redirects: every URL built points at this site's allauth login view."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from django_cloudsync import redirects
from tests.helpers import query_of


def test_a_login_url_keeps_only_a_safe_next_and_the_scopes_asked_for() -> None:
    request = RequestFactory().get("/")

    url = redirects.login_url(request, process="connect", next_url="/reports/", scopes=["a:b", "", "a:b"])
    off_site = redirects.login_url(request, next_url="https://evil.example/")

    assert query_of(url) == {"process": "connect", "next": "/reports/", "scope": "a:b"}
    assert query_of(off_site) == {"process": "login"}


@pytest.mark.parametrize("process", ["signup", "redirect", ""])
def test_a_process_allauth_does_not_offer_here_is_refused(process: str) -> None:
    with pytest.raises(ValueError, match="process must be one of login, connect"):
        redirects.login_url(None, process=process)
