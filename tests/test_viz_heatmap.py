"""viz/heatmap.py: channel maps, Grad-CAM and saliency on nets whose answer is known by hand.

The square net: a 3x3 all-ones filter (bias -4) fires only on a bright 4x4 square; a second
channel is a constant 0.15 everywhere (its mean beats channel 0's 36/256); fc8 gives class 1 the
sum of channel 0's pooled features and class 0 the sum of channel 1's. So channel 0's map and
class 1's Grad-CAM must peak on the square.
"""
import tracemalloc

import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.engine.gradcheck import numeric_gradient, rel_error
from rawcnn.engine.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, SoftmaxCrossEntropy, WeightInit
from rawcnn.engine.net import Net
from rawcnn.viz.heatmap import METHODS, Probe, default_layer, gradcam_maps, heatmaps, logit_layer, saliency_maps

SQUARE = (slice(3, 7), slice(9, 13))   # rows 3..6, columns 9..12 of a 16 x 16 image


def square_net(dtype=np.float32):
    conv = Conv2d(1, 2, 3, padding=1, name="conv1", init=WeightInit(dtype=dtype))
    conv.params["w"][...] = 0.0
    conv.params["w"][0] = 1.0                              # channel 0: sum of the 3x3 window ...
    conv.params["b"][...] = [-4.0, 0.15]                    # ... minus 4; channel 1: constant 0.15
    fc = Linear(2 * 8 * 8, 2, name="fc8", init=WeightInit(dtype=dtype))
    fc.params["w"][...] = 0.0
    fc.params["w"][1, :64] = 1.0                            # class 1 <- channel 0 (first 64 features)
    fc.params["w"][0, 64:] = 1.0                            # class 0 <- channel 1
    fc.params["b"][...] = 0.0
    return Net([conv, ReLU(name="relu1"), MaxPool2d(2, 2, name="pool1"), Flatten(name="flatten"), fc],
               input_shape=(1, 16, 16))


def square_image():
    x = np.zeros((1, 1, 16, 16), np.float32)
    x[0, 0][SQUARE] = 1.0
    return x


def peak(m):
    return np.unravel_index(np.argmax(m), m.shape)


def in_square(ij, margin=0):
    i, j = ij
    return 3 - margin <= i <= 6 + margin and 9 - margin <= j <= 12 + margin


# -- the hand-set square -------------------------------------------------------------------------
def test_default_and_logit_layers():
    net = square_net()
    assert default_layer(net) == "relu1" and logit_layer(net) == "fc8"


def test_channel_map_peaks_on_the_square():
    net, x = square_net(), square_image()
    hm = heatmaps(net, x, "channel", layer="relu1", channel=0)
    assert hm.maps.shape == (1, 16, 16) and hm.maps.max() == 1.0
    assert in_square(peak(hm.maps[0]))
    lesion = np.zeros((16, 16), np.uint8)
    lesion[SQUARE] = 1
    assert heatmaps(net, x, "channel", layer="relu1").channels[0] == 1            # mean 0.15 > 36/256
    assert heatmaps(net, x, "channel", layer="relu1", mask=lesion).channels[0] == 0  # inside the lesion


@pytest.mark.parametrize("layer, margin", [("relu1", 0), ("pool1", 1)])
def test_gradcam_peaks_on_the_square(layer, margin):
    net, x = square_net(), square_image()
    hm = heatmaps(net, x, "gradcam", layer=layer)
    assert hm.classes[0] == 1                          # predicted (logits by hand below)
    assert in_square(peak(hm.maps[0]), margin)
    assert hm.maps[0][SQUARE].mean() > 5 * hm.maps[0].mean() / 2
    # class 0 looks at the constant channel: a flat map, which scales to all zeros
    np.testing.assert_array_equal(heatmaps(net, x, "gradcam", layer=layer, class_index=0).maps, 0.0)


def test_square_logits_by_hand():
    # channel 0 after ReLU: 3x3 window sums minus 4 -> a 4x4 patch [[0,2,2,0],[2,5,5,2],[2,5,5,2],[0,2,2,0]]
    # at rows 2..7, columns 8..13; its 2x2 maxima: one 5 and four 2s -> class 1 = 13.
    # channel 1: 64 pooled cells of 0.15 -> class 0 = 9.6.
    net, x = square_net(), square_image()
    np.testing.assert_allclose(net.forward(x), [[9.6, 13.0]], rtol=1e-6)


# -- Grad-CAM and saliency against independent computations --------------------------------------
def test_gradcam_equals_hand_formula_for_conv_relu_linear():
    rng = np.random.default_rng(0)
    conv = Conv2d(3, 4, 3, padding=1, name="conv1", init=WeightInit(0.5, rng, np.float64))
    fc = Linear(4 * 6 * 6, 3, name="fc8", init=WeightInit(0.5, rng, np.float64))
    net = Net([conv, ReLU(name="relu1"), Flatten(name="flatten"), fc], input_shape=(3, 6, 6))
    x = rng.standard_normal((2, 3, 6, 6))
    cam, classes, _ = gradcam_maps(net, x, "relu1", class_index=[2, 0])
    a = net.activations(x, ["relu1"])["relu1"]                   # (2, 4, 6, 6)
    for n, k in enumerate([2, 0]):
        g = fc.params["w"][k].reshape(4, 6, 6)                  # d logit_k / d A = row k of W
        want = np.maximum(np.einsum("f,fij->ij", g.mean(axis=(1, 2)), a[n]), 0.0)
        np.testing.assert_allclose(cam[n], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(classes, [2, 0])


def test_saliency_of_a_linear_net_is_abs_weights():
    rng = np.random.default_rng(1)
    fc = Linear(3 * 5 * 5, 2, name="fc8", init=WeightInit(1.0, rng, np.float64))
    net = Net([Flatten(name="flatten"), fc], input_shape=(3, 5, 5))
    x = rng.standard_normal((1, 3, 5, 5))
    sal, _, _ = saliency_maps(net, x, class_index=1)
    want = np.abs(fc.params["w"][1].reshape(3, 5, 5)).max(axis=0)
    np.testing.assert_allclose(sal[0], want, rtol=1e-6)
    hm = heatmaps(net, x, "saliency", class_index=1)
    np.testing.assert_allclose(hm.maps[0], (want - want.min()) / (want.max() - want.min()), rtol=1e-5, atol=1e-6)


TINY = {"name": "tiny", "input": [3, 12, 12], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "LRN", "name": "norm1", "size": 3, "alpha": 1e-2, "beta": 0.75, "k": 2.0},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Conv2d", "name": "conv2", "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc7", "out_features": 10},
    {"type": "ReLU", "name": "relu7"},
    {"type": "Dropout", "name": "drop7", "p": 0.5},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}


