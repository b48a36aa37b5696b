"""The site's own API key: a CloudSync key (E008), and not a live one with DEBUG on (W006)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

from .. import conf, dialect


@register(Tags.security)
def check_api_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    key = conf.api_key()
    if key is None:
        return []
    environment = dialect.environment_of(key, dialect.API_KEY_PREFIXES) if isinstance(key, str) else None
    if environment is None:
        return [
            Error(
                "CLOUDSYNC_API_KEY does not start with sk_live_ or sk_test_.",
                hint="Copy the key from CloudSync's dashboard, whole.",
                id="django_cloudsync.E008",
            )
        ]
    if environment == dialect.LIVE and settings.DEBUG:
        return [
            CheckWarning(
                "CLOUDSYNC_API_KEY is a live key and DEBUG is on.",
                hint="Use an sk_test_ key in development.",
                id="django_cloudsync.W006",
            )
        ]
    return []
