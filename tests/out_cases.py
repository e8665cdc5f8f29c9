"""The kernels' caller-given output arrays (out=, out_y=, out_dx=, ...), one table for every tier.

cases(be, dtype) lists (op, call, names): call(outs) runs one kernel of backend `be` on fixed seeded
inputs with the keyword arguments `outs` and returns its results as a tuple; names are the out
keywords of those results, in order (None: a result that has none; conv2d_backward and
linear_backward take their three as one out= triple, built by _grads, and name them so in their
messages). check(be, case) runs it without out arrays, then with arrays of the right shape filled
with garbage (results must be the very arrays given, holding exactly the values of the run without
them), then with one out array of a wrong shape, a wrong dtype and (for n-D results) a
non-contiguous one, each a ValueError naming the op and the shapes. Used by tests/test_buffers.py
(reference, cpu) and tests/cuda/test_cuda_out.py.
"""
import numpy as np
import pytest

from kernels import to_numpy
from kernels.shapes import ConvGeometry

CONV = dict(geometry=ConvGeometry(stride=(1, 1), padding=(1, 1), groups=2))
LRN = dict(size=5, alpha=1e-3, beta=0.75, k=2.0)
LRN_BACKWARD = {n: v for n, v in LRN.items() if n != "k"}  # lrn_backward takes no k (scale holds it)
POOL = dict(kernel_size=3, stride=2, padding=0, ceil_mode=False)


def cases(be, dtype, small=False):
    """[(op, call(outs) -> tuple of results, names of their out keywords)] for backend `be`;
    small: smaller arrays (the CUDA simulator runs a Python thread per element)."""
    rng = np.random.default_rng(11)

    def arr(*shape):
        return be.asarray(rng.standard_normal(shape).astype(dtype))

    N, H = (2, 5) if small else (3, 7)
    x, w, b = arr(N, 4, H, H), arr(6, 2, 3, 3), arr(6)  # conv: (N, C, H, W), (F, C/G, 3, 3), (F,)
    dy_conv = arr(N, 6, H, H)
    xl, wl, bl, dyl = arr(5, 12), arr(3, 12), arr(3), arr(5, 3)  # linear: (N, D), (K, D), (K,), (N, K)
    y_relu = be.relu.relu_forward(x)
    y_lrn, scale = be.lrn.lrn_forward(x, **LRN)
    _, argmax = be.maxpool2d.maxpool2d_forward(x, **POOL)  # (N, 4, OH, OW)
    dy_pool = arr(*argmax.shape)
    mask = be.dropout.dropout_mask(x.shape, p=0.3, rng=np.random.default_rng(2), dtype=dtype)
    grads = ("out_dx", "out_dw", "out_db")
    out = [
        ("relu_forward", lambda o: (be.relu.relu_forward(x, **o),), ("out",)),
        ("relu_backward", lambda o: (be.relu.relu_backward(x, y_relu, **o),), ("out",)),
        ("lrn_forward", lambda o: be.lrn.lrn_forward(x, **LRN, **o), ("out_y", "out_scale")),
        ("lrn_backward", lambda o: (be.lrn.lrn_backward(x, x, y_lrn, scale, **LRN_BACKWARD, **o),), ("out",)),
        ("maxpool2d_forward", lambda o: be.maxpool2d.maxpool2d_forward(x, **POOL, **o), ("out_y", "out_argmax")),
        ("maxpool2d_backward", lambda o: (be.maxpool2d.maxpool2d_backward(dy_pool, argmax, x_shape=x.shape, **o),),
         ("out",)),
        ("linear_forward", lambda o: (be.linear.linear_forward(xl, wl, bl, **o),), ("out",)),
        ("linear_backward", lambda o: be.linear.linear_backward(dyl, xl, wl, out=_grads(o)), grads),
        ("linear_backward", lambda o: be.linear.linear_backward(dyl, xl, wl, need=("dw",), out=_grads(o)),
         (None, "out_dw", "out_db")),
        ("linear_backward", lambda o: be.linear.linear_backward(dyl, xl, wl, need=("dx",), out=_grads(o)),
         ("out_dx", None, None)),
        ("dropout_mask", lambda o: (be.dropout.dropout_mask(x.shape, p=0.3, rng=np.random.default_rng(2),
                                                            dtype=dtype, **o),), ("out",)),
        ("dropout_forward", lambda o: (be.dropout.dropout_forward(x, mask, **o),), ("out",)),
        ("dropout_backward", lambda o: (be.dropout.dropout_backward(x, mask, **o),), ("out",)),
        ("conv2d_forward", lambda o: (be.conv2d.conv2d_forward(x, w, b, **CONV, **o),), ("out",)),
        ("conv2d_backward", lambda o: be.conv2d.conv2d_backward(dy_conv, x, w, **CONV, out=_grads(o)), grads),
        ("conv2d_backward", lambda o: be.conv2d.conv2d_backward(dy_conv, x, w, **CONV, need=("dw",), out=_grads(o)),
         (None, "out_dw", "out_db")),
        ("conv2d_backward", lambda o: be.conv2d.conv2d_backward(dy_conv, x, w, **CONV, need=("dx",), out=_grads(o)),
         ("out_dx", None, None)),
    ]
    if be.tier != "cuda":  # no Winograd in the CUDA tier
        out += [
            ("conv2d_forward", lambda o: (be.winograd.conv2d_forward(x, w, b, **CONV, workspace={}, **o),),
             ("out",)),
            ("conv2d_backward", lambda o: be.winograd.conv2d_backward(dy_conv, x, w, **CONV, workspace={},
                                                                      out=_grads(o)), grads),
        ]
    return out


