"""The example's ASGI app, for async views: ``uvicorn example.asgi:application`` (from example_project/).

The site, and (as in wsgi.py) the built-in fake CloudSync under /fake-cloudsync/ unless
``CLOUDSYNC_AUTH_URL`` points at a real CloudSync. The fake is a WSGI app; here it runs through
asgiref's adapter, a thread per request, which suits a demo. Benchmarks and the soak test run
their fake in a server of its own.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

django_application = get_asgi_application()
application: Any = django_application

if settings.USE_FAKE_CLOUDSYNC:
    from asgiref.sync import ThreadSensitiveContext
    from asgiref.wsgi import WsgiToAsgi

    from django_cloudsync.testing import mount

    from .wsgi import fake

    def _not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not found"]

    fake_application = WsgiToAsgi(mount(_not_found, fake, prefix=settings.FAKE_CLOUDSYNC_PREFIX))
    prefix = settings.FAKE_CLOUDSYNC_PREFIX

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == prefix or path.startswith(prefix + "/")):
            # A context of its own per request, as Django's ASGIHandler gives each of its own:
            # the adapter's thread-sensitive call then gets a thread, not the (absent) main one.
            async with ThreadSensitiveContext():
                await fake_application(scope, receive, send)
        else:
            await django_application(scope, receive, send)
