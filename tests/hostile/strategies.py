"""How the hostile examples are drawn: CloudSync's answers (scripted for ``FakeCloudSync.respond_next``),
callbacks a browser could send, and requests an app could post.

A value only known while an example runs (a token the fake just issued, the app's PKCE verifier,
this browser's state) is drawn as a placeholder (:class:`Secret`, :class:`AppValue`, :class:`Marker`)
and filled in by :func:`materialize` or the test, so that hypothesis can still shrink the example.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import django
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from django_cloudsync import dialect
from django_cloudsync.models import MAX_ACCOUNT_ID_LENGTH
from tests.helpers import RESPONSE_LIMIT

T = TypeVar("T")

#: RFC 6749 §5.1 as this app documents it (``django_cloudsync.oauth``): at most ten years.
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600
MAX_SCOPE_LENGTH = 2048

#: The settings of every property: the example count comes from the hypothesis profile
#: (tests/conftest.py). Derandomized, so that a run of a profile tests what every other run of it tests.
HOSTILE = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)


def fewer_examples(divisor: int) -> settings:
    """``HOSTILE`` with a ``divisor``-th of the profile's examples, for the slower properties."""
    return settings(HOSTILE, max_examples=max(1, HOSTILE.max_examples // divisor))


# --------------------------------------------------------------------------- secrets and markers


class Secret(enum.Enum):
    """A placeholder in a generated answer for a value only known when the example runs."""

    ACCESS_TOKEN = "access token"  # freshly issued by the fake, so a valid answer can sign in
    REFRESH_TOKEN = "refresh token"
    CLIENT_SECRET = "client secret"  # what a server echoing our request back would echo
    STORED_ACCESS_TOKEN = "stored access token"  # the credential of the API client under test
    STORED_REFRESH_TOKEN = "stored refresh token"
    CODE = "authorization code"  # a secret too: with the PKCE verifier it buys tokens


class Absent(enum.Enum):
    """A field left out of a generated JSON object."""

    FIELD = "absent"


ABSENT = Absent.FIELD


def materialize(value: Any, secrets: Mapping[Any, str]) -> Any:
    """``value`` with every :class:`Secret` (or :class:`AppValue`, or :class:`Near` miss of one)
    replaced and every absent field dropped."""
    if isinstance(value, (Secret, AppValue)):
        return secrets[value]
    if isinstance(value, Near):
        return value.of(secrets[value.value])
    if isinstance(value, dict):
        return {
            materialize(key, secrets): materialize(item, secrets)
            for key, item in value.items()
            if item is not ABSENT
        }
    if isinstance(value, list):
        return [materialize(item, secrets) for item in value]
    return value


# --------------------------------------------------------------------------- scripted answers


@dataclass(frozen=True)
class JsonBody:
    """A JSON document (possibly with :class:`Secret` placeholders), encoded and padded."""

    value: Any
    codec: str = "utf-8"
    ensure_ascii: bool = True
    #: Trailing whitespace: still valid JSON, but it can push the body over the size limit.
    padding: int = 0


@dataclass(frozen=True)
class RawBody:
    data: bytes


@dataclass(frozen=True)
class Answer:
    """One scripted HTTP answer; header values may hold :class:`Secret` placeholders."""

    status: int
    content_type: str | None
    body: JsonBody | RawBody
    headers: tuple[tuple[str, str | Secret | tuple[str | Secret, ...]], ...] = ()

    def render(self, secrets: Mapping[Secret, str]) -> tuple[int, bytes, list[tuple[str, str]]]:
        """``(status, body, headers)`` for ``FakeCloudSync.respond_next``."""
        if isinstance(self.body, JsonBody):
            text = json.dumps(materialize(self.body.value, secrets), ensure_ascii=self.body.ensure_ascii)
            body = text.encode(self.body.codec, "replace") + b" " * self.body.padding
        else:
            body = self.body.data
        headers = [("Content-Type", self.content_type)] if self.content_type is not None else []
        for name, value in self.headers:
            parts = value if isinstance(value, tuple) else (value,)
            headers.append((name, "".join(secrets[p] if isinstance(p, Secret) else p for p in parts)))
        if self.status in (204, 304):
            body = b""  # HTTP: these answers have no body
        elif any(name.lower() == "content-encoding" for name, _ in headers):
            body = b"not gzip: " + body  # never a valid stream: decoding it must fail
        return self.status, body, headers


# --------------------------------------------------------------------------- token and error answers

TOKEN_ALPHABET = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/")
token_like = st.text(TOKEN_ALPHABET, min_size=1, max_size=43)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)
#: Header values HTTP/1.1 can carry: one line of Latin-1.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
retry_after_text = header_text  # with ¹ ² ³, which str.isdigit() accepts and float() does not

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=utf-16",
        "application/problem+json",
        "APPLICATION/JSON",
        "text/json",
        "text/html; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json, text/html",
        "",
    ]
)
JSON_CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8"])

