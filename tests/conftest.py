"""Suite-wide settings.

Hypothesis: no per-example deadline. The suite runs on shared, loaded machines, and a deadline
is a wall-clock assertion; each test's own limit is pytest-timeout's.
"""

from hypothesis import settings

settings.register_profile("magpie", deadline=None)
settings.load_profile("magpie")
