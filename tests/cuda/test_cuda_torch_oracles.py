"""The CUDA tier against PyTorch's frozen float64 results (tests/data/torch_oracles.npz), NaN in
max-pool as the other tiers propagate it, and the no-dw path of conv2d (need=("dx",)) and linear (need=("dx",))."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from kernels import to_numpy
from kernels.shapes import ConvGeometry

pytestmark = pytest.mark.gpu

_spec = importlib.util.spec_from_file_location("torch_oracle_cases",
                                               Path(__file__).parents[1] / "test_torch_oracles.py")
oracles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracles)


@pytest.mark.parametrize("op, i", [(op, i) for op in sorted(oracles.CASES) for i in range(len(oracles.CASES[op]))])
def test_cuda_matches_torch(be, op, i):
    params, arrays = oracles.CASES[op][i]
    oracles.check_case(be, op, params, arrays)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_first_nan_in_the_window_wins_as_in_the_other_tiers(be, ref, dtype):
    x = np.arange(2 * 36, dtype=dtype).reshape(1, 2, 6, 6)  # increasing: without NaN the last pixel wins
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 1, 2] = np.nan    # a second NaN in the same windows: the first one (row-major) stays
    x[0, 1, 4, 5] = np.nan
    kw = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=False)
    y, argmax = be.maxpool2d.maxpool2d_forward(be.asarray(x), **kw)
    ry, rargmax = ref.maxpool2d.maxpool2d_forward(x, **kw)
    np.testing.assert_array_equal(to_numpy(argmax), rargmax)
    np.testing.assert_array_equal(to_numpy(y), ry)  # NaN == NaN for assert_array_equal
    assert np.isnan(ry[0, 0, 0, 0]) and rargmax[0, 0, 0, 0] == 1 * 6 + 1
    assert np.isnan(ry[0, 1, 2, 2]) and not np.isnan(ry[0, 1]).all()


def test_conv2d_and_linear_backward_without_dw(be, ref, rng):
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 3))
    kw = dict(geometry=ConvGeometry(stride=(2, 1), padding=(1, 0), groups=2))
    dy = rng.standard_normal(ref.conv2d.conv2d_forward(x, w, np.zeros(6), **kw).shape)
    dx, dw, db = be.conv2d.conv2d_backward(be.asarray(dy), be.asarray(x), be.asarray(w), need=("dx",), **kw)
    assert dw is None and db is None
    np.testing.assert_allclose(to_numpy(dx), ref.conv2d.conv2d_backward(dy, x, w, **kw)[0], rtol=1e-10, atol=1e-12)
    xl, wl, dyl = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal((3, 4))
    dx, dw, db = be.linear.linear_backward(be.asarray(dyl), be.asarray(xl), be.asarray(wl), need=("dx",))
    assert dw is None and db is None
    np.testing.assert_allclose(to_numpy(dx), dyl @ wl, rtol=1e-12)


def test_probe_backward_to_the_input_matches_the_cpu_tier(be, rng):
    """Net.probe() on the CUDA tier: the input gradient of one logit, as on the CPU, no weight grads."""
    from rawcnn.engine import models
    spec = {"name": "t", "input": [2, 7, 7], "layers": [
        {"type": "Conv2d", "name": "conv1", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"type": "ReLU", "name": "relu1"},
        {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2, "ceil_mode": True},
        {"type": "Flatten", "name": "flatten"},
        {"type": "Dropout", "name": "drop", "p": 0.5},
        {"type": "Linear", "name": "fc", "out_features": 2}]}
    x = rng.standard_normal((2, 2, 7, 7))
    dy = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = []
    for backend in ("cpu", be):
        net = models.build(spec, seed=5, weight_std=0.5).astype(np.float64).to(backend)
        with net.probe():
            net.forward(x)
            out.append(to_numpy(net.backward(net.be.asarray(dy))))
            assert all(not l.grads for l in net.layers)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-10, atol=1e-12)
