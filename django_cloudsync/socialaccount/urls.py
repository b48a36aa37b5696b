from allauth.socialaccount.providers.oauth2.urls import default_urlpatterns

from .provider import CloudSyncProvider

urlpatterns = default_urlpatterns(CloudSyncProvider)
