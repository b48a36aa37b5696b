"""Optional glue for API frameworks: :mod:`.drf` (Django REST framework) and :mod:`.ninja`.

Each imports its framework only when it is itself imported; this package imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import responses
from ..middleware import request_client


def refusal(request: Any, scopes: Sequence[str]) -> responses.APIAnswer | None:
    """What an authenticated user without CloudSync, or without ``scopes``, is told; else ``None``.

    The frameworks' glue raises it in their own way; the view then shares the client (one query).
    """
    if not request.user.is_authenticated:
        return None
    return responses.connection_answer(request, request_client(request), scopes)
