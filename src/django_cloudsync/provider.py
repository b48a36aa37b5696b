"""Where allauth's provider registry looks (``<app>.provider.provider_classes``).

The provider itself lives in the ``socialaccount`` subpackage, because allauth mounts the
``urls`` module of the provider class's package under the site's ``accounts/`` URLs.
"""

from .socialaccount.provider import CloudSyncProvider, provider_classes

__all__ = ["CloudSyncProvider", "provider_classes"]
