"""The one test of "is this a number we can compute with"."""

from __future__ import annotations

import math
import numbers


def finite(value) -> bool:
    """True for a finite real number (Python's or numpy's); False for None, NaN, ±inf, booleans,
    strings and anything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
