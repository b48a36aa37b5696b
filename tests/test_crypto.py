"""Sealing stored tokens: AES-GCM under a key ring, each ciphertext bound to its row and field."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from django.test import Client

from django_cloudsync import errors
from django_cloudsync.crypto import TokenCipher, generate_key, key_id, parse_key
from django_cloudsync.models import CloudSyncToken
from django_cloudsync.sources import client_for
from django_cloudsync.testing.flow import sign_in

OLD_KEY = "xCHPAMGPkhXrXVp3vGuk4K6Fm-3vQIz6qKdk1Ej2bL0="
NEW_KEY = "g7f3n6m0z8dzuXg3DnDnS2R6c5z1C3o6r2D8o0w1F2E="
ROW = b"django_cloudsync.cloudsynctoken:2f1c7a52-0e43-4c0b-9d53-0a4c1f0e6b11:access_token"
SECRET = "at_test_s3cr3t-value"


def test_a_sealed_token_opens_with_the_same_associated_data() -> None:
    cipher = TokenCipher([OLD_KEY])

    sealed = cipher.encrypt(SECRET, ROW)

    assert cipher.decrypt(sealed, ROW) == SECRET
    assert SECRET not in sealed


def test_sealing_the_same_token_twice_gives_different_ciphertexts() -> None:
    cipher = TokenCipher([OLD_KEY])

    assert cipher.encrypt(SECRET, ROW) != cipher.encrypt(SECRET, ROW)  # a fresh nonce each time


def test_a_ciphertext_names_its_format_and_key() -> None:
    cipher = TokenCipher([OLD_KEY])

    version, kid, body = cipher.encrypt(SECRET, ROW).split("$")

    assert version == "v1"
    assert kid == key_id(parse_key(OLD_KEY)) == cipher.primary_key_id
    assert re.fullmatch(r"[A-Za-z0-9_=-]+", body)


@pytest.mark.parametrize(
    "other",
    [
        ROW.replace(b"2f1c7a52", b"9e0d7c4b"),  # another row
        ROW.replace(b":access_token", b":refresh_token"),  # another field
        b"",
    ],
    ids=["another row", "another field", "no associated data"],
)
def test_a_ciphertext_moved_elsewhere_fails_loudly(other: bytes) -> None:
    cipher = TokenCipher([OLD_KEY])
    sealed = cipher.encrypt(SECRET, ROW)

    with pytest.raises(errors.UndecryptableToken) as raised:
        cipher.decrypt(sealed, other)

    assert SECRET not in str(raised.value)
    assert sealed not in str(raised.value)


def flip_one_bit(sealed: str, position: int) -> str:
    version, kid, body = sealed.split("$")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[position] ^= 0x01
    return f"{version}${kid}${base64.urlsafe_b64encode(bytes(raw)).decode()}"


@pytest.mark.parametrize("position", [0, 12, -1], ids=["nonce", "ciphertext", "tag"])
def test_a_tampered_ciphertext_fails(position: int) -> None:
    cipher = TokenCipher([OLD_KEY])
    sealed = cipher.encrypt(SECRET, ROW)

    with pytest.raises(errors.UndecryptableToken):
        cipher.decrypt(flip_one_bit(sealed, position), ROW)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "at_test_plaintext",
        "v1$abcdef01",
        "v2$abcdef01$AAAA",
        "v1$abcdef01$not base64!",
        "v1$abcdef01$AAAA",  # too short to hold a nonce and a tag
    ],
)
def test_something_that_is_not_a_ciphertext_fails(garbage: str) -> None:
    with pytest.raises(errors.UndecryptableToken):
        TokenCipher([OLD_KEY]).decrypt(garbage, ROW)


def test_a_ciphertext_whose_key_id_was_swapped_fails() -> None:
    # Both keys are in the ring: relabelling a ciphertext with the other key's id must not work.
    ring = TokenCipher([OLD_KEY, NEW_KEY])
    version, _, body = ring.encrypt(SECRET, ROW).split("$")
    relabelled = f"{version}${key_id(parse_key(NEW_KEY))}${body}"

    with pytest.raises(errors.UndecryptableToken):
        ring.decrypt(relabelled, ROW)


def test_a_ciphertext_under_an_unknown_key_fails_naming_only_the_key_id() -> None:
    sealed = TokenCipher([OLD_KEY]).encrypt(SECRET, ROW)

    with pytest.raises(errors.UndecryptableToken) as raised:
        TokenCipher([NEW_KEY]).decrypt(sealed, ROW)

    assert key_id(parse_key(OLD_KEY)) in str(raised.value)
    assert OLD_KEY not in str(raised.value)
    assert NEW_KEY not in str(raised.value)


def test_a_key_ring_decrypts_with_every_key_and_encrypts_with_the_first() -> None:
    old_only = TokenCipher([OLD_KEY])
    sealed_with_old = old_only.encrypt(SECRET, ROW)
    ring = TokenCipher([NEW_KEY, OLD_KEY])

    sealed_with_new = ring.encrypt(SECRET, ROW)

    assert ring.decrypt(sealed_with_old, ROW) == SECRET
    assert ring.key_id_of(sealed_with_new) == ring.primary_key_id == key_id(parse_key(NEW_KEY))
    assert ring.is_current(sealed_with_new)
    assert not ring.is_current(sealed_with_old)
    assert ring.key_ids == [key_id(parse_key(NEW_KEY)), key_id(parse_key(OLD_KEY))]
    with pytest.raises(errors.UndecryptableToken):
        old_only.decrypt(sealed_with_new, ROW)


def test_one_key_given_bare_is_a_ring_of_one() -> None:
    assert TokenCipher(OLD_KEY).key_ids == TokenCipher([OLD_KEY]).key_ids


def test_an_empty_ring_is_a_configuration_error() -> None:
    with pytest.raises(errors.ConfigurationError, match="CLOUDSYNC_ENCRYPTION_KEYS"):
        TokenCipher([])


# A sample of malformed keys; each message must describe the fault without quoting the key.
MALFORMED_KEYS = [
    pytest.param("short-key", id="too short"),
    pytest.param(base64.urlsafe_b64encode(b"k" * 16).decode(), id="16 bytes"),
    pytest.param(base64.urlsafe_b64encode(b"k" * 64).decode(), id="64 bytes"),
    pytest.param(OLD_KEY + "!!", id="stray characters"),
    pytest.param(OLD_KEY[:20] + " " + OLD_KEY[20:], id="space inside"),
    pytest.param(OLD_KEY.rstrip("="), id="padding missing"),
    pytest.param("ключ" * 11, id="not ascii"),
    pytest.param(12345, id="not a string"),
]


@pytest.mark.parametrize("key", MALFORMED_KEYS)
def test_a_malformed_key_is_refused_without_quoting_it(key: Any) -> None:
    with pytest.raises(errors.ConfigurationError) as raised:
        TokenCipher([NEW_KEY, key])

    text = f"{raised.value} {raised.value!r} {raised.value.message}"
    assert str(key) not in text
    assert NEW_KEY not in text


def test_a_key_with_surrounding_whitespace_is_accepted() -> None:
    # Keys read from environment files often end in a newline.
    assert parse_key(f" {OLD_KEY}\n") == parse_key(OLD_KEY)


def test_a_key_given_as_bytes_is_accepted() -> None:
    assert parse_key(OLD_KEY.encode()) == parse_key(OLD_KEY)


def test_generate_key_makes_distinct_32_byte_url_safe_keys() -> None:
    keys = {generate_key() for _ in range(20)}

    assert len(keys) == 20
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", key)
        assert len(parse_key(key)) == 32
        assert TokenCipher([key]).decrypt(TokenCipher([key]).encrypt(SECRET, ROW), ROW) == SECRET


def test_the_repr_of_a_cipher_shows_key_ids_only() -> None:
    cipher = TokenCipher([NEW_KEY, OLD_KEY])

    text = repr(cipher) + str(cipher)

    for key in (NEW_KEY, OLD_KEY):
        assert key not in text
        assert key.rstrip("=") not in text
        assert parse_key(key).hex() not in text
    assert cipher.primary_key_id in text


# The binding in the model: a stored ciphertext only opens in its own row and field.


@pytest.fixture
def two_accounts(fake: Any, client: Client) -> tuple[CloudSyncToken, CloudSyncToken]:
    """Ada's and Bob's stored tokens, each from a real sign-in with the fake CloudSync."""
    fake.add_user("usr_bob", email="bob@example.com", name="Bob")
    assert sign_in(client, user_id="usr_ada").status_code == 302
    assert sign_in(Client(), user_id="usr_bob").status_code == 302
    return CloudSyncToken.objects.get(account_id="usr_ada"), CloudSyncToken.objects.get(account_id="usr_bob")


@pytest.mark.django_db
def test_stored_ciphertexts_open_only_in_their_own_row(two_accounts: Any) -> None:
    ada, bob = two_accounts

    assert ada.access_token() != bob.access_token()
    assert ada.access_token() not in ada.access_token_ciphertext


@pytest.mark.django_db
def test_a_ciphertext_copied_into_another_users_row_does_not_authenticate_that_user(
    fake: Any, two_accounts: Any
) -> None:
    ada, bob = two_accounts
    CloudSyncToken.objects.filter(pk=bob.pk).update(
        access_token_ciphertext=ada.access_token_ciphertext,
        refresh_token_ciphertext=ada.refresh_token_ciphertext,
    )
    tampered = CloudSyncToken.objects.get(pk=bob.pk)

    with pytest.raises(errors.UndecryptableToken):
        tampered.access_token()
    with pytest.raises(errors.UndecryptableToken):
        tampered.refresh_token()
    api_calls_before = sum(fake.api_calls_by_path.values())
    client = client_for(bob.user)
    assert client is not None
    with pytest.raises(errors.UndecryptableToken):
        client.me()  # Bob's client never gets to send Ada's token
    assert sum(fake.api_calls_by_path.values()) == api_calls_before


@pytest.mark.django_db
def test_a_refresh_token_copied_into_the_access_token_field_does_not_open(two_accounts: Any) -> None:
    ada, _ = two_accounts
    CloudSyncToken.objects.filter(pk=ada.pk).update(access_token_ciphertext=ada.refresh_token_ciphertext)

    with pytest.raises(errors.UndecryptableToken):
        CloudSyncToken.objects.get(pk=ada.pk).access_token()