def _grads(o):
    """A backward's out= triple (dx, dw, db) from the table's out_dx, out_dw, out_db."""
    return o.get("out_dx"), o.get("out_dw"), o.get("out_db")


def _garbage(be, a):
    """An array shaped like result `a`, full of values no kernel writes (NaN, or -7 for integers)."""
    fill = -7 if np.dtype(a.dtype).kind in "iu" else np.nan
    return be.asarray(np.full(a.shape, fill, dtype=a.dtype))


def check(be, case):
    op, call, names = case
    fresh = [None if r is None else to_numpy(r).copy() for r in call({})]
    assert len(fresh) == len(names)
    outs = {n: _garbage(be, r) for n, r in zip(names, fresh, strict=True) if n is not None}
    got = call(outs)
    for n, r, g in zip(names, fresh, got, strict=True):
        if n is None:
            assert g is None, f"{op}: an output not asked for came back"
            continue
        assert g is outs[n], f"{op}: {n} is not the array returned"
        np.testing.assert_array_equal(to_numpy(g), r, err_msg=f"{op} with {n}")
        assert to_numpy(g).tobytes() == r.tobytes(), f"{op} with {n}: not bit-identical"
    for n, r in zip(names, fresh, strict=True):
        if n is None:
            continue
        shape, dtype = r.shape, np.dtype(r.dtype)
        wrong_shape = shape[:-1] + (shape[-1] + 1,)
        wrong_dtype = np.int32 if dtype.kind in "iu" else (np.float64 if dtype == np.float32 else np.float32)
        bad = [be.asarray(np.zeros(wrong_shape, dtype)), be.asarray(np.zeros(shape, wrong_dtype))]
        if len(shape) > 1:  # a transposed view: right shape and dtype, not C-contiguous
            bad.append(be.asarray(np.zeros(shape[::-1], dtype)).T)
        for a in bad:
            with pytest.raises(ValueError) as e:
                call(dict(outs, **{n: a}))
            msg = str(e.value)
            assert op in msg and n in msg and str(tuple(a.shape)) in msg and str(tuple(shape)) in msg, msg
