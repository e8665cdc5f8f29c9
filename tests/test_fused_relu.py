"""A ReLU fused with its neighbours (Net.fuse_relu): forward into the convolution below it (conv2d_forward(...,
relu=True)), backward into the LRN or MaxPool2d above it (their backward's relu=True: dx * (x > 0), x the
layer's input, which is the ReLU's output).

What fusing must not change: the numbers. So every check here is exact (the same bits), not a tolerance:
 1. each tier's conv2d_forward with relu=True equals that tier's relu_forward of its own conv2d_forward
    (reference, CPU im2col, CPU Winograd F(4x4, 3x3) and F(4x4, 5x5), pieces, space-to-depth), with NaN,
    -0.0 and exact zeros in y; each tier's lrn_backward and maxpool2d_backward with relu=True equal
    relu_backward(dx, x) of the unfused dx (both LRN loops, overlapping and padded pools, exact zeros in x);
 2. a Net's forward (streaming, training with reused buffers, fresh arrays) and a training step's
    gradients are the same bits with fusion on and off, on a net with every fused pair;
 3. what a caller sees of a conv's own output is its output before the ReLU: net.forward(upto=conv)
    and net.activations([conv]) are not rectified; net.backward(bottom=relu) gives the gradient at the
    ReLU's output, not through it.
The CUDA tier's fused kernels are checked under the simulator (tests/cuda/test_cuda_conv2d.py, test_cuda_net.py).
"""
import numpy as np
import pytest

from kernels.cpu import conv2d as cpu_direct
from kernels.cpu import lrn as cpu_lrn
from kernels.cpu import maxpool2d as cpu_pool
from kernels.cpu import relu as cpu_relu
from kernels.cpu import winograd as cpu_wino
from kernels.reference import conv2d as ref_direct
from kernels.reference import lrn as ref_lrn
from kernels.reference import maxpool2d as ref_pool
from kernels.reference import relu as ref_relu
from kernels.reference import winograd as ref_wino
from kernels.shapes import ConvGeometry
from rawcnn.engine.layers import LRN, Conv2d, Flatten, Linear, MaxPool2d, ReLU, SoftmaxCrossEntropy, WeightInit
from rawcnn.engine.net import Net

CASES = [  # (x shape, w shape, geometry): im2col shapes and every Winograd path
    ((2, 3, 9, 11), (4, 3, 3, 3), ConvGeometry((1, 1), (1, 1), 1)),  # F(4x4, 3x3), cut tiles at the edges
    ((2, 4, 8, 8), (6, 2, 5, 5), ConvGeometry((1, 1), (2, 2), 2)),  # F(4x4, 5x5), groups
    ((1, 2, 7, 7), (3, 2, 2, 4), ConvGeometry((1, 1), (0, 1), 1)),  # 3x3 pieces
    ((2, 3, 15, 15), (5, 3, 5, 5), ConvGeometry((2, 2), (1, 1), 1)),  # strided: space-to-depth (Winograd)
    ((2, 3, 6, 5), (4, 3, 1, 1), ConvGeometry((1, 1), (0, 0), 1)),  # pointwise (im2col: no columns)
    ((1, 80, 6, 6), (70, 80, 3, 3), ConvGeometry((1, 1), (1, 1), 1)),  # Winograd by filters (70 > 64)
]
TIERS = [
    pytest.param(ref_direct, ref_relu, id="reference-direct"),
    pytest.param(ref_wino, ref_relu, id="reference-winograd"),
    pytest.param(cpu_direct, cpu_relu, id="cpu-im2col"),
    pytest.param(cpu_wino, cpu_relu, id="cpu-winograd"),
]


def _problem(x_shape, w_shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)  # (N, C, H, W)
    w = rng.standard_normal(w_shape).astype(dtype)  # (F, C/G, KH, KW)
    b = rng.standard_normal(w_shape[0]).astype(dtype)  # (F,)
    return x, w, b


