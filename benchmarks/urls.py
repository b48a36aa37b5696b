from django.urls import include, path

from . import views

urlpatterns = [
    path("accounts/", include("allauth.urls")),
    path("bench/untouched/", views.untouched),
    path("bench/username/", views.username),
    path("bench/app-client/", views.app_client),
    path("bench/handrolled-token/", views.handrolled_token),
    path("bench/app-me/", views.app_me),
    path("bench/handrolled-me/", views.handrolled_me),
]
