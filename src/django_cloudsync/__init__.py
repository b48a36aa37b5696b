"""Sign in with CloudSync for Django, and a CloudSync client whose tokens stay encrypted and fresh.

The public names are importable from here: ``CloudSync``, ``client_for``, its async twin
``aclient_for``, ``app_client`` and the errors (``django_cloudsync.errors``). They are loaded on
first use, so that importing this package while Django sets up its apps imports no models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import CloudSync, app_client
    from .sources import aclient_for, client_for

_LAZY = {"CloudSync": "client", "app_client": "client", "aclient_for": "sources", "client_for": "sources"}

__all__ = ["CloudSync", "__version__", "aclient_for", "app_client", "client_for"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
