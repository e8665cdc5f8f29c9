"""Net: forward/backward through a chain, activations(), freezing, state round trips."""
import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.engine.layers import SoftmaxCrossEntropy

TINY = {"name": "tiny", "input": [3, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 8, "kernel_size": 3, "stride": 1, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "LRN", "name": "norm1", "size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Conv2d", "name": "conv2", "out_channels": 8, "kernel_size": 3, "padding": 1, "groups": 2},
    {"type": "ReLU", "name": "relu2"},
    {"type": "MaxPool2d", "name": "pool2", "kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 32},
    {"type": "ReLU", "name": "relu3"},
    {"type": "Dropout", "name": "drop1", "p": 0.2},
    {"type": "Linear", "name": "fc2", "out_features": 2}]}


def sgd_step(net, lr):
    for _, _, p, g in net.parameters(trainable_only=True):
        p -= lr * g


def test_tiny_net_overfits_two_fixed_batches():
    rng = np.random.default_rng(0)
    net = models.build(TINY, seed=1, weight_std=0.1)
    batches = [(rng.standard_normal((8, 3, 16, 16)).astype(np.float32), rng.integers(0, 2, 8)) for _ in range(2)]
    crit = SoftmaxCrossEntropy()
    first = None
    for step in range(300):
        x, y = batches[step % 2]
        loss = crit.forward(net.forward(x, train=True), y)
        first = loss if first is None else first
        net.backward(crit.backward())
        sgd_step(net, 0.05)
    final = [crit.forward(net.forward(x), y) for x, y in batches]
    acc = [float((net.forward(x).argmax(1) == y).mean()) for x, y in batches]
    assert max(final) < 0.05 < first and min(acc) == 1.0


def test_activations_are_exactly_what_forward_computes():
    net = models.build(TINY, seed=2, weight_std=0.1)
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    acts = net.activations(x, ["conv1", "relu2", "fc2"])
    assert set(acts) == {"conv1", "relu2", "fc2"}
    np.testing.assert_array_equal(acts["fc2"], net.forward(x))
    np.testing.assert_array_equal(acts["relu2"], net.forward(x, upto="relu2"))
    np.testing.assert_array_equal(acts["conv1"], net["conv1"].forward(x))
    assert acts["relu2"].shape == (2, 8, 8, 8)
    with pytest.raises(KeyError, match="no layer named 'conv9'"):
        net.activations(x, ["conv9"])


def test_freeze_through_skips_all_backward_below():
    net = models.build(TINY, seed=2, weight_std=0.1)
    net.freeze_through("pool2")
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    crit = SoftmaxCrossEntropy()
    crit.forward(net.forward(x, train=True), np.array([0, 1]))
    assert net.backward(crit.backward()) is None
    assert net["conv1"].grads == {} and net["conv2"].grads == {}
    assert set(net["fc1"].grads) == {"w", "b"}
    assert [l.name for l, *_ in net.parameters(trainable_only=True)] == ["fc1", "fc1", "fc2", "fc2"]


def test_state_dict_round_trip_and_shape_errors():
    a = models.build(TINY, seed=1)
    b = models.build(TINY, seed=2)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    state = a.state_dict()
    state["fc1"]["w"] = state["fc1"]["w"][:, :5]
    with pytest.raises(ValueError, match=r"'fc1' parameter 'w': expected shape \(32, 128\), got \(32, 5\)"):
        b.load_state_dict(state)


def test_float64_net_and_parameter_iteration():
    net = models.build(TINY, seed=1).astype(np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))
    assert net.forward(x).dtype == np.float64
    crit = SoftmaxCrossEntropy()
    crit.forward(net.forward(x, train=True), np.array([1, 0]))
    dx = net.backward(crit.backward())
    assert dx.shape == x.shape
    names = [(l.name, k) for l, k, p, g in net.parameters()]
    assert names[:2] == [("conv1", "w"), ("conv1", "b")] and len(names) == 8
    assert all(g is not None and g.shape == p.shape for _, _, p, g in net.parameters())


def test_training_backward_skips_the_input_gradient_with_the_same_weight_gradients():
    net = models.build(TINY, seed=2, weight_std=0.1)
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    crit = SoftmaxCrossEntropy()
    crit.forward(net.forward(x, train=True), np.array([0, 1]))
    full = net.backward(crit.backward())
    grads = {(l.name, k): g.copy() for l, k, _, g in net.parameters()}
    assert full.shape == x.shape
    assert net.backward(crit.backward(), input_grad=False) is None
    for l, k, _, g in net.parameters():
        np.testing.assert_array_equal(g, grads[(l.name, k)])
    assert net["conv1"].need_dx  # restored: saliency and gradient checks still get dx
