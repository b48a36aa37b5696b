from django.contrib import admin
from django.urls import include, path

from . import views
from .api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("workspaces/new/", views.new_workspace, name="new_workspace"),
    path("workspaces/async/", views.async_workspaces, name="async_workspaces"),
    path("api/workspaces/", views.workspaces_json, name="workspaces_json"),
    path("accounts/", include("allauth.urls")),
    # The single-page app (static/example/spa.html) and what it talks to.
    path("spa/", views.spa, name="spa"),
    path("_allauth/", include("allauth.headless.urls")),
    path("api/v2/", api.urls),
    path("admin/", admin.site.urls),
]
