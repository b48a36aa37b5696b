"""Hostile input, measured: generated bad callbacks and malformed CloudSync answers thrown at the app.

Property-based tests (hypothesis), each example a real request against the real app and a real
HTTP answer from the fake CloudSync, scripted with ``FakeCloudSync.respond_next``. What must hold
for every example:

- the sign-in callback never answers 500 (the test client is told not to raise, so an unhandled
  exception shows up as a 500), and a failed sign-in is allauth's friendly failure page;
- an app's request to the headless endpoints (a code with its PKCE verifier, or an access token)
  signs in exactly when every value is the app's real one, and is otherwise allauth's 400;
- the API client and the refresh raise nothing but :class:`~django_cloudsync.errors.CloudSyncError`
  subclasses (no ``KeyError``, ``ValueError``, ``UnicodeError`` or ``requests`` exception);
- nothing is persisted from a failed flow, and a failed refresh leaves the stored row as it was;
- no token, code or client secret reaches a page, a header, an exception's ``str``/``repr`` or a log.

Which answers are valid is decided in ``oracles``, from CloudSync's documented dialect
(``docs/cloudsync-api.md``) and RFC 6749 §5.1, not by calling the code under test: a generated
answer that happens to be valid must succeed, every other one must fail cleanly.

The examples are derandomized, so every run of a hypothesis profile tests the same examples; the
profile sets how many (tests/conftest.py: about a hundred by default, a thousand with
``HYPOTHESIS_PROFILE=ci``). Database state persists across the examples of one test
(pytest-django rolls back per test, not per example), so "nothing persisted" is "the counts did
not change during the example", and an example that legitimately signs in deletes what it created.

The bugs these properties found (non-ASCII digits, deeply nested JSON, an echoed credential,
NUL characters on PostgreSQL, an unbounded redirect body) are pinned, by the smallest input that
showed each, beside the tests of the module they were in (their names start with ``test_bug_``).

``strategies`` draws the examples, ``oracles`` says what each must come to, ``examples`` sets up
what an example starts from; one test module per surface.
"""