access_tokens = st.one_of(
    st.just(Secret.ACCESS_TOKEN),
    st.just(ABSENT),
    json_values,
    token_like.map(lambda s: "at_test_" + s),
    st.sampled_from(
        [
            "",
            " ",
            "at_test_has space",
            "at_test_new\nline",
            "at_test_x\r\nX-Injected: yes",
            "at_test_" + "a" * 4089,  # 4097 characters
            "at_test_é",
            "Bearer at_test_abc",
            "at_test_\x00",
        ]
    ),
)
token_types = st.one_of(
    st.sampled_from(
        [ABSENT, "Bearer", "bearer", "BEARER", "mac", "", None, 123, ["Bearer"], "Bearer ", "DPoP"]
    ),
    st.text(max_size=8),
)
expires_ins = st.one_of(
    st.sampled_from(
        [
            ABSENT,
            None,
            3600,
            "3600",
            1,
            0,
            -1,
            -3600,
            MAX_EXPIRES_IN,
            MAX_EXPIRES_IN + 1,
            10**20,
            3600.0,
            3600.5,
            "3600.5",
            "abc",
            "",
            " 3600",
            "-1",
            "0",
            True,
            False,
            [3600],
            {"seconds": 3600},
            float("nan"),
            float("inf"),
        ]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["²", "¹²", "9" * 5000]),
)
refresh_tokens = st.one_of(
    st.sampled_from(
        [ABSENT, None, Secret.REFRESH_TOKEN, "", 123, "rt_test_has space", "rt_test_é", ["rt_test_x"]]
    ),
    token_like.map(lambda s: "rt_test_" + s),
    json_values,
)
scopes = st.one_of(
    st.sampled_from(
        [
            ABSENT,
            None,
            "workspaces:read offline_access",
            "",
            "x" * MAX_SCOPE_LENGTH,
            "x" * (MAX_SCOPE_LENGTH + 1),
            123,
            ["workspaces:read"],
            {"a": 1},
            "workspaces:read\nfiles:write",
            "workspaces:read\x00",
        ]
    ),
    st.text(max_size=30),
)
#: What a server echoing our request back could put into an error: the credentials we sent it
#: (the code at sign-in, the stored refresh token in a refresh; the other is "" there).
echoed_credentials = st.sampled_from([Secret.CLIENT_SECRET, Secret.CODE, Secret.STORED_REFRESH_TOKEN])
error_codes = st.one_of(
    st.just(dialect.INVALID_GRANT),  # the one code that changes what the app does
    st.sampled_from(
        [
            ABSENT,
            "invalid_client",
            "invalid_request",
            "unsupported_grant_type",
            "",
            None,
            400,
        ]
    ),
    st.text(max_size=20),
    json_values,
    echoed_credentials,
)
error_descriptions = st.one_of(
    st.sampled_from([ABSENT, None, "<script>alert(1)</script>", "x" * 5000, "line\r\nbreak", 42]),
    st.text(max_size=40),
    echoed_credentials,
)
#: A valid token response, field by field (what a broken field replaces).
VALID_TOKEN_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "access_token": st.just(Secret.ACCESS_TOKEN),
    "token_type": st.sampled_from(["Bearer", "bearer", "BEARER"]),
    "expires_in": st.sampled_from([3600, "3600", 1, MAX_EXPIRES_IN, ABSENT, None]),
    "refresh_token": st.sampled_from([Secret.REFRESH_TOKEN, ABSENT, None]),
    "scope": st.sampled_from(["workspaces:read offline_access", "", ABSENT, None]),
}
HOSTILE_TOKEN_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "access_token": access_tokens,
    "token_type": token_types,
    "expires_in": expires_ins,
    "refresh_token": refresh_tokens,
    "scope": scopes,
}


