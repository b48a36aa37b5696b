"""The encryption keys: set (E001), well-formed (E002), and not the site's SECRET_KEY (E003)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from .. import conf, errors
from ..crypto import parse_key


@register(Tags.security)
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    keys = conf.encryption_keys()
    if not keys:
        return [
            Error(
                "CLOUDSYNC_ENCRYPTION_KEYS is not set: CloudSync tokens cannot be stored.",
                hint="Run `manage.py cloudsync_generate_key` and set CLOUDSYNC_ENCRYPTION_KEYS = [that key], "
                "read from the environment (keep it out of the repository).",
                id="django_cloudsync.E001",
            )
        ]
    messages: list[CheckMessage] = []
    site_secrets = _site_secret_keys()
    for position, key in enumerate(keys):
        try:
            raw = parse_key(key)
        except errors.ConfigurationError as exc:
            messages.append(
                Error(
                    f"CLOUDSYNC_ENCRYPTION_KEYS[{position}] is malformed: {exc.message}.",
                    hint="Each key is 32 random bytes in URL-safe base64 (44 characters), as "
                    "`manage.py cloudsync_generate_key` prints them.",
                    id="django_cloudsync.E002",
                )
            )
            continue
        if raw in site_secrets:
            messages.append(
                Error(
                    f"CLOUDSYNC_ENCRYPTION_KEYS[{position}] is the SECRET_KEY "
                    "(or one of SECRET_KEY_FALLBACKS).",
                    hint="Put a key of its own first (`manage.py cloudsync_generate_key`), so that neither "
                    "secret exposes the other; if tokens are stored under this one, keep it second, run "
                    "`manage.py cloudsync_rotate_keys --skip-checks`, then remove it.",
                    id="django_cloudsync.E003",
                )
            )
    return messages


def _site_secret_keys() -> set[bytes]:
    """The raw key bytes of SECRET_KEY and SECRET_KEY_FALLBACKS, for those that parse as keys.

    Compared as bytes, not text: the same key with other padding or whitespace is the same key.
    A secret that does not parse as a key cannot be equal to one that does.
    """
    fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", None) or []
    secrets = [getattr(settings, "SECRET_KEY", None), *fallbacks]
    found: set[bytes] = set()
    for secret in secrets:
        if isinstance(secret, (str, bytes)) and secret:
            try:
                found.add(parse_key(secret))
            except errors.ConfigurationError:
                continue
    return found
