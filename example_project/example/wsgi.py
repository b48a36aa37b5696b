"""The example's WSGI app: the site, and the built-in fake CloudSync under /fake-cloudsync/.

``runserver`` serves this application (``WSGI_APPLICATION``), so one command runs both.
``CLOUDSYNC_FAKE_TOKEN_LIFETIME`` (seconds) makes the fake's access tokens short-lived, to
watch the site refresh them.
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

application = get_wsgi_application()

if settings.USE_FAKE_CLOUDSYNC:
    from django_cloudsync.testing import FakeCloudSync, mount

    app = settings.SOCIALACCOUNT_PROVIDERS["cloudsync"]["APPS"][0]
    fake = FakeCloudSync(
        client_id=app["client_id"],
        client_secret=app["secret"],
        token_lifetime=int(os.environ.get("CLOUDSYNC_FAKE_TOKEN_LIFETIME", "3600")),
    )
    application = mount(application, fake, prefix=settings.FAKE_CLOUDSYNC_PREFIX)
