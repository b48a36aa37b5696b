from allauth.socialaccount.providers.oauth2.urls import default_urlpatterns

from .. import conf
from .provider import CloudSyncProvider

urlpatterns = default_urlpatterns(CloudSyncProvider)

if conf.headless_serves_apps():
    # An app's sign-in with an authorization code (see .headless).
    from .headless import urlpatterns as headless_urlpatterns

    urlpatterns += headless_urlpatterns
