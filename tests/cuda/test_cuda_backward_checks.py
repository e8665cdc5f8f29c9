"""The cuda tier refuses a wrong dy, need= or out= with the reference tier's message: both call
kernels/shapes.py (tests/test_kernel_backward_checks.py holds the reference and cpu tiers to the same)."""
import numpy as np
import pytest

from kernels.shapes import ConvGeometry

pytestmark = pytest.mark.gpu


def _message(fn, *args, **kwargs):
    """The message of the ValueError that fn(*args, **kwargs) raises."""
    with pytest.raises(ValueError) as e:
        fn(*args, **kwargs)
    return str(e.value)


def test_backward_checks_are_the_reference_tiers(be, ref):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((6, 4, 3, 3))
    hp = dict(geometry=ConvGeometry(stride=(1, 1), padding=(1, 1), groups=1))
    xf, wf = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    y = np.full((3, 4), 0.25)
    xl = rng.standard_normal((2, 6, 3, 3))
    cases = [
        lambda t, a: t.conv2d.conv2d_backward(a(np.zeros((2, 6, 5, 6))), a(x), a(w), **hp),
        lambda t, a: t.linear.linear_backward(a(np.zeros((3, 5))), a(xf), a(wf)),
        lambda t, a: t.conv2d.conv2d_backward(a(np.zeros((2, 6, 6, 6))), a(x), a(w), need="dx", **hp),
        lambda t, a: t.linear.linear_backward(a(np.zeros((3, 4))), a(xf), a(wf), need="dx"),
        lambda t, a: t.linear.linear_backward(a(np.zeros((3, 4))), a(xf), a(wf), out=(None, None)),
        lambda t, a: t.softmax.softmax_backward(a(np.zeros((3, 5))), a(y)),
        lambda t, a: t.lrn.lrn_backward(a(np.zeros((2, 6, 3, 2))), a(xl), a(xl), a(xl + 1), size=5, alpha=1e-4,
                                        beta=0.75),
    ]
    for case in cases:
        assert _message(case, be, be.asarray) == _message(case, ref, np.asarray)
