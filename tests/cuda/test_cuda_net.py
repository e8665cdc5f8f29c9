"""Whole-net parity: the same net, weights and input on the CUDA tier and on the cpu tier.

Also the two things the layer contract promises across devices: arrays on the wrong device
are refused naming the layer and both devices, and `rawcnn gradcheck` runs on this backend.
"""
import numpy as np
import pytest

from kernels import to_numpy
from rawcnn.engine import models
from rawcnn.engine.gradcheck import max_diff, run_gradcheck
from rawcnn.engine.layers import SoftmaxCrossEntropy

pytestmark = pytest.mark.gpu

# max |cuda - cpu| / max |cpu| per tensor; cuBLAS and numpy's BLAS sum in different orders
TOL = {np.float32: 2e-5, np.float64: 1e-12}

# every layer type, grouped and strided convs, LRN, ceil-mode pool, dropout: a few thousand threads
SPEC = {"name": "parity", "input": [3, 11, 11], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "LRN", "name": "norm1", "size": 3, "alpha": 0.1, "beta": 0.75, "k": 2.0},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"type": "Conv2d", "name": "conv2", "out_channels": 4, "kernel_size": 2, "padding": 1, "groups": 2},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 6},
    {"type": "ReLU", "name": "relu3"},
    {"type": "Dropout", "name": "drop1", "p": 0.0},
    {"type": "Linear", "name": "fc2", "out_features": 3}]}


def _run(net, x, labels):
    crit = SoftmaxCrossEntropy()
    crit.to(net.be)
    logits = net.forward(x, train=True)
    loss = crit.forward(logits, labels)
    dx = net.backward(crit.backward())
    grads = {(l.name, k): to_numpy(g) for l, k, _, g in net.parameters()}
    return to_numpy(logits), loss, to_numpy(dx), grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_net_forward_and_every_gradient_match_the_cpu_backend(be, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 11, 11)).astype(dtype)
    labels = np.array([0, 2])
    cpu = models.build(SPEC, seed=1, weight_std=0.3).astype(dtype)
    gpu = models.build(SPEC, seed=1, weight_std=0.3).astype(dtype).to(be)
    logits_c, loss_c, dx_c, grads_c = _run(cpu, x, labels)
    logits_g, loss_g, dx_g, grads_g = _run(gpu, be.asarray(x), labels)
    tol = TOL[dtype]
    assert max_diff(logits_g, logits_c) < tol
    assert abs(loss_g - loss_c) < tol * max(1.0, abs(loss_c))
    assert max_diff(dx_g, dx_c) < tol
    assert grads_g.keys() == grads_c.keys() and len(grads_c) == 8
    for key in grads_c:
        assert max_diff(grads_g[key], grads_c[key]) < tol, key


def test_predict_streams_through_two_buffers_on_this_backend(be):
    # net.predict runs its batches inside net.streaming(): each layer's output in the buffer its
    # input is not in (be.xp.may_share_memory decides); the probabilities are the cpu tier's
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 11, 11)).astype(np.float32)
    cpu = models.build(SPEC, seed=1, weight_std=0.3)
    gpu = models.build(SPEC, seed=1, weight_std=0.3).to(be)
    want = cpu.predict(x, batch_size=2)
    got = gpu.predict(x, batch_size=2)
    assert max_diff(got, want) < TOL[np.float32]
    assert gpu._slots is None and all(l.buffers is None for l in gpu)


def test_input_on_the_wrong_device_names_layer_and_devices(be):
    net = models.build(SPEC, seed=1).to(be)
    if be.xp is np:  # the simulator computes on NumPy arrays: nothing is on a wrong device
        pytest.skip("the simulator backend holds NumPy arrays")
    with pytest.raises(ValueError, match=r"'conv1': input is on CPU \(numpy.ndarray\)"):
        net["conv1"].forward(np.zeros((1, 3, 11, 11), np.float32))


def test_gradcheck_runs_on_this_backend(be):
    rows = run_gradcheck("LRN", backend=be)
    assert rows and all(r.ok for r in rows)
    rows = run_gradcheck("MaxPool2d", backend=be)
    assert rows and all(r.ok for r in rows)


# every pair Net.fuse_relu fuses: conv + relu forward; relu into an LRN's and a max-pool's backward (and a conv above a
# ReLU, which it does not fuse)
FUSED_SPEC = {"name": "fused", "input": [3, 11, 11], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "LRN", "name": "norm1", "size": 3, "alpha": 0.1, "beta": 0.75, "k": 2.0},
    {"type": "Conv2d", "name": "conv2", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Conv2d", "name": "conv3", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu3"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 3, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 3}]}


def test_fused_relu_gives_the_same_bits_on_this_backend(be):
    rng = np.random.default_rng(0)
    x = be.asarray(rng.standard_normal((2, 3, 11, 11)).astype(np.float32))
    labels = np.array([0, 2])
    fused = models.build(FUSED_SPEC, seed=1, weight_std=0.3).to(be)
    apart = models.build(FUSED_SPEC, seed=1, weight_std=0.3).to(be)
    apart.fuse_relu = False
    out_f, out_a = _run(fused, x, labels), _run(apart, x, labels)
    np.testing.assert_array_equal(out_f[0], out_a[0])  # logits
    np.testing.assert_array_equal(out_f[2], out_a[2])  # dx at the input
    assert out_f[3].keys() == out_a[3].keys() and len(out_f[3]) == 8
    for key in out_f[3]:
        np.testing.assert_array_equal(out_f[3][key], out_a[3][key], err_msg=str(key))


def test_weight_average_on_this_backend(be):
    """rawcnn.engine.optim.WeightAverage with the net's arrays on this device: the average by the formula,
    the net holding it while applied and its own weights again after."""
    from rawcnn.engine.optim import WeightAverage
    net = models.build(SPEC, seed=0).to(be)
    avg = WeightAverage(net, 0.75)
    w0 = {(l.name, k): to_numpy(w).astype(np.float64) for l, k, w, _ in net.parameters()}
    avg.update()  # a copy of the weights
    for _, _, w, _ in net.parameters():
        w += be.asarray(np.ones(w.shape, w.dtype))
    avg.update()  # 0.75 w0 + 0.25 (w0 + 1)
    with avg.applied():
        for l, k, w, _ in net.parameters():
            np.testing.assert_allclose(to_numpy(w), w0[(l.name, k)] + 0.25, rtol=1e-6, atol=1e-6)
        assert avg.trained()["fc2"]["w"].shape == (3, 6)
    for l, k, w, _ in net.parameters():
        np.testing.assert_allclose(to_numpy(w), w0[(l.name, k)] + 1.0, rtol=1e-6, atol=1e-6)
    assert avg.trained() is None
