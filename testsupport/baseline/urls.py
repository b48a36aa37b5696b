from allauth.socialaccount.providers.oauth2.urls import default_urlpatterns

from .provider import BaselineProvider

urlpatterns = default_urlpatterns(BaselineProvider)