@st.composite
def token_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A token response with some of its fields broken (none, one, or several), and extra fields."""
    broken = draw(st.sets(st.sampled_from(sorted(HOSTILE_TOKEN_FIELDS))))
    fields = {
        name: draw(HOSTILE_TOKEN_FIELDS[name] if name in broken else VALID_TOKEN_FIELDS[name])
        for name in sorted(HOSTILE_TOKEN_FIELDS)
    }
    extras = draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3))
    return {**extras, **fields}


error_objects = st.fixed_dictionaries({"error": error_codes, "error_description": error_descriptions})


def json_bodies(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[JsonBody]:
    return st.builds(
        JsonBody,
        documents,
        codec=st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32", "latin-1", "utf-8-sig"]),
        ensure_ascii=st.booleans(),
        padding=st.one_of(st.just(0), st.integers(RESPONSE_LIMIT, RESPONSE_LIMIT + 1024)),
    )


def nested(opening: bytes, depth: int) -> bytes:
    return opening * depth


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"   ",
            b"null",
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            b'{"access_token": "at_test_',
            b"\xef\xbb\xbf{}",
            b'{"a": NaN}',
            b"[" * 50 + b"]" * 50,
        ]
    ),
    st.builds(lambda n: b"x" * n, st.integers(RESPONSE_LIMIT + 1, RESPONSE_LIMIT + 4096)),
    st.builds(
        lambda text, cut: text.encode()[:cut], st.text(max_size=60).map(json.dumps), st.integers(0, 60)
    ),
    st.builds(nested, st.sampled_from([b"[", b'{"a":']), st.integers(1000, RESPONSE_LIMIT // 5)),
)
extra_headers = st.lists(
    st.one_of(
        st.tuples(st.just("Content-Encoding"), st.sampled_from(["gzip", "deflate"])),
        st.tuples(st.just("X-Odd"), header_text),
        st.tuples(st.just("Location"), st.just("http://evil.example/steal")),
    ),
    max_size=1,
).map(tuple)


def answers(
    statuses: list[int],
    documents: st.SearchStrategy[Any],
    error_documents: st.SearchStrategy[Any],
    *,
    headers: st.SearchStrategy[Any] = extra_headers,
) -> st.SearchStrategy[Answer]:
    """A third near-misses (a 2xx JSON answer carrying one of ``documents``, so that a broken field
    is often the only thing wrong and valid answers come up too), a third well-formed error
    answers (a 4xx or 5xx JSON body of ``error_documents``, with ``headers``), a third anything at
    all: any of ``statuses``, any content type, a body of either kind, of any JSON, or raw bytes."""
    near_misses = st.builds(
        Answer,
        status=st.sampled_from([200, 200, 201]),
        content_type=JSON_CONTENT_TYPES,
        body=st.builds(JsonBody, documents),
        headers=st.just(()),
    )
    error_answers = st.builds(
        Answer,
        status=st.sampled_from([status for status in statuses if status >= 400]),
        content_type=JSON_CONTENT_TYPES,
        body=st.builds(JsonBody, error_documents),
        headers=headers,
    )
    bodies = st.one_of(documents, error_documents)
    anything = st.builds(
        Answer,
        status=st.sampled_from(statuses),
        content_type=st.one_of(JSON_CONTENT_TYPES, CONTENT_TYPES),
        body=st.one_of(json_bodies(bodies), json_bodies(json_values), st.builds(RawBody, raw_bodies)),
        headers=headers,
    )
    return st.one_of(near_misses, error_answers, anything)


TOKEN_STATUSES = [200, 201, 400, 401, 403, 404, 429, 500, 502, 503]
token_answers = answers(TOKEN_STATUSES, token_objects(), error_objects)


# --------------------------------------------------------------------------- callbacks


class Marker(enum.Enum):
    """Callback values that only exist while the example runs."""

    STATE = "a real state, started in this browser"
    FOREIGN_STATE = "a real state, started in another browser"
    ISSUER = "the configured authorization server"


PARAMETER_NAMES = st.one_of(
    st.sampled_from(
        [
            "code",
            "state",
            "error",
            "error_description",
            "error_uri",
            "iss",
            "_redir",
            "process",
            "next",
            "scope",
        ]
    ),
    st.text(max_size=10),
)
GENERATED_VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "access_denied",
            "invalid_scope",
            "server_error",
            "temporarily_unavailable",
            "<script>alert(1)</script>",
            "https://evil.example",
            "http://127.0.0.1:1/",
            "javascript:alert(1)",
            "//evil.example",
        ]
    ),
    st.text(max_size=40),
    st.builds(lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(1000, 8000)),
    # Token-like values: the callback page must never echo what it was sent.
    token_like.map(lambda s: "at_test_" + s),
    token_like.map(lambda s: "rt_test_" + s),
)
PARAMETER_VALUES = st.one_of(
    st.sampled_from([Marker.STATE, Marker.FOREIGN_STATE, Marker.ISSUER]), GENERATED_VALUES
)
ENCODINGS = ["percent", "plus", "raw", "latin-1", "bare", "bad-percent"]
BAD_PERCENT = [b"%", b"%z", b"%zz", b"%ff%fe", b"%C3", b"%00", b"%%", b"%E2%82"]


@dataclass(frozen=True)
class Parameter:
    name: str
    value: str | Marker
    encoding: str
    repeat: int
    damage: bytes


parameters = st.builds(
    Parameter,
    name=PARAMETER_NAMES,
    value=PARAMETER_VALUES,
    encoding=st.sampled_from(ENCODINGS),
    repeat=st.integers(1, 3),
    damage=st.sampled_from(BAD_PERCENT),
)
#: A callback that could almost be real: this browser's state and a code that is not CloudSync's,
#: among other parameters. It gets past the state check to the code exchange and the fake's refusal.
near_miss_callbacks = st.builds(
    lambda code, others: [Parameter("state", Marker.STATE, "percent", 1, b""), code, *others],
    st.builds(
        Parameter,
        name=st.just("code"),
        value=GENERATED_VALUES,
        encoding=st.sampled_from(ENCODINGS),
        repeat=st.integers(1, 2),
        damage=st.sampled_from(BAD_PERCENT),
    ),
    st.lists(parameters, max_size=3),
)


@dataclass(frozen=True)
class Query:
    """A callback's raw query string, built from parts so that hypothesis can shrink it."""

    parameters: tuple[Parameter, ...] = ()
    separator: bytes = b"&"
    #: Extra ``state=flood`` fields: past DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) Django refuses them.
    flood: int = 0
    #: Bytes of no structure at all, in front of everything else.
    garbage: bytes = b""

    def encode(self, resolve: Callable[[str | Marker], str]) -> str:
        """The WSGI ``QUERY_STRING``: the bytes on the wire, decoded as Latin-1 (PEP 3333)."""
        fields = [encode_parameter(p, resolve(p.value)) for p in self.parameters for _ in range(p.repeat)]
        raw = self.garbage + self.separator.join(fields) + b"&state=flood" * self.flood
        return raw.decode("latin-1")


