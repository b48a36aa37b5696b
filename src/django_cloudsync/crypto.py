"""Authenticated encryption of stored tokens, with a key ring for rotation.

:class:`TokenCipher` seals a string with AES-256-GCM. Every ciphertext names the key that
sealed it, so a ring of keys can decrypt while only the first one encrypts; a key is rotated by
putting a new key first, re-encrypting (``manage.py cloudsync_rotate_keys``), then dropping the
old one. The caller passes *associated data* (for stored tokens: the row and the field), which
is authenticated but not stored: a ciphertext moved to another row or field fails to decrypt.

This module knows nothing of Django models or settings; :func:`django_cloudsync.conf.cipher`
builds the cipher from ``CLOUDSYNC_ENCRYPTION_KEYS`` (once per distinct key list).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigurationError, UndecryptableToken

VERSION = "v1"
_NONCE_BYTES = 12
_KEY_BYTES = 32


def generate_key() -> str:
    """A new random key, in the form ``CLOUDSYNC_ENCRYPTION_KEYS`` takes (URL-safe base64)."""
    return base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def parse_key(key: str | bytes) -> bytes:
    """The 32 raw bytes of a key given as URL-safe base64 text; ``ConfigurationError`` if malformed.

    The message never contains the key.
    """
    if isinstance(key, bytes):
        key = key.decode("ascii", errors="replace")
    if not isinstance(key, str):
        raise ConfigurationError("An encryption key must be a string of URL-safe base64")
    try:
        # Strict: a stray character (a quote, a space inside) is a typo to report, not to skip,
        # which is what the lenient ``urlsafe_b64decode`` would do.
        raw = base64.b64decode(key.strip().encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ConfigurationError("An encryption key is not valid URL-safe base64") from None
    if len(raw) != _KEY_BYTES:
        raise ConfigurationError(f"An encryption key must decode to {_KEY_BYTES} bytes, not {len(raw)}")
    return raw


def key_id(raw_key: bytes) -> str:
    """A short public fingerprint of a key, stored in each ciphertext to find its key."""
    return hashlib.sha256(b"django-cloudsync key id\x00" + raw_key).hexdigest()[:8]


class TokenCipher:
    """AES-GCM over a ring of keys: the first key encrypts, every key decrypts."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, (str, bytes)):
            keys = [keys]  # One key given bare: not a ring of 44 one-character keys.
        if not keys:
            raise ConfigurationError("No encryption key: set CLOUDSYNC_ENCRYPTION_KEYS")
        self._keys: dict[str, AESGCM] = {}
        for key in keys:
            raw = parse_key(key)
            self._keys.setdefault(key_id(raw), AESGCM(raw))
        self.primary_key_id = key_id(parse_key(keys[0]))

    def __repr__(self) -> str:
        return f"<TokenCipher keys={list(self._keys)}>"

    @property
    def key_ids(self) -> list[str]:
        """The fingerprints of the ring's keys, the encrypting one first."""
        return list(self._keys)

    def encrypt(self, plaintext: str, associated_data: bytes) -> str:
        """Seal ``plaintext``; the result is ASCII text ``v1$<key id>$<nonce+ciphertext>``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self.primary_key_id].encrypt(
            nonce, plaintext.encode("utf-8"), self._aad(self.primary_key_id, associated_data)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{VERSION}${self.primary_key_id}${body}"

    def decrypt(self, ciphertext: str, associated_data: bytes) -> str:
        """Open a ciphertext sealed with the same associated data by any key of the ring."""
        return self._open(*self._split(ciphertext), associated_data)

    def reseal(self, ciphertext: str, associated_data: bytes) -> str | None:
        """``ciphertext`` sealed again with the encrypting key, or ``None`` if that key sealed it.

        It is opened either way (a ciphertext passed as current must really open), and parsed
        once: the key rotation calls this for every stored token.
        """
        kid, sealed = self._split(ciphertext)
        plaintext = self._open(kid, sealed, associated_data)
        return None if kid == self.primary_key_id else self.encrypt(plaintext, associated_data)

    def _open(self, kid: str, sealed: bytes, associated_data: bytes) -> str:
        aead = self._keys.get(kid)
        if aead is None:
            raise UndecryptableToken(f"No configured key has id {kid}")
        try:
            plaintext = aead.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], self._aad(kid, associated_data)
            )
        except Exception:  # cryptography raises InvalidTag; anything else is corruption too
            raise UndecryptableToken("The ciphertext does not belong here or was altered") from None
        return plaintext.decode("utf-8")

    def key_id_of(self, ciphertext: str) -> str:
        """The id of the key that sealed ``ciphertext`` (whether or not the ring still has it)."""
        return self._split(ciphertext)[0]

    def is_current(self, ciphertext: str) -> bool:
        """Whether ``ciphertext`` is sealed with the encrypting key (nothing to rotate)."""
        return self.key_id_of(ciphertext) == self.primary_key_id

    @staticmethod
    def _aad(kid: str, associated_data: bytes) -> bytes:
        # The version and key id are authenticated too, so neither can be swapped.
        return f"{VERSION}${kid}$".encode("ascii") + associated_data

    @staticmethod
    def _split(ciphertext: str) -> tuple[str, bytes]:
        parts = ciphertext.split("$") if isinstance(ciphertext, str) else []
        if len(parts) != 3 or parts[0] != VERSION:
            raise UndecryptableToken("Not a django-cloudsync ciphertext")
        try:
            sealed = base64.urlsafe_b64decode(parts[2].encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise UndecryptableToken("Not a django-cloudsync ciphertext") from None
        if len(sealed) <= _NONCE_BYTES:
            raise UndecryptableToken("Not a django-cloudsync ciphertext")
        return parts[1], sealed
