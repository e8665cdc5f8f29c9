"""Every CPU-side tier against PyTorch's float64 forward and backward, frozen in tests/data/torch_oracles.npz.

The file is made by bench/make_torch_oracles.py (which records torch's version) so that these
checks run where torch is not installed. Cases: conv2d with stride, padding and groups on odd
shapes; LRN with odd, even and wider-than-C windows; max-pool with padding and ceil_mode (inputs
without ties). The CUDA tier has the same checks in tests/cuda/test_cuda_torch_oracles.py.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from kernels import get_backend, to_numpy
from kernels.shapes import ConvGeometry

PATH = Path(__file__).parent / "data" / "torch_oracles.npz"
RTOL, ATOL = 1e-10, 1e-12  # float64 against float64; the sums differ only in their order


def load_cases(path=PATH):
    """{op: [(params dict, {name: array})]} from the oracle file (no pickle)."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    cases = {}
    for key in sorted(k for k in data if k.endswith("/params")):
        op, i, _ = key.split("/")
        arrays = {k.split("/")[2]: v for k, v in data.items() if k.startswith(f"{op}/{i}/") and k != key}
        cases.setdefault(op, []).append((json.loads(str(data[key])), arrays))
    return cases, str(data["torch_version"])


CASES, TORCH_VERSION = load_cases()


def check_case(be, op, params, a):
    """Run backend `be` on one oracle case and compare every output with torch's."""
    asa = be.asarray
    if op == "conv2d":
        kw = dict(geometry=ConvGeometry(tuple(params["stride"]), tuple(params["padding"]), params["groups"]))
        y = be.conv2d.conv2d_forward(asa(a["x"]), asa(a["w"]), asa(a["b"]), **kw)
        got = dict(zip(("y", "dx", "dw", "db"), (y,) + tuple(be.conv2d.conv2d_backward(asa(a["dy"]), asa(a["x"]),
                                                                                       asa(a["w"]), **kw)),
                       strict=True))
    elif op == "lrn":
        y, scale = be.lrn.lrn_forward(asa(a["x"]), **params)
        backward = {k: v for k, v in params.items() if k != "k"}  # k reaches the backward through scale
        got = {"y": y, "dx": be.lrn.lrn_backward(asa(a["dy"]), asa(a["x"]), y, scale, **backward)}
    else:
        kw = dict(kernel_size=tuple(params["kernel_size"]), stride=tuple(params["stride"]),
                  padding=tuple(params["padding"]), ceil_mode=params["ceil_mode"])
        y, argmax = be.maxpool2d.maxpool2d_forward(asa(a["x"]), **kw)
        got = {"y": y, "dx": be.maxpool2d.maxpool2d_backward(asa(a["dy"]), argmax, x_shape=a["x"].shape)}
    for name, v in got.items():
        np.testing.assert_allclose(to_numpy(v), a[name], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{be.name} {op} {params} {name} vs torch {TORCH_VERSION}")


def test_the_oracle_file_holds_every_op_and_torchs_version():
    assert {op: len(c) for op, c in CASES.items()} == {"conv2d": 5, "lrn": 3, "maxpool2d": 4}
    assert TORCH_VERSION[:1].isdigit()
    assert any(p["groups"] > 1 for p, _ in CASES["conv2d"]) and any(p["size"] % 2 == 0 for p, _ in CASES["lrn"])
    assert any(p["ceil_mode"] for p, _ in CASES["maxpool2d"])


@pytest.mark.parametrize("op, i", [(op, i) for op in sorted(CASES) for i in range(len(CASES[op]))])
def test_tier_matches_torch(be, op, i):
    params, arrays = CASES[op][i]
    check_case(be, op, params, arrays)


def test_a_wrong_kernel_fails_the_oracle():
    """The comparison can fail: a conv that forgets one kernel offset's contribution is caught."""
    params, a = CASES["conv2d"][0]
    be = get_backend("reference")

    class Broken:
        @staticmethod
        def conv2d_forward(x, w, b, **kw):
            w = w.copy()
            w[:, :, -1, -1] = 0
            return be.conv2d.conv2d_forward(x, w, b, **kw)
        conv2d_backward = staticmethod(be.conv2d.conv2d_backward)

    fake = type("B", (), {"name": "broken", "asarray": staticmethod(be.asarray), "conv2d": Broken})
    with pytest.raises(AssertionError, match="conv2d"):
        check_case(fake, "conv2d", params, a)