queries = st.one_of(
    st.builds(Query, near_miss_callbacks.map(tuple), st.sampled_from([b"&", b";"])),
    st.builds(
        Query,
        st.lists(parameters, max_size=6).map(tuple),
        st.sampled_from([b"&", b";", b"&&"]),
        # Django 4.2 answers more than DATA_UPLOAD_MAX_NUMBER_FIELDS with a 500 of its own (its
        # error mail handler re-reads request.GET); 5.0 and later refuse them with a 400.
        st.one_of(st.just(0), st.integers(990, 1100) if django.VERSION >= (5, 0) else st.integers(0, 900)),
    ),
    st.builds(Query, garbage=st.binary(max_size=200)),
)


def encode_parameter(parameter: Parameter, value: str) -> bytes:
    name = parameter.name
    if parameter.encoding == "percent":
        return f"{quote(name, safe='')}={quote(value, safe='')}".encode("ascii")
    if parameter.encoding == "plus":
        return f"{quote_plus(name)}={quote_plus(value)}".encode("ascii")
    if parameter.encoding == "raw":  # unescaped UTF-8: may break up the query on & = #
        return f"{name}={value}".encode()
    if parameter.encoding == "latin-1":
        return (
            f"{quote(name, safe='')}={quote(value, safe='', encoding='latin-1', errors='replace')}".encode()
        )
    if parameter.encoding == "bare":
        return quote(name, safe="").encode("ascii")
    encoded = quote(value, safe="").encode("ascii")
    middle = len(encoded) // 2
    return (
        quote(name, safe="").encode("ascii") + b"=" + encoded[:middle] + parameter.damage + encoded[middle:]
    )


