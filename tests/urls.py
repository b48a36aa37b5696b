from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("_allauth/", include("allauth.headless.urls")),
    path("api/", include("tests.api_urls")),
    path("", views.home, name="home"),
    path("workspaces/", views.workspaces, name="workspaces"),
    path("needs-write/", views.needs_write, name="needs_write"),
    path("untouched/", views.untouched, name="untouched"),
    path("touches-user/", views.touches_user, name="touches_user"),
    path("cloudsync-state/", views.cloudsync_state, name="cloudsync_state"),
    path("connected-only/", views.connected_only, name="connected_only"),
    path("logout-then-cloudsync/", views.logout_then_cloudsync, name="logout_then_cloudsync"),
    path("login-then-cloudsync/", views.login_then_cloudsync, name="login_then_cloudsync"),
    path("messages/", views.messages_list, name="messages"),
    path("fails-holding-a-secret/", views.fails_holding_a_secret, name="fails_holding_a_secret"),
]
