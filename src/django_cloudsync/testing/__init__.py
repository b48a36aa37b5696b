"""A fake CloudSync for tests and development: authorization server, API and pytest fixtures.

``FakeCloudSync`` is the WSGI application; ``FakeCloudSyncServer`` serves it on a loopback socket;
``mount`` serves it beside a Django site; ``python -m django_cloudsync.testing`` runs it alone.
The pytest fixtures (``cloudsync_server``, ``cloudsync_fake``, ``cloudsync_settings``) are loaded
automatically through the ``cloudsync`` pytest plugin. Nothing here imports Django.
"""

from .fake import FakeCloudSync, FakeUser, mount
from .server import FakeCloudSyncServer

__all__ = ["FakeCloudSync", "FakeCloudSyncServer", "FakeUser", "mount"]
