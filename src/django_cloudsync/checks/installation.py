"""What the site installs: allauth's apps (E004), and the middleware in its place (W001, E005)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning
from django.utils.module_loading import import_string

_MIDDLEWARE = "django_cloudsync.middleware.CloudSyncMiddleware"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


@register()
def check_installed_apps(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    missing = [
        app for app in ("allauth", "allauth.account", "allauth.socialaccount") if not apps.is_installed(app)
    ]
    if not missing:
        return []
    return [
        Error(
            f"django-cloudsync needs {', '.join(missing)} in INSTALLED_APPS.",
            hint="Add allauth, allauth.account and allauth.socialaccount next to django_cloudsync.",
            id="django_cloudsync.E004",
        )
    ]


@register()
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = _resolved_middleware()
    if _MIDDLEWARE not in middleware:
        return [
            CheckWarning(
                "CloudSyncMiddleware is not in MIDDLEWARE: request.user.cloudsync is not available.",
                hint=f"Add '{_MIDDLEWARE}' after '{_AUTH_MIDDLEWARE}', or use "
                "django_cloudsync.client_for(user) instead.",
                id="django_cloudsync.W001",
            )
        ]
    if _AUTH_MIDDLEWARE not in middleware or middleware.index(_MIDDLEWARE) < middleware.index(
        _AUTH_MIDDLEWARE
    ):
        return [
            Error(
                "CloudSyncMiddleware must come after AuthenticationMiddleware.",
                hint="It wraps request.user, which AuthenticationMiddleware sets.",
                id="django_cloudsync.E005",
            )
        ]
    return []


def _resolved_middleware() -> list[str]:
    """MIDDLEWARE with subclasses of ours and of AuthenticationMiddleware named as their base."""
    from django.contrib.auth.middleware import AuthenticationMiddleware

    from ..middleware import CloudSyncMiddleware

    resolved = []
    for path in settings.MIDDLEWARE:
        try:
            cls = import_string(path)
        except ImportError:
            # Django reports an unimportable middleware itself; compare it by its path.
            resolved.append(path)
            continue
        if isinstance(cls, type) and issubclass(cls, CloudSyncMiddleware):
            resolved.append(_MIDDLEWARE)
        elif isinstance(cls, type) and issubclass(cls, AuthenticationMiddleware):
            resolved.append(_AUTH_MIDDLEWARE)
        else:
            resolved.append(path)
    return resolved
