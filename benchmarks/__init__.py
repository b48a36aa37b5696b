"""django-cloudsync's benchmarks: counts and ratios, side by side with the hand-rolled alternative.

Run them with ``python -m benchmarks`` from the repository's root; see ``benchmarks/README.md``.
"""
