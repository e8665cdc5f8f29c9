"""space_to_depth kernels, and Winograd on strided layers through them (reference and CPU tiers).

The four tests every op gets (docs/style.md):
 1. tiny hand-computed values (a 4x4 image split by stride 2, a kernel's taps moved to their channels);
 2. the maps are copies: each backward map is the adjoint of its forward one (<A x, d> = <x, A^T d>),
    and Winograd's strided backward vs finite differences in float64 for both tiers;
 3. cpu vs reference: the maps bit for bit, strided Winograd within the Winograd tolerance; the
    float32 error against the direct definition (float64) on AlexNet's conv1 channel counts; the
    same bits on 1 and 2 threads;
 4. output shapes for strides, paddings and groups, and the strided kernels Winograd refuses.
"""
import numba
import numpy as np
import pytest

from kernels.cpu import space_to_depth as cpu_s2d
from kernels.cpu import winograd as cpu
from kernels.reference import conv2d as ref_direct
from kernels.reference import space_to_depth as ref_s2d
from kernels.reference import winograd as ref
from kernels.shapes import ConvGeometry, depth_applies
from rawcnn.engine.gradcheck import max_diff
from specs import check_conv_backward_fd

TOL = {np.float32: 2e-5, np.float64: 1e-12}  # cpu vs reference Winograd (tests/test_kernel_winograd.py)
F32_BOUND = 1e-4  # float32 Winograd vs the float64 definition
FD_TOL, FD_STEP = 1e-7, 1e-3
MAPS = [pytest.param(ref_s2d, id="reference"), pytest.param(cpu_s2d, id="cpu")]
WINOGRAD = [pytest.param(ref, id="reference"), pytest.param(cpu, id="cpu")]

# (x shape, w shape, stride, padding, groups): 2*s < K <= 3*s on each axis
CONFIGS = [
    ((2, 3, 35, 31), (4, 3, 11, 11), (4, 4), (0, 0), 1),  # AlexNet conv1's kernel and stride
    ((2, 3, 27, 30), (5, 3, 11, 11), (4, 4), (2, 1), 1),  # padded; the last columns read by no window
    ((2, 4, 15, 16), (6, 2, 5, 7), (2, 3), (1, 2), 2),  # unequal strides, groups
    ((1, 2, 17, 19), (4, 2, 9, 9), (3, 3), (4, 4), 1),  # padding wider than the stride
]


# ---------------------------------------------------------------------------------------------
# 1. tiny hand-computed values
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", MAPS)
def test_hand_values(m):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    xd = m.space_to_depth(x, stride=(2, 2), padding=(0, 0), out_size=(0, 0))  # 2x2 blocks, 4 channels
    np.testing.assert_array_equal(xd[0, :, 0, 0], [0, 1, 4, 5])  # block (0, 0): residues (r, t) row by row
    np.testing.assert_array_equal(xd[0, 1], [[1, 3], [9, 11]])  # residue (0, 1): x[2i, 2j + 1]
    xd = m.space_to_depth(x, stride=(2, 2), padding=(1, 1), out_size=(0, 0))  # padded by 1: x moves one on
    np.testing.assert_array_equal(xd[0, :, 0, 0], [0, 0, 0, 0])
    np.testing.assert_array_equal(xd[0, 3], [[0, 2], [8, 10]])  # residue (1, 1): x[2i, 2j]
    w = np.arange(1.0, 26.0).reshape(1, 1, 5, 5)  # 5x5, stride 2: 3x3 blocks of 2x2, padded to 6x6
    wd = m.kernel_to_depth(w, (2, 2))
    np.testing.assert_array_equal(wd[0, 0], [[1, 3, 5], [11, 13, 15], [21, 23, 25]])  # w[2a, 2b]
    np.testing.assert_array_equal(wd[0, 3], [[7, 9, 0], [17, 19, 0], [0, 0, 0]])  # w[2a + 1, 2b + 1]


# ---------------------------------------------------------------------------------------------
# 2. adjoints, and the strided backward vs finite differences (float64)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", MAPS)
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", CONFIGS)
def test_maps_and_their_adjoints(m, x_shape, w_shape, stride, padding, groups):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    OH = (x_shape[2] + 2 * padding[0] - w_shape[2]) // stride[0] + 1
    OW = (x_shape[3] + 2 * padding[1] - w_shape[3]) // stride[1] + 1
    xd = m.space_to_depth(x, stride=stride, padding=padding, out_size=(OH, OW))
    d = rng.standard_normal(xd.shape)
    dx = m.depth_to_space(d, x_shape=x_shape, stride=stride, padding=padding)
    assert abs(np.vdot(xd, d) - np.vdot(x, dx)) < 1e-10 * np.abs(xd).sum() * np.abs(d).max()
    wd = m.kernel_to_depth(w, stride)
    dd = rng.standard_normal(wd.shape)
    dw = m.kernel_from_depth(dd, w_shape[2:], stride)
    assert abs(np.vdot(wd, dd) - np.vdot(w, dw)) < 1e-10 * np.abs(wd).sum() * np.abs(dd).max()


@pytest.mark.parametrize("tier", WINOGRAD)
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", CONFIGS[1:3])
def test_strided_backward_vs_finite_differences(tier, x_shape, w_shape, stride, padding, groups):
    check_conv_backward_fd(tier, x_shape, w_shape, ConvGeometry(stride, padding, groups), seed=1, tol=FD_TOL,
                           step=FD_STEP)


