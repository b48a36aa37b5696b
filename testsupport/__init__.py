"""What the tests and the benchmarks share, so that neither imports the other.

- ``routers``: the database router that moves every model to the alias the running code selected
  (the PostgreSQL tests and benchmarks).
- ``baseline``: a CloudSync provider built the way allauth builds its own, the yardstick that the
  sign-in benchmark reports against and that ``tests/test_counts.py`` asserts against.

Not part of the published package (``MANIFEST.in`` prunes it); importable from the repository's
root, as ``tests`` and ``benchmarks`` are.
"""