# --------------------------------------------------------------------------- profiles and API answers

api_error_codes = st.one_of(
    st.just(dialect.INVALID_GRANT),  # the one code that changes what the app does
    st.sampled_from(
        [
            ABSENT,
            None,
            "invalid_token",
            "insufficient_scope",
            "rate_limited",
            "x" * 65,
            "has space",
            {"code": "nested", "message": "a message"},
            {"code": ["no"], "message": 5},
        ]
    ),
    st.text(max_size=20),
    json_values,
    st.just(Secret.STORED_ACCESS_TOKEN),
)
api_error_texts = st.one_of(
    st.sampled_from([ABSENT, None, "<script>alert(1)</script>", "x" * 5000, "line\r\nbreak\x00", 42]),
    st.text(max_size=40),
    # A token echoed in a description: the client must scrub it.
    st.just(Secret.STORED_ACCESS_TOKEN),
    st.just(["the token was", Secret.STORED_ACCESS_TOKEN]),
)
api_error_objects = st.fixed_dictionaries(
    {"error": api_error_codes, "error_description": api_error_texts, "message": api_error_texts}
)

account_ids = st.one_of(
    st.sampled_from(
        [
            ABSENT,
            None,
            "",
            " ",
            "usr_hostile",
            "u" * MAX_ACCOUNT_ID_LENGTH,
            "u" * (MAX_ACCOUNT_ID_LENGTH + 1),
            123,
            ["usr_x"],
            {"id": "usr_x"},
            "usr_é",
            "usr_<b>",
            "usr_\x00",
        ]
    ),
    st.text(max_size=30),
)
emails = st.one_of(
    st.sampled_from(
        [
            ABSENT,
            None,
            "",
            "not-an-email",
            "a@b",
            "hostile@example.com",
            "x" * 300 + "@example.com",
            "<script>@example.com",
            "a\x00@example.com",
            123,
            ["a@example.com"],
        ]
    ),
    st.text(max_size=30),
)
names = st.one_of(
    st.sampled_from(
        [ABSENT, None, "", "N" * 1000, 123, ["not", "a", "string"], {"first": "A"}, "Ada Lovelace", "Ada\x00"]
    ),
    st.text(max_size=40),
)
profiles = st.builds(
    lambda extras, fields: {**extras, **fields},
    st.dictionaries(st.text(max_size=12), json_values, max_size=3),
    st.fixed_dictionaries({"id": account_ids, "email": emails, "name": names}),
)
API_STATUSES = [200, 200, 201, 204, 299, 301, 400, 401, 403, 404, 418, 429, 500, 502, 503, 599]
profile_answers = answers(API_STATUSES, profiles, api_error_objects)

workspace_lists = st.one_of(
    st.fixed_dictionaries(
        {
            "data": st.one_of(
                st.lists(
                    st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=3), json_values),
                    max_size=4,
                ),
                json_values,
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "data": st.lists(
                st.fixed_dictionaries({"id": st.text(max_size=8), "name": st.text(max_size=8)}), max_size=3
            )
        }
    ),
)
retry_afters = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "5",
            "-1",
            "1.5",
            " 7 ",
            "9" * 400,
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 99 Foo 99999 99:99:99 +9999",
            "Sun, 06 Nov 1994 08:49:37 +2400",
            "Sun, 06 Nov 0001 08:49:37 -2359",
            "now",
        ]
    ),
    retry_after_text,
    st.sampled_from(["²", "¹", "³0"]),
)
challenges = st.one_of(
    st.sampled_from(
        [
            'Bearer error="invalid_token"',
            'Bearer error="insufficient_scope", scope="workspaces:read files:write"',
            "Bearer",
            'Basic realm="x"',
            'Bearer error="\\"',
            'Bearer scope="' + "s " * 100 + '"',
            'Bearer error_description="<b>x</b>", error=',
            'Bearer realm="a", Bearer error="twice"',
        ]
    ),
    header_text.map(lambda text: "Bearer " + text),
    st.sampled_from(
        [
            ('Bearer error_description="', Secret.STORED_ACCESS_TOKEN, '"'),
            ('Bearer scope="', Secret.STORED_ACCESS_TOKEN, '"'),
        ]
    ),
    st.just(('Bearer error="', Secret.STORED_ACCESS_TOKEN, '"')),
)
api_headers = st.lists(
    st.one_of(
        st.tuples(st.just("Retry-After"), retry_afters),
        st.tuples(st.just("WWW-Authenticate"), challenges),
        st.tuples(st.just("Content-Encoding"), st.sampled_from(["gzip", "deflate"])),
        st.tuples(st.just("Location"), st.just("http://evil.example/steal")),
        st.tuples(st.just("X-Odd"), header_text),
    ),
    max_size=2,
).map(tuple)
api_answers = answers(
    API_STATUSES, st.one_of(profiles, workspace_lists), api_error_objects, headers=api_headers
)


