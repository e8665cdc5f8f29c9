"""The GlobalAvgPool layer and the custom-gap model (issue 19): the custom model's five conv blocks,
then global average pooling, dropout and fc8 instead of pool5 and the 4096-wide fc6/fc7."""
import json

import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.engine.checkpoint import load_checkpoint, save_checkpoint
from rawcnn.engine.gradcheck import THRESHOLD, check_layers
from rawcnn.engine.layers import Conv2d, GlobalAvgPool, Linear, ReLU, WeightInit
from rawcnn.engine.layers.softmax import SoftmaxCrossEntropy
from rawcnn.engine.summary import format_summary
from rawcnn.viz.heatmap import default_layer, gradcam_maps


def conv_params(f, c, k):
    return f * c * k * k + f  # weights + biases


def test_custom_gap_parameter_count_and_shapes_at_128_px():
    # by hand: conv1 96x3x7x7, conv2 128x96x3x3, conv3 256x128x3x3, conv4 and conv5 256x256x3x3, fc8 2x256
    by_hand = (conv_params(96, 3, 7) + conv_params(128, 96, 3) + conv_params(256, 128, 3)
               + 2 * conv_params(256, 256, 3) + (2 * 256 + 2))
    assert by_hand == 1_600_770
    net = models.build("custom-gap", input_shape=(3, 128, 128), weight_std=0.0)
    assert net.num_params() == by_hand
    shapes = {name: shape for name, _, shape, _, _ in net.summary()}
    # 128 -> conv1 (128-7)//2+1 = 61 -> pool1 30 -> conv2 28 -> pool2 13 -> conv3 11 -> conv4 9 -> conv5 7
    assert shapes["conv1"] == (96, 61, 61) and shapes["pool2"] == (128, 13, 13)
    assert shapes["conv5"] == (256, 7, 7) and shapes["gap"] == (256,) and shapes["fc8"] == (2,)
    custom = models.custom_spec()["layers"]
    assert net.spec["layers"][:14] == custom[:14]  # conv1 .. relu5 exactly as the paper's model
    assert net.names()[14:] == ["gap", "drop", "fc8"] and net["drop"].p == 0.5
    # the fc head it replaces held 101.7 M of custom's parameters
    assert models.build("custom", weight_std=0.0).num_params() - by_hand == 101_727_744


def test_custom_gap_summary_names_the_layer_and_the_total():
    text = format_summary("custom-gap", input_shape=(3, 128, 128))
    gap_row = next(line for line in text.splitlines() if line.startswith("gap "))
    assert "GlobalAvgPool()" in gap_row and gap_row.split()[-3:] == ["256", "0", f"{256 * 7 * 7:,d}"]
    assert "1,600,770" in text.splitlines()[-2]


def test_custom_gap_forward_backward_on_a_128_px_batch():
    net = models.build("custom-gap", seed=1)
    x = np.random.default_rng(2).standard_normal((2, 3, 128, 128)).astype(np.float32)
    labels = np.array([0, 1])
    logits = net.forward(x, train=True)
    assert logits.shape == (2, 2) and logits.dtype == np.float32
    crit = SoftmaxCrossEntropy()
    loss = crit.forward(logits, labels)
    dx = net.backward(crit.backward(1.0))
    assert np.isfinite(loss) and dx.shape == x.shape and np.isfinite(dx).all() and np.abs(dx).max() > 0
    assert net["fc8"].grads["w"].shape == (2, 256) and np.abs(net["conv1"].grads["w"]).max() > 0
    # gap's output is the mean of each relu5 map (numpy.mean, independently of the kernels)
    acts = net.activations(x, ["relu5", "gap"])
    np.testing.assert_allclose(acts["gap"], acts["relu5"].astype(np.float64).mean(axis=(2, 3)), rtol=1e-6, atol=1e-9)


