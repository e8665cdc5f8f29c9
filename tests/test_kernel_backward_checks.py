"""The argument checks of every backward live in kernels/shapes.py and every tier uses them: a dy
of the wrong shape or dtype is refused by each tier with the same message (the cuda tier's copy is
tests/cuda/test_cuda_backward_checks.py). Before this, the reference Winograd backward computed
dx from a dy of any shape."""
import numpy as np
import pytest

from kernels import get_backend
from kernels.shapes import ConvGeometry

TIERS = ("reference", "cpu")


def _message(fn):
    with pytest.raises(ValueError) as e:
        fn()
    return str(e.value)


def conv_cases(be):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((6, 4, 3, 3))
    hp = dict(geometry=ConvGeometry(stride=(1, 1), padding=(1, 1), groups=1))
    bad_shape, bad_dtype = np.zeros((2, 6, 5, 6)), np.zeros((2, 6, 6, 6), np.float32)
    out = {}
    for algo in ("conv2d", "winograd"):
        for what, dy in (("shape", bad_shape), ("dtype", bad_dtype)):
            for need_dw in (True, False):
                out[(algo, what, need_dw)] = _message(
                    lambda: getattr(be, algo).conv2d_backward(dy, x, w, need=("dx",) + ("dw",) * need_dw, **hp))
    return out


def test_conv2d_and_winograd_backward_refuse_a_wrong_dy_alike_in_every_tier():
    msgs = {t: conv_cases(get_backend(t)) for t in TIERS}
    for key, m in msgs["reference"].items():
        assert "dy (2, 6, " in m and "must be (2, 6, 6, 6) float64" in m, (key, m)
        assert msgs["cpu"][key] == m, (key, msgs["cpu"][key], m)


def test_linear_softmax_and_lrn_backward_refuse_a_wrong_dy_alike_in_every_tier():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    y = np.full((3, 4), 0.25)
    xl = rng.standard_normal((2, 6, 3, 3))
    seen = {}
    for t in TIERS:
        be = get_backend(t)
        seen[t] = (
            _message(lambda: be.linear.linear_backward(np.zeros((3, 5)), x, w)),
            _message(lambda: be.linear.linear_backward(np.zeros((3, 4), np.float32), x, w)),
            _message(lambda: be.softmax.softmax_backward(np.zeros((3, 5)), y)),
            _message(lambda: be.lrn.lrn_backward(np.zeros((2, 6, 3, 2)), xl, xl, xl + 1, size=5, alpha=1e-4,
                                                 beta=0.75)),
        )
    assert "linear_backward: dy must be (N, K) = (3, 4)" in seen["reference"][0]
    assert "softmax_backward: dy (3, 5) and y (3, 4)" in seen["reference"][2]
    assert "lrn_backward: dy (2, 6, 3, 2)" in seen["reference"][3]
    assert seen["cpu"] == seen["reference"]
