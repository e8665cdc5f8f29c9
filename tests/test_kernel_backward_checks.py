"""The argument checks of every backward live in kernels/shapes.py and every tier uses them: a dy
of the wrong shape or dtype, or a need= or out= conv2d_backward and linear_backward cannot take, is
refused by each tier with the same message (the cuda tier's copy is
tests/cuda/test_cuda_backward_checks.py). Before this, the reference Winograd backward computed
dx from a dy of any shape."""
import numpy as np
import pytest

from kernels import get_backend
from kernels.shapes import ConvGeometry

TIERS = ("reference", "cpu")


def _message(fn, *args, **kwargs):
    """The message of the ValueError that fn(*args, **kwargs) raises."""
    with pytest.raises(ValueError) as e:
        fn(*args, **kwargs)
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
                out[(algo, what, need_dw)] = _message(getattr(be, algo).conv2d_backward, dy, x, w,
                                                      need=("dx",) + ("dw",) * need_dw, **hp)
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
            _message(be.linear.linear_backward, np.zeros((3, 5)), x, w),
            _message(be.linear.linear_backward, np.zeros((3, 4), np.float32), x, w),
            _message(be.softmax.softmax_backward, np.zeros((3, 5)), y),
            _message(be.lrn.lrn_backward, np.zeros((2, 6, 3, 2)), xl, xl, xl + 1, size=5, alpha=1e-4, beta=0.75),
        )
    assert "linear_backward: dy must be (N, K) = (3, 4)" in seen["reference"][0]
    assert "softmax_backward: dy (3, 5) and y (3, 4)" in seen["reference"][2]
    assert "lrn_backward: dy (2, 6, 3, 2)" in seen["reference"][3]
    assert seen["cpu"] == seen["reference"]


def test_conv2d_and_linear_backward_refuse_a_wrong_need_or_out_alike_in_every_tier():
    """need= and out= go through one check (kernels/shapes.backward_request): the same message, the op aside."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((6, 4, 3, 3))
    hp = dict(geometry=ConvGeometry(stride=(1, 1), padding=(1, 1), groups=1))
    dy = np.zeros((2, 6, 6, 6))
    xl, wl, dyl = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), np.zeros((3, 4))
    bad = (dict(need="dx"), dict(need=("dx", "db")), dict(out=(None, None)))
    seen = {}
    for t in TIERS:
        be = get_backend(t)
        seen[t] = [(_message(be.conv2d.conv2d_backward, dy, x, w, **hp, **kw),
                    _message(be.winograd.conv2d_backward, dy, x, w, **hp, **kw),
                    _message(be.linear.linear_backward, dyl, xl, wl, **kw)) for kw in bad]
    assert seen["reference"][0][2] == "linear_backward: need must be a tuple of 'dx' and/or 'dw', got 'dx'"
    assert seen["reference"][2][2] == ("linear_backward: out must be None or a triple (dx, dw, db) of arrays "
                                       "or None, got 2 items")
    for conv, wino, lin in seen["reference"]:
        assert conv.replace("conv2d_backward", "linear_backward") == lin
        assert wino == "winograd " + conv
    assert seen["cpu"] == seen["reference"]
