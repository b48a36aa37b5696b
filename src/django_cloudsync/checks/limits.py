"""The numeric settings (E012): each ``CLOUDSYNC_*`` limit is a number its reader takes.

The rules are conf's: this check calls each setting's reader, which validates what it reads, and
reports the :class:`~django_cloudsync.errors.ConfigurationError` a call would otherwise meet.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from .. import conf, errors

#: Each numeric setting: its reader in conf, and its default as the hint gives it.
_LIMITS: tuple[tuple[str, Callable[[], object], str], ...] = (
    ("CLOUDSYNC_TIMEOUT", conf.timeout, repr(conf.DEFAULT_TIMEOUT)),
    ("CLOUDSYNC_DEADLINE", conf.deadline, repr(conf.DEFAULT_DEADLINE)),
    ("CLOUDSYNC_MAX_RETRIES", conf.max_retries, repr(conf.DEFAULT_MAX_RETRIES)),
    ("CLOUDSYNC_MAX_RETRY_AFTER", conf.max_retry_after, repr(conf.DEFAULT_MAX_RETRY_AFTER)),
    ("CLOUDSYNC_REFRESH_LEEWAY", conf.refresh_leeway, repr(conf.DEFAULT_REFRESH_LEEWAY)),
    # The setting alone, not lock_timeout(): its default is derived from CLOUDSYNC_DEADLINE,
    # whose own mistake is reported once, above.
    ("CLOUDSYNC_LOCK_TIMEOUT", conf.lock_timeout_setting, "None (as long as a refresh can take)"),
    ("CLOUDSYNC_MAX_RESPONSE_BYTES", conf.max_response_bytes, repr(conf.DEFAULT_MAX_RESPONSE_BYTES)),
    ("CLOUDSYNC_ASYNC_MAX_CONNECTIONS", conf.async_max_connections, repr(conf.DEFAULT_ASYNC_MAX_CONNECTIONS)),
)

#: Shows a value cut short: a setting read from the environment may be a long string.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40


@register()
def check_limits(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E012, one per numeric setting its reader refuses: a string, a bool, NaN, infinity, out of range.

    Unset settings are their defaults, which pass. The values are numbers, never secrets, so the
    hint shows what was set (cut short).
    """
    messages: list[CheckMessage] = []
    for name, read, default in _LIMITS:
        try:
            read()
        except errors.ConfigurationError as error:
            value = _SHORT.repr(getattr(settings, name))
            messages.append(
                Error(
                    f"{error.message}.",
                    hint=f"It is {value}; leave it out for the default, {default}.",
                    id="django_cloudsync.E012",
                )
            )
    return messages
