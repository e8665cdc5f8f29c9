"""Net's one forward/backward path: forward(upto, after), backward(top, bottom), probe(), predict,
replace_head; and the no-dw path of the conv (need=("dx",)) and linear (need=("dx",)) kernels."""
import numpy as np
import pytest

from kernels.shapes import ConvGeometry
from rawcnn.engine import models
from rawcnn.engine.layers import SoftmaxCrossEntropy

TINY = {"name": "tiny", "input": [3, 12, 12], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Conv2d", "name": "conv2", "out_channels": 6, "kernel_size": 3, "stride": 2, "groups": 2},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 10},
    {"type": "ReLU", "name": "relu3"},
    {"type": "Dropout", "name": "drop1", "p": 0.5},
    {"type": "Linear", "name": "fc2", "out_features": 3}]}


def tiny(dtype=np.float64, seed=1):
    return models.build(TINY, seed=seed, weight_std=0.3).astype(dtype)


# -- no dw in the kernels --------------------------------------------------------------------------
@pytest.mark.parametrize("case", [dict(k=3, stride=(2, 1), padding=(1, 0), groups=2),
                                  dict(k=1, stride=(1, 1), padding=(0, 0), groups=1)])
@pytest.mark.parametrize("need_dx", [True, False])
def test_conv2d_backward_without_dw_gives_the_same_dx_and_no_dw(be, case, need_dx):
    rng = np.random.default_rng(3)
    conv = be.conv2d
    x = rng.standard_normal((3, 4, 7, 6))
    w = rng.standard_normal((6, 4 // case["groups"], case["k"], case["k"]))
    kw = dict(geometry=ConvGeometry(case["stride"], case["padding"], case["groups"]), budget_bytes=2000)
    y = conv.conv2d_forward(x, w, np.zeros(6), **kw)
    dy = rng.standard_normal(y.shape)
    dx_full, dw_full, db_full = conv.conv2d_backward(dy, x, w, need=("dx", "dw"), **kw)
    dx, dw, db = conv.conv2d_backward(dy, x, w, need=("dx",) * need_dx, **kw)
    assert dw is None and db is None and dw_full is not None and db_full is not None
    if need_dx:
        np.testing.assert_allclose(dx, dx_full, rtol=1e-12, atol=1e-12)
    else:
        assert dx is None


def test_linear_backward_without_dw_gives_the_same_dx_and_no_dw(be):
    rng = np.random.default_rng(4)
    lin = be.linear
    x, w, dy = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.standard_normal((5, 3))
    dx, dw, db = lin.linear_backward(dy, x, w, need=("dx",))
    assert dw is None and db is None
    np.testing.assert_allclose(dx, dy @ w, rtol=1e-12)


# -- forward / backward between named layers --------------------------------------------------------
def test_forward_upto_and_after_compose_to_the_whole_forward():
    net = tiny()
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
    a = net.forward(x, upto="pool1")
    np.testing.assert_array_equal(net.forward(a, after="pool1"), net.forward(x))
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        net.forward(x, upto="nope")


def test_backward_between_layers_matches_finite_differences():
    """d(sum(v * logits)) / d(relu2's output), through net.backward(top=, bottom=), checked by
    central differences of net.forward(after='relu2') in float64."""
    rng = np.random.default_rng(5)
    net = tiny()
    x = rng.standard_normal((2, 3, 12, 12))
    with net.probe():
        a = net.forward(x, upto="relu2")
        logits = net.forward(a, after="relu2")
        v = rng.standard_normal(logits.shape)
        g = net.backward(v.copy(), top="fc2", bottom="relu2")
    assert g.shape == a.shape
    for idx in [(0, 0, 0, 0), (1, 5, 1, 1), (0, 3, 1, 0), (1, 2, 0, 1)]:
        ap, am = a.copy(), a.copy()
        ap[idx] += 1e-6
        am[idx] -= 1e-6
        num = (np.sum(v * net.forward(ap, after="relu2")) - np.sum(v * net.forward(am, after="relu2"))) / 2e-6
        assert abs(num - g[idx]) < 1e-6 * max(1.0, abs(num))


def test_backward_in_two_pieces_equals_one_pass_to_the_input():
    rng = np.random.default_rng(6)
    net = tiny()
    x = rng.standard_normal((2, 3, 12, 12))
    v = rng.standard_normal((2, 3))
    with net.probe():
        net.forward(x)
        whole = net.backward(v.copy())
        net.forward(x)
        mid = net.backward(v.copy(), top="fc2", bottom="pool1")
        parts = net.backward(mid, top="pool1")
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-14)


def test_old_start_keyword_still_means_top():
    rng = np.random.default_rng(7)
    net = tiny()
    x = rng.standard_normal((2, 3, 12, 12))
    net.forward(x, train=True, upto="fc1")
    g_start = net.backward(np.ones((2, 10)), start="fc1")
    net.forward(x, train=True, upto="fc1")
    g_top = net.backward(np.ones((2, 10)), top="fc1")
    np.testing.assert_array_equal(g_start, g_top)


# -- probe --------------------------------------------------------------------------------------
def test_probe_reaches_the_input_of_a_frozen_net_computes_no_weight_gradients_and_restores_it():
    rng = np.random.default_rng(8)
    net = tiny()
    x = rng.standard_normal((2, 3, 12, 12))
    crit = SoftmaxCrossEntropy()
    crit.forward(net.forward(x, train=True), np.array([0, 2]))
    net.backward(crit.backward())
    grads = {l.name: {k: v.copy() for k, v in l.grads.items()} for l in net.layers}
    net.freeze_through("conv2")
    flags = [(l.need_dx, l.trainable) for l in net.layers]
    calls = []
    net["conv1"].set_algo("im2col")  # the spy below sits on the im2col module
    same = tiny()
    same["conv1"].set_algo("im2col")
    conv = net["conv1"].be.conv2d
    real = conv.conv2d_backward

    def spy(*a, **kw):
        calls.append("dw" in kw["need"])
        return real(*a, **kw)

    net["conv1"].be.__dict__["conv2d"] = type("M", (), {"conv2d_backward": staticmethod(spy),
                                                         "conv2d_forward": staticmethod(conv.conv2d_forward)})
    try:
        with net.probe():
            y = net.forward(x)
            np.testing.assert_array_equal(y, same.forward(x))  # Dropout is the identity
            dx = net.backward(np.ones_like(y))
    finally:
        net["conv1"].be.__dict__["conv2d"] = conv
    assert dx is not None and dx.shape == x.shape and np.abs(dx).sum() > 0
    assert calls == [False, False]
    assert [(l.need_dx, l.trainable) for l in net.layers] == flags
    for l in net.layers:
        assert set(l.grads) == set(grads[l.name])
        for k in l.grads:
            np.testing.assert_array_equal(l.grads[k], grads[l.name][k])
        assert getattr(l, "x", None) is None  # nothing kept after the probe


# -- predict ------------------------------------------------------------------------------------
def test_predict_batches_to_the_same_probabilities_and_activations():
    rng = np.random.default_rng(9)
    net = tiny(np.float32)
    x = rng.standard_normal((7, 3, 12, 12)).astype(np.float32)
    logits = net.forward(x).astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = net.predict(x, batch_size=3)
    assert p.shape == (7, 3) and isinstance(p, np.ndarray)
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(net.predict(x, 2, upto="pool1", softmax=False), net.forward(x, upto="pool1"))
    u8 = rng.integers(0, 255, (4, 3, 12, 12), dtype=np.uint8)
    got = net.predict(u8, 3, to_input=lambda b: (b.astype(np.float32) - 128) / 64)
    np.testing.assert_allclose(got, net.predict((u8.astype(np.float32) - 128) / 64, 4), rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        net.predict(x, 0)


# -- replace_head -------------------------------------------------------------------------------
def test_replace_head_is_seeded_keeps_the_name_and_the_spec_follows():
    net = tiny(np.float32)
    head = net.replace_head(5, seed=3, lr_mult=10.0)
    assert net["fc2"] is head and head.params["w"].shape == (5, 10) and head.lr_mult == 10.0
    assert head.params["w"].dtype == np.float32 and not head.params["b"].any()
    assert [e for e in net.spec["layers"] if e["name"] == "fc2"][0]["out_features"] == 5
    assert TINY["layers"][-1]["out_features"] == 3  # the caller's spec is not touched
    np.testing.assert_array_equal(tiny(np.float32).replace_head(5, seed=3).params["w"], head.params["w"])
    with pytest.raises(ValueError, match="num_classes"):
        net.replace_head(0, seed=0)
