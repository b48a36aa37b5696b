from django.urls import include, path

from . import api, views

urlpatterns = [
    path("accounts/", include("allauth.urls")),
    path("bench/untouched/", views.untouched),
    path("bench/username/", views.username),
    path("bench/app-client/", views.app_client),
    path("bench/handrolled-token/", views.handrolled_token),
    path("bench/app-me/", views.app_me),
    path("bench/handrolled-me/", views.handrolled_me),
    path("bench/async/untouched/", views.async_untouched),
    path("bench/async/username/", views.async_username),
    path("bench/async/me/", views.async_me),
    path("bench/async/handrolled-me/", views.async_handrolled_me),
    path("bench/async/sleep/", views.async_sleep),
    path("bench/async/gather/", views.async_gather),
    path("bench/async/handrolled-gather/", views.async_handrolled_gather),
    path("bench/async/race/load/", views.async_race_load),
    path("bench/async/race/go/", views.async_race_go),
    *api.urlpatterns,
]
