from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", views.home, name="home"),
    path("workspaces/", views.workspaces, name="workspaces"),
    path("needs-write/", views.needs_write, name="needs_write"),
]