# --------------------------------------------------------------------------- requests from apps


class AppValue(enum.Enum):
    """A value of an app's real authorization, only known when the example runs."""

    CLIENT_ID = "the site's client_id"
    CODE = "the code CloudSync sent the app"
    CODE_VERIFIER = "the app's PKCE verifier"
    REDIRECT_URI = "the app's redirect URI"
    ACCESS_TOKEN = "an access token CloudSync issued"


#: The app's secrets: none may show in an answer or a log.
APP_SECRETS = (AppValue.CODE, AppValue.CODE_VERIFIER, AppValue.ACCESS_TOKEN)

NEAR_CHANGES: dict[str, Callable[[str], str]] = {
    "suffix": lambda real: real + "x",
    "truncated": lambda real: real[:-1],
    "upper": str.upper,
    "padded": lambda real: f" {real} ",
    "newline": lambda real: real + "\n",
    "slash": lambda real: real + "/",
    "doubled": lambda real: real * 2,
}


@dataclass(frozen=True)
class Near:
    """A near miss of a real value: one character more or less, another case, whitespace..."""

    value: AppValue
    change: str

    def of(self, real: str) -> str:
        return NEAR_CHANGES[self.change](real)


def mostly(usual: st.SearchStrategy[T], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else ``other`` (``st.one_of`` would pick evenly)."""
    return st.integers(1, 5).flatmap(lambda n: usual if n > 1 else other)


def app_field(value: AppValue) -> st.SearchStrategy[Any]:
    """The real value (four times in five: most examples get one field wrong, not all of them),
    else a near miss, anything JSON, or nothing."""
    miss = st.one_of(
        st.builds(Near, st.just(value), st.sampled_from(sorted(NEAR_CHANGES))),
        json_values,
        token_like,
        st.just(ABSENT),
    )
    return mostly(st.just(value), miss)


def app_body(token_fields: dict[str, st.SearchStrategy[Any]], **top: st.SearchStrategy[Any]) -> Any:
    """A request body: mostly a JSON object with a ``token`` object of ``token_fields``."""
    token = st.builds(
        lambda fields, extra: {**extra, **fields},
        st.fixed_dictionaries(token_fields),
        st.dictionaries(st.text(max_size=12), json_values, max_size=2),
    )
    process = mostly(st.just("login"), st.one_of(st.just("connect"), json_values, st.just(ABSENT)))
    objects = st.fixed_dictionaries(
        {"process": process, "token": mostly(token, st.one_of(json_values, st.just(ABSENT))), **top}
    )
    return mostly(objects, st.one_of(json_values, st.binary(max_size=40)))


code_bodies = app_body(
    {
        "client_id": app_field(AppValue.CLIENT_ID),
        "code": app_field(AppValue.CODE),
        "code_verifier": app_field(AppValue.CODE_VERIFIER),
        "redirect_uri": st.one_of(
            app_field(AppValue.REDIRECT_URI), st.just("https://app.example.com/oauth/cloudsync")
        ),
    }
)
token_bodies = app_body(
    {
        "client_id": app_field(AppValue.CLIENT_ID),
        "access_token": app_field(AppValue.ACCESS_TOKEN),
        "scope": mostly(st.sampled_from([ABSENT, "workspaces:read offline_access"]), json_values),
        "id_token": mostly(st.just(ABSENT), json_values),
    },
    provider=mostly(st.just("cloudsync"), json_values),
)
