"""Signals django-cloudsync sends. Connect to them like any Django signal.

``token_refreshed``
    Sent after a refreshed token pair is committed. Arguments: ``sender`` (the
    :class:`~django_cloudsync.models.CloudSyncToken` class), ``token`` (the row), ``user``.

``reauthorization_required``
    Sent after CloudSync refused a refresh token (``invalid_grant``) and the account's tokens
    were forgotten: the user must go through CloudSync's consent again. Arguments: ``sender``
    (the CloudSyncToken class), ``user``, ``account_id`` (CloudSync's ``usr_...`` id), ``scopes``
    (what the forgotten grant had).

Neither carries a token.
"""

from django.dispatch import Signal

token_refreshed = Signal()
reauthorization_required = Signal()
