"""System checks: every misconfiguration a site can make, reported at start-up with an id.

Errors (``django_cloudsync.E0xx``) stop ``runserver`` and ``migrate``; warnings
(``django_cloudsync.W0xx``) are printed. Each message says what to do; none shows a secret.
One registered check per concern, by subject:

* :mod:`.keys`: the encryption keys (E001-E003).
* :mod:`.installation`: allauth's apps (E004) and the middleware (W001, E005).
* :mod:`.provider`: ``SOCIALACCOUNT_PROVIDERS["cloudsync"]`` (W002-W005, W007, W008, E006,
  E007, E009, E010); :func:`check_provider` runs all of them but W008 at once.
* :mod:`.api_key`: ``CLOUDSYNC_API_KEY`` (E008, W006).
* :mod:`.mail`: allauth's verification mail on sign-up, with mail left at Django's defaults (E011).
* :mod:`.limits`: the numeric ``CLOUDSYNC_*`` settings, timeouts, deadline, retries and sizes (E012).

Importing this package registers them (the app config does, in ``ready()``).
"""

from __future__ import annotations

from .api_key import check_api_key
from .installation import check_installed_apps, check_middleware
from .keys import check_encryption_keys
from .limits import check_limits
from .mail import check_sign_up_mail
from .provider import (
    check_app_redirect_uris,
    check_app_token_authentication,
    check_apps,
    check_environment,
    check_offline_access,
    check_pkce,
    check_provider,
    check_token_storage,
    check_urls,
)

__all__ = [
    "check_api_key",
    "check_app_redirect_uris",
    "check_app_token_authentication",
    "check_apps",
    "check_encryption_keys",
    "check_environment",
    "check_installed_apps",
    "check_limits",
    "check_middleware",
    "check_offline_access",
    "check_pkce",
    "check_provider",
    "check_sign_up_mail",
    "check_token_storage",
    "check_urls",
]
