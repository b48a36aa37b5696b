"""Optional glue for API frameworks: :mod:`.drf` (Django REST framework) and :mod:`.ninja`.

Each imports its framework only when it is itself imported; this package imports neither.
"""
