"""The layer contract of docs/design.md (decision 4), checked on every layer type."""
import numpy as np
import pytest

from rawcnn.engine.layers import (
    LRN,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
    SoftmaxCrossEntropy,
    WeightInit,
)


def make_layers():
    rng = np.random.default_rng(0)
    return [
        (Conv2d(3, 4, 3, 1, 1, name="conv", init=WeightInit(rng=rng)), (2, 3, 6, 6)),
        (ReLU(name="relu"), (2, 3, 6, 6)),
        (LRN(5, 1e-4, 0.75, 2.0, name="norm"), (2, 3, 6, 6)),
        (MaxPool2d(2, 2, name="pool"), (2, 3, 6, 6)),
        (GlobalAvgPool(name="gap"), (2, 3, 6, 6)),
        (Flatten(name="flatten"), (2, 3, 6, 6)),
        (Linear(5, 4, name="fc", init=WeightInit(rng=rng)), (2, 5)),
        (Dropout(0.5, name="drop", rng=np.random.default_rng(1)), (2, 5)),
        (Softmax(name="prob"), (2, 5)),
    ]


@pytest.mark.parametrize("layer, shape", make_layers(), ids=lambda v: getattr(v, "name", ""))
def test_forward_backward_contract(layer, shape):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    y = layer.forward(x, train=True)
    assert tuple(y.shape[1:]) == layer.output_shape(shape[1:])
    assert y.dtype == np.float32
    dy = np.ones_like(y)
    dx = layer.backward(dy)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert set(layer.grads) == set(layer.params)
    for k in layer.params:
        assert layer.grads[k].shape == layer.params[k].shape
    # backward overwrites, it does not accumulate
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x, train=True)
    layer.backward(dy)
    for k in first:
        np.testing.assert_array_equal(layer.grads[k], first[k])


@pytest.mark.parametrize("layer, shape", make_layers(), ids=lambda v: getattr(v, "name", ""))
def test_backward_before_forward_is_a_clear_error(layer, shape):
    with pytest.raises(RuntimeError, match=f"layer '{layer.name}': backward\\(\\) called before forward"):
        layer.backward(np.ones((2, 4), np.float32))


def test_wrong_input_shape_names_layer_and_shapes():
    conv = Conv2d(3, 4, 3, name="conv1")
    with pytest.raises(ValueError, match=r"'conv1'.*3 input channels.*\(2, 5, 8, 8\)"):
        conv.forward(np.zeros((2, 5, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"'conv1'.*4-D input.*\(5, 8, 8\)"):
        conv.forward(np.zeros((5, 8, 8), np.float32))
    fc = Linear(10, 2, name="fc6")
    with pytest.raises(ValueError, match=r"'fc6'.*10 input features.*\(3, 9\)"):
        fc.forward(np.zeros((3, 9), np.float32))
    with pytest.raises(ValueError, match=r"'fc6'.*dtype float64"):
        fc.forward(np.zeros((3, 10), np.float64))


def test_wrong_device_names_layer_and_devices():
    class FakeGpuArray:  # stands in for an array that does not live on the CPU
        ndim, shape, dtype = 4, (1, 3, 4, 4), np.float32
    conv = Conv2d(3, 4, 3, name="conv1")
    with pytest.raises(ValueError, match=r"'conv1': input is on .*FakeGpuArray.* computes on CPU"):
        conv.forward(FakeGpuArray())


def test_reprs_are_one_line():
    assert repr(Conv2d(3, 96, 7, 2, name="c")) == "Conv2d(3->96, k=7, s=2, p=0)"
    assert repr(Conv2d(96, 256, 5, 1, 2, 2, name="c")) == "Conv2d(96->256, k=5, s=1, p=2, g=2)"
    assert repr(MaxPool2d(3, 2, name="p")) == "MaxPool2d(k=3, s=2, p=0)"
    assert repr(Linear(9216, 4096, name="f")) == "Linear(9216->4096)"
    assert repr(LRN(5, 1e-4, 0.75, 2, name="n")) == "LRN(size=5, alpha=0.0001, beta=0.75, k=2)"


def test_dropout_is_identity_at_test_time_and_seeded_at_train_time():
    x = np.ones((4, 1000), np.float32)
    d1, d2 = (Dropout(0.5, name="d", rng=np.random.default_rng(5)) for _ in range(2))
    assert d1.forward(x, train=False) is x
    y1, y2 = d1.forward(x, train=True), d2.forward(x, train=True)
    np.testing.assert_array_equal(y1, y2)
    assert set(np.unique(y1)) == {0.0, 2.0}
    assert 0.45 < float((y1 == 0).mean()) < 0.55


def test_softmax_cross_entropy_layer_matches_hand_values():
    crit = SoftmaxCrossEntropy()
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]], np.float64)
    loss = crit.forward(logits, np.array([0, 1]))
    # probabilities [.5, .5] and [.75, .25]: loss = -(log .5 + log .25) / 2
    assert abs(loss - (-(np.log(0.5) + np.log(0.25)) / 2)) < 1e-12
    np.testing.assert_allclose(crit.backward(), [[-0.25, 0.25], [0.375, -0.375]], atol=1e-12)
    with pytest.raises(ValueError, match="labels of shape"):
        crit.forward(logits, np.array([0, 1, 1]))
