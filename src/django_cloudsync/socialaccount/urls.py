from allauth.socialaccount.providers.oauth2.urls import default_urlpatterns
from django.urls import path

from .. import conf
from ..consent import consent_view
from .provider import CloudSyncProvider

urlpatterns = default_urlpatterns(CloudSyncProvider)
# The site's own page before CloudSync's consent for more scopes (see ..consent), among the
# provider's URLs so that a site adds nothing: /accounts/cloudsync/consent/.
urlpatterns += [path(f"{conf.PROVIDER_ID}/consent/", consent_view, name=f"{conf.PROVIDER_ID}_consent")]

if conf.headless_serves_apps():
    # An app's sign-in with an authorization code (see .headless).
    from .headless import urlpatterns as headless_urlpatterns

    urlpatterns += headless_urlpatterns
