"""The test site's URLs, and the async views of tests/test_async.py."""

from django.urls import path

from . import async_views
from .urls import urlpatterns as site_urlpatterns

urlpatterns = [
    path("async/untouched/", async_views.untouched),
    path("async/state/", async_views.state),
    path("async/auser/", async_views.auser),
    path("async/workspaces/", async_views.workspaces),
    path("async/connected-only/", async_views.connected_only),
    path("async/needs-write/", async_views.needs_write),
    path("async/decorated-workspaces/", async_views.decorated_workspaces),
    *site_urlpatterns,
]