def test_probe_backward_matches_finite_differences():
    # d logit_1 / d (pool1 output), through conv2, relu, fc7, relu, dropout (identity at test), fc8
    net = models.build(TINY, seed=3, weight_std=0.3).astype(np.float64)
    x = np.random.default_rng(4).standard_normal((2, 3, 12, 12))
    dy = np.zeros((2, 2))
    dy[:, 1] = 1.0
    with Probe(net) as p:
        a = p.forward(x, upto="pool1").copy()                      # (2, 4, 6, 6)
        p.forward(a, upto="fc8", after="pool1")
        g = p.backward(dy, "fc8", "pool1")
    up = net.layers[net.names().index("pool1") + 1:]

    def f():
        y = a
        for l in up:
            y = l.forward(y, train=False)
        return y
    num, kinks = numeric_gradient(f, a, dy)
    assert rel_error(g[~kinks], num[~kinks]) < 1e-6


def test_saliency_matches_finite_differences():
    net = models.build(TINY, seed=5, weight_std=0.3).astype(np.float64)
    x = np.random.default_rng(6).standard_normal((1, 3, 12, 12))
    sal, classes, _ = saliency_maps(net, x, class_index=0)
    dy = np.array([[1.0, 0.0]])
    num, kinks = numeric_gradient(lambda: net.forward(x), x, dy)
    num = np.where(kinks, 0.0, num)
    want = np.abs(num).max(axis=1)[0]
    ok = ~kinks.any(axis=1)[0]
    assert rel_error(sal[0][ok], want[ok]) < 1e-6


# -- side effects ----------------------------------------------------------------------------------
def test_maps_leave_the_net_as_it_was():
    net = models.build(TINY, seed=7, weight_std=0.3)
    net.freeze_through("norm1")
    x = np.random.default_rng(8).standard_normal((3, 3, 12, 12)).astype(np.float32)
    crit = SoftmaxCrossEntropy()
    crit.forward(net.forward(x, train=True), np.array([0, 1, 0]))
    net.backward(crit.backward())                               # a training step's gradients
    grads = {l.name: dict(l.grads) for l in net.layers}
    flags = [(l.need_dx, l.trainable) for l in net.layers]
    drop_state = net["drop7"].rng.bit_generator.state
    first = heatmaps(net, x, "gradcam")
    for m in ("channel", "saliency"):
        heatmaps(net, x, m)
    assert [(l.need_dx, l.trainable) for l in net.layers] == flags
    for l in net.layers:
        assert set(l.grads) == set(grads[l.name])
        assert all(l.grads[k] is grads[l.name][k] for k in l.grads)   # the very same arrays
    assert net["drop7"].rng.bit_generator.state == drop_state          # dropout drew nothing
    for l in net.layers:                                                # nothing kept for backward
        for attr in ("x", "y", "argmax", "mask", "x_shape", "scale"):
            assert getattr(l, attr, None) is None, (l.name, attr)
    np.testing.assert_array_equal(heatmaps(net, x, "gradcam").maps, first.maps)   # deterministic


def test_bad_arguments():
    net, x = square_net(), square_image()
    with pytest.raises(ValueError, match="unknown heat-map method"):
        heatmaps(net, x, "cam")
    with pytest.raises(ValueError, match="outside the 2 classes"):
        heatmaps(net, x, "gradcam", class_index=5)
    with pytest.raises(ValueError, match=r"\(N, F, h, w\)"):
        heatmaps(net, x, "gradcam", layer="flatten")
    with pytest.raises(KeyError, match="conv9"):
        heatmaps(net, x, "gradcam", layer="conv9")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        heatmaps(net, x[0], "gradcam")


# -- memory ----------------------------------------------------------------------------------------
def _peak_bytes(net, x, n):
    """Peak traced bytes while making maps for n images, one at a time, the methods in turn."""
    total = 0.0
    tracemalloc.start()
    tracemalloc.reset_peak()
    for i in range(n):
        total += float(heatmaps(net, x[i % len(x)][None], METHODS[i % 3], layer="relu1").maps.mean())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.isfinite(total)
    return peak


def test_memory_stays_flat_over_many_images():
    net = square_net()
    x = np.random.default_rng(10).random((16, 1, 16, 16)).astype(np.float32)
    _peak_bytes(net, x, 30)                                     # warm up (compiles, caches)
    small = _peak_bytes(net, x, 100)
    large = _peak_bytes(net, x, 2000)
    # 20x the images: keeping even one 16x16 float32 map (1 kB) per image would add 1.9 MB
    assert large < small * 1.2 + 32 * 1024, (small, large)