@pytest.mark.parametrize("conv, relu", TIERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, geometry", CASES)
def test_fused_forward_is_relu_of_forward(conv, relu, dtype, x_shape, w_shape, geometry):
    (KH, KW), stride = w_shape[2:], geometry.stride
    if conv in (ref_wino, cpu_wino) and stride == (1, 1) and (KH, KW) == (1, 1):
        pytest.skip("Winograd does not run 1x1 kernels")
    x, w, b = _problem(x_shape, w_shape, dtype, seed=sum(x_shape))
    y = conv.conv2d_forward(x, w, b, geometry=geometry)
    expect = relu.relu_forward(y)
    assert (y < 0).any() and (y > 0).any()  # both sides of the kink are exercised
    np.testing.assert_array_equal(conv.conv2d_forward(x, w, b, geometry=geometry, relu=True), expect)
    out = np.full(y.shape, 7, dtype)  # into a kept buffer, as a layer's
    assert conv.conv2d_forward(x, w, b, geometry=geometry, out=out, relu=True) is out
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("conv, relu", TIERS)
def test_fused_forward_keeps_nan_and_zeros_as_relu_does(conv, relu):
    # a NaN input reaches some outputs; a zero kernel and bias 0 / -0.0 give exact zeros of both signs
    x, w, b = _problem((1, 2, 6, 6), (3, 2, 3, 3), np.float32, seed=3)
    x[0, 0, 2, 2] = np.nan
    w[1] = 0
    b[1], b[2] = -0.0, 0.0
    w[2] = 0
    g = ConvGeometry((1, 1), (1, 1), 1)
    y = conv.conv2d_forward(x, w, b, geometry=g)
    assert np.isnan(y).any()
    got, expect = conv.conv2d_forward(x, w, b, geometry=g, relu=True), relu.relu_forward(y)
    np.testing.assert_array_equal(got, expect)  # NaN where NaN
    assert np.array_equal(np.signbit(got), np.signbit(expect))  # and the zeros' signs


def _relu_input(shape, dtype, seed):
    """x as a ReLU's output: >= 0, a third of it exactly 0 (where the fused backward must write 0)."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return np.maximum(x - 0.4, 0).astype(dtype)


@pytest.mark.parametrize("lrn, relu", [pytest.param(ref_lrn, ref_relu, id="reference"),
                                       pytest.param(cpu_lrn, cpu_relu, id="cpu")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.75, 0.6])  # the two loops of the CPU kernel
def test_fused_lrn_backward_is_relu_backward_of_dx(lrn, relu, dtype, beta):
    hp = dict(size=5, alpha=1e-2, beta=beta)
    x = _relu_input((2, 7, 5, 6), dtype, seed=2)
    y, scale = lrn.lrn_forward(x, k=2.0, **hp)
    dy = np.random.default_rng(6).standard_normal(x.shape).astype(dtype)
    dx = lrn.lrn_backward(dy, x, y, scale, **hp)
    expect = relu.relu_backward(dx, x)
    assert (expect != dx).any()
    np.testing.assert_array_equal(lrn.lrn_backward(dy, x, y, scale, relu=True, **hp), expect)


@pytest.mark.parametrize("pool, relu", [pytest.param(ref_pool, ref_relu, id="reference"),
                                        pytest.param(cpu_pool, cpu_relu, id="cpu")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, s, p", [(3, 2, 0), (2, 2, 0), (3, 2, 1)])  # overlapping windows, VGG's, padding
def test_fused_maxpool_backward_is_relu_backward_of_dx(pool, relu, dtype, k, s, p):
    x = _relu_input((2, 3, 9, 8), dtype, seed=4)
    x[0, 0] = 0  # a plane of ties at 0: every window's winner has x = 0
    x[1, 2, 3, 3] = x[1, 1, 0, 0] = np.nan  # a ReLU passes NaN on; its backward gives 0 there
    hp = dict(kernel_size=k, stride=s, padding=p, ceil_mode=False)
    y, argmax = pool.maxpool2d_forward(x, **hp)
    dy = np.random.default_rng(7).standard_normal(y.shape).astype(dtype)
    dx = pool.maxpool2d_backward(dy, argmax, x_shape=x.shape)
    expect = relu.relu_backward(dx, x)
    assert (expect != dx).any()
    np.testing.assert_array_equal(pool.maxpool2d_backward(dy, argmax, x_shape=x.shape, relu=True, y=y), expect)
    with pytest.raises(ValueError, match="needs y"):
        pool.maxpool2d_backward(dy, argmax, x_shape=x.shape, relu=True)


def _net(seed=0):
    init = WeightInit(std="he", rng=np.random.default_rng(seed))
    # every fused pair: conv + relu forward (im2col, Winograd); relu1 into norm1's backward, relu4 into pool2's;
    # relu2 and relu3 below convs (not fused going back); conv5 has no ReLU above it
    layers = [Conv2d(3, 6, 7, 2, name="conv1", init=init), ReLU(name="relu1"),  # im2col (strided 7x7)
              LRN(5, 1e-2, 0.75, 2.0, name="norm1"), MaxPool2d(3, 2, name="pool1"),
              Conv2d(6, 8, 3, 1, 1, name="conv2", init=init), ReLU(name="relu2"),
              Conv2d(8, 8, 3, 1, 1, name="conv3", init=init), ReLU(name="relu3"),
              Conv2d(8, 8, 3, 1, 1, name="conv4", init=init), ReLU(name="relu4"),
              MaxPool2d(2, 2, name="pool2"), Conv2d(8, 8, 1, name="conv5", init=init),
              Flatten(name="flat"), Linear(8 * 2 * 2, 3, name="fc", init=init)]
    net = Net(layers, input_shape=(3, 27, 27))
    for name, algo in (("conv1", "im2col"), ("conv2", "winograd"), ("conv3", "im2col"), ("conv4", "winograd")):
        net[name].set_algo(algo)
    return net


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 3, 27, 27)).astype(np.float32), rng.integers(0, 3, 4)


def _step(net, x, labels):
    crit = SoftmaxCrossEntropy()
    crit.forward(net.forward(x, train=True), labels)
    net.backward(crit.backward())
    return {(l.name, k): g.copy() for l in net.layers for k, g in l.grads.items()}


def test_net_forward_and_step_are_the_same_bits_fused_or_not():
    x, labels = _batch()
    fused, apart = _net(), _net()
    apart.fuse_relu = False
    np.testing.assert_array_equal(fused.forward(x), apart.forward(x))  # fresh arrays
    with fused.streaming(), apart.streaming():
        np.testing.assert_array_equal(fused.forward(x), apart.forward(x))
    np.testing.assert_array_equal(fused.predict(x, batch_size=3), apart.predict(x, batch_size=3))
    for reuse in (False, True):
        with fused.reusing_buffers(reuse), apart.reusing_buffers(reuse):
            for _ in range(2):  # the second step runs in the kept buffers
                g_fused, g_apart = _step(fused, x, labels), _step(apart, x, labels)
                assert g_fused.keys() == g_apart.keys() and len(g_fused) == 12
                for key in g_fused:
                    np.testing.assert_array_equal(g_fused[key], g_apart[key], err_msg=str(key))


def test_input_gradients_and_a_gradient_at_a_relu_are_the_same_fused_or_not():
    x, labels = _batch()
    fused, apart = _net(), _net()
    apart.fuse_relu = False
    for bottom in (None, "relu2", "relu3", "norm1"):  # at the input, at two ReLUs' outputs, just above relu1
        got = []
        for net in (fused, apart):
            crit = SoftmaxCrossEntropy()
            crit.forward(net.forward(x, train=True), labels)
            got.append(net.backward(crit.backward(), bottom=bottom).copy())
        np.testing.assert_array_equal(got[0], got[1], err_msg=str(bottom))
    with fused.probe(), apart.probe():  # heat maps' passes: dx everywhere, no weight gradients
        got = [net.backward(np.ones((4, 3), np.float32) / 3, bottom=None).copy() if net.forward(x) is not None
               else None for net in (fused, apart)]
    np.testing.assert_array_equal(got[0], got[1])


def test_the_conv_output_a_caller_asks_for_is_not_rectified():
    x, _ = _batch()
    net = _net()
    net.fuse_relu = False
    before = net.forward(x, upto="conv2").copy()  # conv2's own output
    assert (before < 0).any()
    net.fuse_relu = True
    np.testing.assert_array_equal(net.forward(x, upto="conv2"), before)  # relu2 is outside the span
    np.testing.assert_array_equal(net.activations(x, ["conv2"])["conv2"], before)
    after = net.forward(x, upto="relu2")
    np.testing.assert_array_equal(after, np.maximum(before, 0))
    # starting above conv1 (after=) with the ReLU inside the span: relu1 is not fused with anything below it
    a1 = net.forward(x, upto="conv1").copy()
    np.testing.assert_array_equal(net.forward(a1, after="conv1", upto="relu1"), cpu_relu.relu_forward(a1))
