from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("workspaces/new/", views.new_workspace, name="new_workspace"),
    path("api/workspaces/", views.workspaces_json, name="workspaces_json"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
]
