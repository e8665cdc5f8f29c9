"""Strict JSON out of results that hold NaN, Inf and numpy scalars.

`json.dump` writes NaN and Infinity, which strict JSON readers refuse. Undefined metrics (a
sensitivity with no positives), the ROC's first threshold (+inf) and the like are written as null.
"""
import math

import numpy as np


def finite_or_null(v):
    """v with NaN / +-Inf floats as None and numpy scalars as Python ones, dicts and lists walked."""
    if isinstance(v, dict):
        return {k: finite_or_null(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite_or_null(u) for u in v]
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v
