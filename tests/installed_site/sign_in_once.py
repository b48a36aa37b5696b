"""Sign in once with CloudSync on the tiny site, using only the installed package.

Run by tests/test_packaging.py with the wheel's virtualenv, after ``manage.py migrate``, with
``CLOUDSYNC_URL`` naming a fake CloudSync started from the installed package. Prints one JSON
line that says what happened (never a token): the test asserts on it.
"""

from __future__ import annotations

import json
import os
from typing import Any


def main() -> dict[str, object]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_settings")
    import django

    django.setup()

    from allauth.socialaccount.models import SocialAccount
    from django.contrib.auth import get_user_model
    from django.template import RequestContext, Template
    from django.test import Client, RequestFactory

    import django_cloudsync
    from django_cloudsync import client_for
    from django_cloudsync.models import CloudSyncToken
    from django_cloudsync.testing.flow import sign_in

    # The site redirects plain HTTP to HTTPS (SECURE_SSL_REDIRECT): come through its TLS proxy.
    https: dict[str, Any] = {"HTTP_X_FORWARDED_PROTO": "https"}
    browser = Client(**https)
    response = sign_in(browser)

    user = get_user_model().objects.get()
    cloudsync = client_for(user)
    button = Template("{% load cloudsync %}{% cloudsync_login_button %}").render(
        RequestContext(RequestFactory(**https).get("/"))
    )
    return {
        "package_file": django_cloudsync.__file__,
        "status": response.status_code,
        "signed_in_user": browser.session.get("_auth_user_id"),
        "user_id": str(user.pk),
        "accounts": list(SocialAccount.objects.values_list("provider", "uid")),
        "stored_tokens": CloudSyncToken.objects.count(),
        "me": cloudsync.me()["id"] if cloudsync is not None else None,
        "button_posts_to": "/accounts/cloudsync/login/" in button and 'method="post"' in button,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