def test_gradcheck_a_tiny_net_with_global_avg_pool_in_float64():
    rng = np.random.default_rng(0)
    f64 = np.float64
    layers = [Conv2d(2, 3, 3, 1, 1, name="conv", init=WeightInit(0.5, rng, f64)), ReLU(name="relu"),
              GlobalAvgPool(name="gap"), Linear(3, 4, name="fc", init=WeightInit(0.5, rng, f64))]
    for l in (layers[0], layers[3]):
        l.params["b"] = rng.standard_normal(l.params["b"].shape) * 0.1
    x = rng.standard_normal((2, 2, 5, 4))
    # a scalar loss at the end: step 1e-4, as rawcnn gradcheck's end-to-end net (rawcnn/engine/gradcheck.py)
    rows = check_layers(layers, x, labels=np.array([1, 3]), h=1e-4)
    assert [r.tensor for r in rows] == ["dx", "dw (conv)", "db (conv)", "dw (fc)", "db (fc)"]
    for r in rows:
        assert r.max_rel_error < THRESHOLD and r.checked > 0, (r.tensor, r.max_rel_error)


def test_global_avg_pool_layer_description():
    gap = GlobalAvgPool(name="gap")
    assert repr(gap) == "GlobalAvgPool()" and gap.num_params() == 0 and gap.params == {}
    assert gap.output_shape((256, 7, 7)) == (256,)
    assert gap.flops((256, 7, 7)) == 256 * 49
    with pytest.raises(ValueError, match=r"'gap'.*\(C, H, W\).*\(256,\)"):
        gap.output_shape((256,))
    with pytest.raises(ValueError, match=r"'gap'.*4-D input.*\(2, 256\)"):
        gap.forward(np.zeros((2, 256), np.float32))
    gap.forward(np.ones((2, 3, 4, 4), np.float32), train=False)
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        gap.backward(np.ones((2, 3), np.float32))  # a test-time forward keeps nothing


SPEC = {"name": "tiny-gap", "input": [3, 9, 9], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"}, {"type": "GlobalAvgPool", "name": "gap"},
    {"type": "Linear", "name": "fc", "out_features": 3}]}


def test_global_avg_pool_in_a_spec_file_and_a_checkpoint(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SPEC))
    net = models.build(str(path), seed=4, weight_std=0.3)
    assert [r[2] for r in net.summary()] == [(4, 9, 9), (4, 9, 9), (4,), (3,)]
    with pytest.raises(ValueError, match="unknown field"):
        models.build({**SPEC, "layers": SPEC["layers"][:2] + [{"type": "GlobalAvgPool", "name": "g", "k": 2}]})
    save_checkpoint(tmp_path / "ck.h5", net)
    back, _ = load_checkpoint(tmp_path / "ck.h5")
    x = np.random.default_rng(5).standard_normal((2, 3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


def test_reused_buffers_give_the_fresh_results():
    x = np.random.default_rng(6).standard_normal((3, 3, 9, 9)).astype(np.float32)
    runs = []
    for reuse in (False, True):
        net = models.build(SPEC, seed=4, weight_std=0.3)
        with net.reusing_buffers(reuse):
            for _ in range(2):  # the second step reads and writes the kept buffers
                y = net.forward(x, train=True).copy()
                dx = net.backward(np.ones_like(y)).copy()
        runs.append((y, dx, net["conv1"].grads["w"].copy()))
    for fresh, kept in zip(*runs, strict=True):
        np.testing.assert_array_equal(kept, fresh)


def test_grad_cam_of_custom_gap_is_the_class_activation_map():
    # conv5 -> mean -> fc8 is linear, so d logit_k / d relu5[f, i, j] = w8[k, f] / (h*w) everywhere:
    # Grad-CAM's channel weights are fc8's row k over h*w, i.e. CAM (Zhou et al. 2016) up to 1/(h*w)
    net = models.build("custom-gap", input_shape=(3, 96, 96), seed=3, weight_std=0.05)
    assert default_layer(net) == "relu5"
    x = np.random.default_rng(7).standard_normal((2, 3, 96, 96)).astype(np.float32)
    cam, classes, _ = gradcam_maps(net, x, "relu5", class_index=0)
    a = net.activations(x, ["relu5"])["relu5"].astype(np.float64)  # (2, 256, h, w)
    h, w = a.shape[2:]
    want = np.maximum(np.einsum("f,nfij->nij", net["fc8"].params["w"][0].astype(np.float64), a) / (h * w), 0)
    assert (h, w) == (3, 3) and classes.tolist() == [0, 0] and (want > 0).any()
    np.testing.assert_allclose(cam, want, rtol=1e-5, atol=1e-7 * np.abs(want).max())