# ---------------------------------------------------------------------------------------------
# 3. cpu vs reference, float32 vs the definition, thread counts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", CONFIGS)
def test_cpu_maps_give_the_reference_bits(x_shape, w_shape, stride, padding, groups):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    out_size = (x_shape[2] // stride[0], x_shape[3] // stride[1])  # any size: the maps crop or pad with zeros
    xd = ref_s2d.space_to_depth(x, stride=stride, padding=padding, out_size=out_size)
    np.testing.assert_array_equal(cpu_s2d.space_to_depth(x, stride=stride, padding=padding, out_size=out_size), xd)
    d = rng.standard_normal(xd.shape).astype(np.float32)
    np.testing.assert_array_equal(cpu_s2d.depth_to_space(d, x_shape=x_shape, stride=stride, padding=padding),
                                  ref_s2d.depth_to_space(d, x_shape=x_shape, stride=stride, padding=padding))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", CONFIGS)
def test_strided_cpu_matches_reference(dtype, x_shape, w_shape, stride, padding, groups):
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, w_shape[:1]))
    hp = dict(geometry=ConvGeometry(stride, padding, groups))
    y_ref = ref.conv2d_forward(x, w, b, **hp)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    workspace = {}
    y = cpu.conv2d_forward(x, w, b, workspace=workspace, **hp)
    grads = cpu.conv2d_backward(dy, x, w, workspace=workspace, **hp)
    for name, a, r in zip(("y", "dx", "dw", "db"), (y, *grads), (y_ref, *ref.conv2d_backward(dy, x, w, **hp)),
                          strict=True):
        assert a.dtype == dtype and a.shape == r.shape
        assert max_diff(a, r) < TOL[dtype], f"{name}: {max_diff(a, r):.2e}"


def test_float32_error_on_alexnet_conv1():
    # AlexNet conv1's channels, kernel and stride (3 -> 96, 11x11 stride 4) on a 35x35 image:
    # float32 strided Winograd against the float64 definition, inputs like images (non-negative)
    rng = np.random.default_rng(4)
    x = np.abs(rng.standard_normal((2, 3, 35, 35)))
    w = rng.standard_normal((96, 3, 11, 11)) * np.sqrt(2.0 / 363)
    b = rng.standard_normal(96) * 0.1
    hp = dict(geometry=ConvGeometry((4, 4), (0, 0), 1))
    y_direct = ref_direct.conv2d_forward(x, w, b, **hp)
    dy = rng.standard_normal(y_direct.shape)
    dx_direct, dw_direct, _ = ref_direct.conv2d_backward(dy, x, w, **hp)
    f32 = [a.astype(np.float32) for a in (x, w, b, dy)]
    y = cpu.conv2d_forward(*f32[:3], **hp)
    dx, dw, _ = cpu.conv2d_backward(f32[3], f32[0], f32[1], **hp)
    for name, a, r in (("y", y, y_direct), ("dx", dx, dx_direct), ("dw", dw, dw_direct)):
        assert max_diff(a, r) < F32_BOUND, f"{name}: {max_diff(a, r):.2e}"


def test_strided_gives_the_same_bits_on_one_thread():
    rng = np.random.default_rng(5)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3, 67, 67), (8, 3, 11, 11), (8,)))
    hp = dict(geometry=ConvGeometry((4, 4), (1, 1), 1))
    dy = rng.standard_normal(cpu.conv2d_forward(x, w, b, **hp).shape).astype(np.float32)
    two = (cpu.conv2d_forward(x, w, b, **hp), *cpu.conv2d_backward(dy, x, w, **hp))
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = (cpu.conv2d_forward(x, w, b, **hp), *cpu.conv2d_backward(dy, x, w, **hp))
    finally:
        numba.set_num_threads(before)
    for a, c in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------------------------------------
# 4. shapes and errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tier", WINOGRAD)
@pytest.mark.parametrize("kernel, stride", [((11, 11), (4, 4)), ((7, 5), (3, 2)), ((3, 6), (1, 2))])
@pytest.mark.parametrize("padding", [(0, 0), (1, 2), (5, 5)])
def test_output_shapes(tier, kernel, stride, padding):
    x, w, b = np.zeros((2, 4, 23, 21)), np.zeros((6, 2, *kernel)), np.zeros(6)
    geometry = ConvGeometry(stride, padding, 2)
    y = tier.conv2d_forward(x, w, b, geometry=geometry)
    assert y.shape == ref_direct.conv2d_forward(x, w, b, geometry=geometry).shape
    dx, dw, db = tier.conv2d_backward(np.zeros(y.shape), x, w, geometry=geometry)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape


def test_which_strided_kernels_apply():
    assert depth_applies((11, 11), (4, 4)) and depth_applies((5, 7), (2, 3)) and depth_applies((3, 9), (1, 3))
    assert not depth_applies((3, 3), (1, 1))  # stride 1: Winograd as it is, no space-to-depth
    assert not depth_applies((7, 7), (2, 2))  # four blocks (custom's conv1): not measured, im2col
    assert not depth_applies((3, 3), (2, 2)) and not depth_applies((11, 11), (4, 2))


@pytest.mark.parametrize("tier", WINOGRAD)
def test_strided_errors(tier):
    x = np.zeros((1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"needs stride 1, got stride \(2, 2\) for w \(4, 3, 7, 7\)"):
        tier.conv2d_forward(x, np.zeros((4, 3, 7, 7)), np.zeros(4), geometry=ConvGeometry((2, 2), (0, 0), 1))
