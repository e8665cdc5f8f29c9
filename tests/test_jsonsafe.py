"""rawcnn.files.jsonsafe.finite_or_null: strict JSON out of results with NaN, Inf and numpy scalars."""
import json
import math

import numpy as np

from rawcnn.files.jsonsafe import finite_or_null


def test_nan_and_inf_become_null_numpy_scalars_python_and_containers_are_walked():
    v = {"auc": float("nan"), "thr": [float("inf"), 0.5, -math.inf], "n": np.int64(3), "f": np.float32(0.25),
         "g": np.float64("nan"), "t": (1, float("nan")), "s": "x", "b": True, "none": None}
    out = finite_or_null(v)
    assert out == {"auc": None, "thr": [None, 0.5, None], "n": 3, "f": 0.25, "g": None, "t": [1, None],
                   "s": "x", "b": True, "none": None}
    assert type(out["n"]) is int and type(out["f"]) is float
    json.loads(json.dumps(out, allow_nan=False))  # strict JSON
