"""The transports and the path check, given anything: a body in any content coding (honest,
corrupt, cut short, stacked, unknown), small or far past the limit on the wire or once inflated,
to the sync call or its async twin; and any path made of dots, slashes, encoded dots and slashes,
percent signs and semicolons.

The client returns the profile or raises exactly the typed error the oracle names (never a
``zlib.error``, an ``httpx2`` or ``urllib3`` exception); a path is refused, or whatever a server
decodes it to (once, or twice) stays under ``/v1/``.
"""

from __future__ import annotations

import gzip
import json
import posixpath
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pytest
from asgiref.sync import async_to_sync
from hypothesis import event, given
from hypothesis import strategies as st

from django_cloudsync import errors, wire
from django_cloudsync.client import CloudSync
from tests.helpers import JSON_HEADERS, RESPONSE_LIMIT
from tests.hostile.strategies import HOSTILE

# -- answers in content codings ------------------------------------------------------------------

CODINGS = ["", "identity", "gzip", "x-gzip", "deflate", "GZIP", "gzip, gzip", "deflate, gzip", "br", "zstd"]


@dataclass(frozen=True)
class Encoded:
    """A profile answer: its JSON document, padded, in ``coding``, maybe damaged on its way
    (``"truncated"``, ``"corrupt"``: bytes flipped)."""

    document: Any
    padding: int
    coding: str
    damage: str

    def decoded(self) -> bytes:
        return json.dumps(self.document).encode() + b" " * self.padding

    def wire(self) -> bytes:
        data = self.decoded()
        for coding in reversed([c.strip().lower() for c in self.coding.split(",") if c.strip()]):
            if coding in ("gzip", "x-gzip"):
                data = gzip.compress(data)
            elif coding == "deflate":
                data = zlib.compress(data)
        if self.damage == "truncated" and self.compressed:
            data = data[: len(data) // 2]
        elif self.damage == "corrupt" and self.compressed:
            data = data[:10] + bytes(b ^ 0x5A for b in data[10:30]) + data[30:]
        return data

    @property
    def compressed(self) -> bool:
        return self.coding.strip().lower() not in ("", "identity")

    def expected(self) -> type[errors.CloudSyncError] | None:
        """The error the client raises, by the transports' rules (``None``: it returns)."""
        codings = [
            c.strip().lower() for c in self.coding.split(",") if c.strip().lower() not in ("", "identity")
        ]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            return errors.InvalidResponse  # stacked or not asked for
        if len(self.wire()) > RESPONSE_LIMIT:
            return errors.InvalidResponse
        if self.compressed and self.damage != "none":
            return errors.InvalidResponse
        if len(self.decoded()) > RESPONSE_LIMIT:
            return errors.InvalidResponse  # the bomb: small on the wire, too big inflated
        document = self.document
        valid = isinstance(document, dict) and isinstance(document.get("id"), str) and bool(document["id"])
        return None if valid else errors.InvalidResponse


def mostly(usual: st.SearchStrategy[Any], unusual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four (``one_of`` does not weigh a strategy given twice)."""
    return st.integers(0, 3).flatmap(lambda pick: usual if pick else unusual)


documents = mostly(
    st.fixed_dictionaries({"id": st.text(min_size=1, max_size=20), "name": st.text(max_size=20)}),
    st.one_of(
        st.fixed_dictionaries({"id": st.one_of(st.none(), st.integers(), st.just(""))}),
        st.lists(st.integers(), max_size=3),
    ),
)
encoded_answers = st.builds(
    Encoded,
    document=documents,
    # Up to four times the limit: past it on the wire when sent as is, and inflated when compressed.
    padding=mostly(st.integers(0, 64), st.integers(RESPONSE_LIMIT - 64, 4 * RESPONSE_LIMIT)),
    coding=st.sampled_from(CODINGS),
    damage=mostly(st.just("none"), st.sampled_from(["truncated", "corrupt"])),
)


@HOSTILE
@given(answer=encoded_answers, twin=st.booleans())
def test_any_content_coding_is_decoded_bounded_or_refused_typed(
    hostile_settings: Any, answer: Encoded, twin: bool
) -> None:
    fake = hostile_settings
    api = CloudSync(access_token=fake.issue_tokens()["access_token"])
    headers = [*JSON_HEADERS, *([("Content-Encoding", answer.coding)] if answer.coding else [])]
    fake.respond_next("me", 200, answer.wire(), headers)
    expected = answer.expected()
    calls_before = fake.counters["api_calls"]

    try:
        profile = async_to_sync(api.ame)() if twin else api.me()
    except errors.CloudSyncError as exc:
        raised: type[errors.CloudSyncError] | None = type(exc)
    else:
        raised = None
        assert profile == answer.document

    event(f"{'async' if twin else 'sync'}: {raised.__name__ if raised else 'returned'}")
    assert raised is expected, f"{raised} for {answer.coding!r}/{answer.damage}, expected {expected}"
    assert fake.counters["api_calls"] == calls_before + 1  # no retries under hostile_settings


# -- paths ---------------------------------------------------------------------------------------

#: Pieces of a path: the ordinary, and every way of writing a dot, a slash, a backslash, a
#: semicolon or a percent sign that some server decodes (one piece in four).
ORDINARY = ["v1", "files", "me", "a", "report.v2.json", "/", "//", "%20", "%41", "?q=%2f;x"]
TRICKY = [".", "..", ";", "\\", "#", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%3b", "%25", "%252e", "%00"]
pieces = mostly(st.sampled_from(ORDINARY), st.sampled_from(TRICKY))
paths = st.builds(
    lambda head, rest: head + "".join(rest),
    mostly(st.just("/v1/"), st.sampled_from(["/v1", "/", "//", ""])),
    st.lists(pieces, max_size=8),
)


def what_a_server_sees(path: str, decodings: int) -> str:
    """The path part as a server that decodes it ``decodings`` times routes it, normalised."""
    route = path.split("?", 1)[0]
    for _ in range(decodings):
        route = unquote(route)
    return posixpath.normpath(route.replace("\\", "/"))


@HOSTILE
@given(path=paths)
def test_a_path_is_refused_or_stays_under_v1_however_a_server_decodes_it(path: str) -> None:
    try:
        wire.check_path(path)
    except ValueError:
        event("refused")
        return
    event("accepted")
    route = path.split("?", 1)[0]
    assert ";" not in route
    assert "\\" not in route
    for decodings in (0, 1, 2):
        seen = what_a_server_sees(path, decodings)
        assert seen.startswith(wire.API_ROOT), f"{path!r} reaches {seen!r} after {decodings} decodings"
        assert ".." not in seen.split("/")


@pytest.mark.parametrize("path", ["/v1/files/..%2F..%2Fx", "/v1/files/%2e%2e%2fx", "/v1/files;x=1"])
def test_the_review_s_paths_are_among_those_refused(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        wire.check_path(path)
