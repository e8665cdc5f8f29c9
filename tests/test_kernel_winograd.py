"""winograd kernels: transform_matrices, conv2d_forward, conv2d_backward, reference and CPU tiers.

The four tests every op gets (docs/STYLE.md):
 1. tiny hand-computed values (the F(2,3) matrices of Lavin & Gray, 3x3 windows summed by hand);
 2. backward vs finite differences in float64 for both tiers;
 3. cpu vs reference in float32 and float64 (blocks of tiles forced small, a reused workspace), and
    the float32 error against the direct definition (float64) on every stride-1 layer of
    custom / AlexNet / VGG16 (3x3 by F(4x4, 3x3), AlexNet's 5x5 by F(4x4, 5x5)), with their real
    channel counts on a small image; kernels of other sizes by their 3x3 pieces;
 4. output shapes for paddings 0..3 and groups, and the errors for what Winograd cannot do.
"""
import numpy as np
import pytest

from kernels.cpu import conv2d as cpu_direct
from kernels.cpu import winograd as cpu
from kernels.reference import conv2d as ref_direct
from kernels.reference import winograd as ref
from kernels.shapes import ConvGeometry
from rawcnn.engine.gradcheck import max_diff
from specs import check_conv_backward_fd

# cpu vs reference (both Winograd): max |cpu - ref| / max |ref|, per dtype. The two tiers round
# in different orders, and the transforms (entries up to 8 in A^T, 5 in B^T; 10 in F(4x4, 5x5)'s B^T)
# amplify the rounding about tenfold over a direct convolution's (whose float32 tolerance is 2e-6)
TOL = {np.float32: 2e-5, np.float64: 1e-12}
# float32 Winograd vs the float64 direct definition, on the real layers' channel counts: the bound
# the issue asks for (bench/winograd_error.py measures it on the full layer shapes)
F32_BOUND = 1e-4
FD_TOL = 1e-7
FD_STEP = 0.5  # the convolution is linear: no truncation error at any step, and a large step divides the rounding
# of f (F(4x4, 5x5)'s transforms reach 10 and 1/360) by a large 2h

OP = "winograd"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
S1 = (1, 1)


# ---------------------------------------------------------------------------------------------
# 1. tiny hand-computed values
# ---------------------------------------------------------------------------------------------
def test_f23_matrices_by_hand():
    # F(2, 3) from the points 0, 1, -1, inf, by hand: s(t) = s0 + s1 t + s2 t^2 + s3 t^3 has the
    # values v0 = s0, v1 = s0+s1+s2+s3, v-1 = s0-s1+s2-s3, vinf = s3, so s1 = (v1-v-1)/2 - vinf,
    # s2 = (v1+v-1)/2 - v0; BT = Vs^-T has rows [1,0,-1,0], [0,.5,.5,0], [0,-.5,.5,0], [0,-1,0,1],
    # rows 1 and 2 scaled by 2 (G's by 1/2). Lavin & Gray (section 4.1) negate the inf row of BT
    # and the inf column of AT, which leaves the product unchanged.
    AT, G, BT = ref.transform_matrices(m=2, r=3, points=(0.0, 1.0, -1.0, np.inf))
    np.testing.assert_allclose(AT, [[1, 1, 1, 0], [0, 1, -1, 1]], atol=1e-12)
    np.testing.assert_allclose(BT, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]],
                               atol=1e-12)
    np.testing.assert_allclose(G, [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], atol=1e-12)


def test_f43_one_dimension_by_hand():
    AT, G, BT = ref.transform_matrices()
    assert AT.shape == (4, 6) and G.shape == (6, 3) and BT.shape == (6, 6)
    d, g = np.arange(1.0, 7.0), np.array([1.0, 2.0, 3.0])
    # y_i = d_i + 2 d_{i+1} + 3 d_{i+2}: 1+4+9, 2+6+12, 3+8+15, 4+10+18
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), [14, 20, 26, 32], atol=1e-12)
    with pytest.raises(ValueError, match="needs 6 distinct points"):
        ref.transform_matrices(points=(0.0, 1.0, -1.0, 2.0, np.inf))


def test_f45_one_dimension_by_hand():
    AT, G, BT = ref.transform_matrices(4, 5, ref.POINTS_5)
    assert AT.shape == (4, 8) and G.shape == (8, 5) and BT.shape == (8, 8)
    d, g = np.arange(1.0, 9.0), np.array([1.0, 0.0, -1.0, 2.0, 1.0])
    # y_i = d_i - d_{i+2} + 2 d_{i+3} + d_{i+4}: 1-3+8+5, 2-4+10+6, 3-5+12+7, 4-6+14+8
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), [11, 14, 17, 20], atol=1e-12)
    # the points 1/2 and -1/2 (not 3 and -3) keep A^T's entries at most 8 and B^T's at most 10
    assert np.abs(AT).max() == 8 and np.abs(BT).max() == 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_hand_values(tier, dtype):
    x = np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    w, b = np.ones((1, 1, 3, 3), dtype), np.array([0.5], dtype)
    y = tier.conv2d_forward(x, w, b, geometry=ConvGeometry(stride=S1, padding=(0, 0), groups=1))
    assert y.dtype == dtype
    # the four 3x3 window sums of [[0..3], [4..7], [8..11], [12..15]]
    np.testing.assert_allclose(y[0, 0], np.array([[45, 54], [81, 90]]) + 0.5, rtol=1e-6)
    y = tier.conv2d_forward(x, w, b, geometry=ConvGeometry(stride=S1, padding=(1, 1), groups=1))
    # padded corners: 0+1+4+5, 2+3+6+7, 8+9+12+13, 10+11+14+15
    np.testing.assert_allclose(y[0, 0, [0, 0, 3, 3], [0, 3, 0, 3]], np.array([10, 18, 42, 50]) + 0.5,
                               rtol=1e-6)


def test_backward_hand_values(tier):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.zeros((1, 1, 3, 3))
    w[0, 0, 0, 0] = 2.0  # y[i, j] = 2 x[i, j]: dx is 2 dy in the top-left 2x2, 0 elsewhere
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx, dw, db = tier.conv2d_backward(dy, x, w, geometry=ConvGeometry(stride=S1, padding=(0, 0), groups=1))
    np.testing.assert_allclose(dx[0, 0], [[2, 4, 0, 0], [6, 8, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
                               atol=1e-12)
    assert dw[0, 0, 0, 0] == 0 * 1 + 1 * 2 + 4 * 3 + 5 * 4
    np.testing.assert_array_equal(db, [10])


# ---------------------------------------------------------------------------------------------
# 2. backward vs finite differences (float64)
# ---------------------------------------------------------------------------------------------
FD_CONFIGS = [  # (x shape, w shape, padding, groups)
    ((2, 4, 6, 7), (6, 2, 3, 3), (1, 1), 2),
    ((1, 3, 9, 5), (2, 3, 3, 3), (0, 2), 1),
    ((1, 2, 6, 6), (3, 2, 3, 3), (3, 0), 1),  # padding 3: the backward's padding 2 - 3 crops dy
    ((2, 4, 9, 8), (6, 2, 5, 5), (2, 2), 2),  # 5x5 (AlexNet conv2's shape of layer): F(4x4, 5x5)
    ((1, 2, 7, 9), (3, 2, 5, 5), (5, 0), 1),  # 5x5, padding 5: the backward's padding 4 - 5 crops dy
    ((1, 3, 10, 7), (2, 3, 2, 4), (0, 1), 1),  # 2x4: two pieces, zero-padded to 3x6
]


@pytest.mark.parametrize("x_shape, w_shape, padding, groups", FD_CONFIGS)
def test_backward_vs_finite_differences(tier, x_shape, w_shape, padding, groups):
    check_conv_backward_fd(tier, x_shape, w_shape, ConvGeometry(S1, padding, groups), seed=1, tol=FD_TOL,
                           step=FD_STEP)


# ---------------------------------------------------------------------------------------------
# 3. cpu vs reference, and float32 vs the direct definition
# ---------------------------------------------------------------------------------------------
CONFIGS = [  # (x shape, w shape, padding, groups)
    ((3, 4, 9, 8), (6, 2, 3, 3), (1, 1), 2),
    ((2, 5, 13, 11), (7, 5, 3, 3), (0, 0), 1),  # tiles cut at the right and bottom edges
    ((2, 6, 7, 10), (4, 3, 3, 3), (2, 1), 2),
    ((2, 4, 11, 9), (6, 2, 5, 5), (2, 2), 2),  # F(4x4, 5x5), 8x8 tiles
    ((1, 3, 10, 13), (4, 3, 5, 5), (0, 3), 1),  # F(4x4, 5x5), tiles cut at the edges, unequal paddings
    ((2, 4, 11, 9), (6, 2, 4, 5), (2, 2), 2),  # 4x5: four 3x3 pieces read x at paddings 2, -1 (a shift)
    ((1, 3, 12, 12), (3, 3, 7, 7), (3, 1), 1),  # nine pieces, padding 1 - 6 = -5
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, padding, groups", CONFIGS)
def test_cpu_matches_reference(dtype, x_shape, w_shape, padding, groups):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    hp = dict(geometry=ConvGeometry(S1, padding, groups))
    y_ref = ref.conv2d_forward(x, w, b, **hp)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(dy, x, w, **hp)
    workspace = {}
    for block_bytes in (1, cpu.BLOCK_BYTES):  # 1: a job per tile row; the default: one job here
        y = np.empty_like(y_ref)
        cpu.winograd_correlate(x, w, b, hp["geometry"], y, workspace, block_bytes=block_bytes)
        assert max_diff(y, y_ref) < TOL[dtype]
    y = cpu.conv2d_forward(x, w, b, workspace=workspace, **hp)
    dx, dw, db = cpu.conv2d_backward(dy, x, w, workspace=workspace, **hp)
    for name, a, r in (("y", y, y_ref), ("dx", dx, dx_ref), ("dw", dw, dw_ref), ("db", db, db_ref)):
        assert a.dtype == dtype and a.shape == r.shape
        assert max_diff(a, r) < TOL[dtype], f"{name}: {max_diff(a, r):.2e}"


@pytest.mark.parametrize("schedule", ["rows", "filters"])
@pytest.mark.parametrize("x_shape, w_shape, padding, groups", CONFIGS)
def test_cpu_schedules_and_thread_counts_give_the_same_bits(monkeypatch, schedule, x_shape, w_shape, padding,
                                                            groups):
    # both schedules against the reference, and the same bits on 1, 2 and 3 threads: every job
    # writes its own outputs and the cut into jobs depends on the shape only
    if schedule == "filters":  # small chunks so that these tiny layers take the by-filters path
        monkeypatch.setattr(cpu, "FILTER_JOB", 1)
        monkeypatch.setattr(cpu, "CHANNEL_JOB", 2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    y_ref = ref.conv2d_forward(x, w, b, geometry=ConvGeometry(S1, padding, groups))
    block_bytes = cpu.BLOCK_BYTES if schedule == "filters" else 1
    outs = []
    for threads in (1, 2, 3):
        y = np.full_like(y_ref, np.nan)
        cpu.winograd_correlate(x, w, b, ConvGeometry(S1, padding, groups), y, {}, block_bytes=block_bytes,
                               threads=threads)
        outs.append(y)
    assert max_diff(outs[0], y_ref) < TOL[np.float32]
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


@pytest.mark.parametrize("x_shape, w_shape, padding, groups", CONFIGS)
def test_weight_gradient_chains_give_the_same_bits_on_any_thread_count(x_shape, w_shape, padding, groups):
    # one block per tile row (block_bytes=1): many blocks, dealt to the two chains; the reference's
    # dw is the definition; 1, 2 and 3 threads give the same bits (training's determinism)
    rng = np.random.default_rng(6)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    hp = dict(geometry=ConvGeometry(S1, padding, groups))
    y = ref.conv2d_forward(x, w, np.zeros(w_shape[0], np.float32), **hp)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw_ref = ref.conv2d_backward(dy, x, w, **hp)[1]
    outs = []
    for threads in (1, 2, 3):
        dw = np.full_like(w, np.nan)
        cpu.winograd_weight_grad(dy, x, hp["geometry"], dw, {}, block_bytes=1, threads=threads)
        outs.append(dw)
    assert max_diff(outs[0], dw_ref) < TOL[np.float32]
    for dw in outs[1:]:
        np.testing.assert_array_equal(dw, outs[0])


@pytest.mark.parametrize("w_shape, padding", [((5, 4, 3, 3), (1, 1)), ((5, 4, 5, 5), (2, 1))])
def test_blocks_that_end_inside_an_image_read_the_right_rows(w_shape, padding):
    # blocks of 3 tile rows over images of 5 tile rows: blocks that start and end inside an image and
    # blocks that span two images; the input transform copies only the plane rows a block reads, so a
    # row left over from the previous block or image would show here (forward and weight gradient)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 19, 18)).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    geometry = ConvGeometry(S1, padding, 1)
    y_ref = ref.conv2d_forward(x, w, b, geometry=geometry)
    TH, TW = -(-y_ref.shape[2] // 4), -(-y_ref.shape[3] // 4)
    assert TH == 5
    CP, nn = 4, cpu.tiling(*w_shape[2:]).n ** 2  # V's channels (C: both kernels run whole), positions 36 or 64
    block_bytes = 3 * nn * (CP + w_shape[0]) * 4 * TW  # the weight gradient's budget for 3 rows
    assert cpu.rows_per_block(CP, w_shape[0], TW, 3 * TH, 4, block_bytes, nn) == 3
    fwd_bytes = -(-block_bytes * nn // 36)  # the forward's, which takes 36/nn of it
    assert cpu.rows_per_block(CP, w_shape[0], TW, 3 * TH, 4, cpu.forward_block_bytes(fwd_bytes, nn), nn) == 3
    y = np.full_like(y_ref, np.nan)
    cpu.winograd_correlate(x, w, b, geometry, y, {}, block_bytes=fwd_bytes)
    assert max_diff(y, y_ref) < TOL[np.float32]
    dy = rng.standard_normal(y_ref.shape).astype(np.float32)
    dw = np.full_like(w, np.nan)
    cpu.winograd_weight_grad(dy, x, geometry, dw, {}, block_bytes=block_bytes)
    assert max_diff(dw, ref.conv2d_backward(dy, x, w, geometry=geometry)[1]) < TOL[np.float32]


def test_transforms_written_out_match_the_matrices():
    # _bt, _at and _a (the kernels' entry-by-entry transforms) against transform_matrices()
    AT, G, BT = ref.transform_matrices()
    k = np.array([2, 4, 5, 8], np.float64)
    rng = np.random.default_rng(7)
    v6, v4 = rng.standard_normal(6), rng.standard_normal(4)
    np.testing.assert_allclose(cpu._bt(*v6, k), BT @ v6, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cpu._at(*v6, k), AT @ v6, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cpu._a(*v4, k), AT.T @ v4, rtol=1e-13, atol=1e-13)
    # the input transform's one-output-per-loop form of _bt (_bt_down, _bt_across): the same bits as _bt
    d = rng.standard_normal((6, 5))
    down, across, e = np.empty((6, 5)), np.empty((6, 1, 5)), np.empty((1, 6, 5))
    cpu._bt_down(d, 0, k, down, 0)
    e[0] = d
    cpu._bt_across(e, 0, k, across, 0)
    expected = np.array([cpu._bt(*d[:, j], k) for j in range(5)]).T  # (6, 5)
    np.testing.assert_array_equal(down, expected)
    np.testing.assert_array_equal(across[:, 0], expected)


def test_f45_transforms_written_out_match_the_matrices():
    # F(4x4, 5x5)'s written-out transforms (_bt8_down, _bt8_across, _at8, _a8) against transform_matrices(4, 5)
    AT, G, BT = ref.transform_matrices(4, 5, ref.POINTS_5)
    k = np.array(cpu.K8, np.float64)
    rng = np.random.default_rng(9)
    v8, v4, d = rng.standard_normal(8), rng.standard_normal(4), rng.standard_normal((8, 5))
    np.testing.assert_allclose(cpu._at8(*v8, k), AT @ v8, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cpu._a8(*v4, k), AT.T @ v4, rtol=1e-13, atol=1e-13)
    down, across, e = np.empty((8, 5)), np.empty((8, 1, 5)), np.empty((1, 8, 5))
    cpu._bt8_down(d, 0, k, down, 0)
    e[0] = d
    cpu._bt8_across(e, 0, k, across, 0)
    np.testing.assert_allclose(down, BT @ d, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(across[:, 0], BT @ d, rtol=1e-13, atol=1e-13)
    # the kernel transform and its adjoint, U = G w G^T and dw = G^T dU G, against the matrices
    w = rng.standard_normal((2, 3, 5, 5))
    U = cpu.kernel_transform(w, 1)  # (1, 64, 2, 3)
    np.testing.assert_allclose(U[0].reshape(8, 8, 2, 3), np.einsum("ia,fcab,lb->ilfc", G, w, G), rtol=1e-12,
                               atol=1e-12)
    dU = rng.standard_normal((2, 1, 64, 2, 3))
    dw = np.empty_like(w)
    cpu._kernel_grad_rows(dU, G, 0, 2, dw)
    np.testing.assert_allclose(dw, np.einsum("ia,ilfc,lb->fcab", G, (dU[0, 0] + dU[1, 0]).reshape(8, 8, 2, 3), G),
                               rtol=1e-12, atol=1e-12)


def test_tilings():
    # 3x3 and 5x5 kernels run whole by their own F(4x4, r x r); every other size by F(4x4, 3x3) on its pieces
    assert cpu.tiling(3, 3) is cpu.F43 and cpu.tiling(5, 5) is cpu.F45
    assert cpu.tiling(7, 7) is cpu.F43 and cpu.tiling(5, 3) is cpu.F43 and cpu.tiling(2, 4) is cpu.F43
    assert ref.whole_kernel(5, 5) == 5 and ref.whole_kernel(3, 3) == 3 and ref.whole_kernel(7, 7) is None


def test_a_failing_job_raises_and_the_pool_still_works():
    from kernels.cpu.threads import run_jobs
    done = []

    def job(worker, j):
        if j == 3:
            raise ValueError("job 3 failed")
        done.append(j)

    with pytest.raises(ValueError, match="job 3 failed"):
        run_jobs(job, range(8), threads=2)
    run_jobs(lambda worker, j: done.append(("again", j)), range(4), threads=2)
    assert sorted(j for tag, j in (d for d in done if isinstance(d, tuple))) == [0, 1, 2, 3]


def test_ctrl_c_while_waiting_stops_the_workers_before_it_is_raised():
    import os
    import signal
    import threading
    import time

    from kernels.cpu.threads import run_jobs
    state = {"started": 0, "running": 0}
    lock = threading.Lock()

    def job(worker, j):
        with lock:
            state["started"] += 1
            state["running"] += 1
        time.sleep(0.1)
        with lock:
            state["running"] -= 1

    # Python's own Ctrl-C handler, whatever this process inherited (a shell's background job starts
    # with SIGINT ignored, and Python then keeps it ignored)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.15, lambda: os.kill(os.getpid(), signal.SIGINT))  # a real Ctrl-C
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            run_jobs(job, range(40), threads=2)
        timer.join()
    finally:
        signal.signal(signal.SIGINT, old)
    assert state["running"] == 0  # no job still runs once the interrupt reaches the caller
    assert state["started"] < 40  # and the rest of the queue was dropped


def _layers():
    """(model, layer name, C, F, groups, padding, kernel) of every stride-1 convolution of the three nets."""
    from rawcnn.engine.layers import Conv2d
    from rawcnn.engine.models import build
    out = []
    for model in ("custom", "alexnet", "vgg16"):
        for l in build(model, weight_std=0.0).layers:
            if isinstance(l, Conv2d) and l.stride == (1, 1):
                out.append((model, l.name, l.in_channels, l.out_channels, l.groups, l.padding, l.kernel_size))
    return out


def test_the_model_layers_include_a_5x5():
    assert any(k == (5, 5) for *_, k in _layers())  # AlexNet conv2


@pytest.mark.parametrize("model, name, C, F, groups, padding, kernel", _layers())
def test_float32_error_on_model_layers(model, name, C, F, groups, padding, kernel):
    # real channel counts (the length of the sums), a 10x10 image; inputs like ReLU outputs
    # (non-negative, so no cancellation hides error), weights He-initialised
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((1, C, 10, 10)), 0)
    w = rng.standard_normal((F, C // groups, *kernel)) * np.sqrt(2.0 / (C // groups * kernel[0] * kernel[1]))
    b = rng.standard_normal(F) * 0.1
    hp = dict(geometry=ConvGeometry(S1, padding, groups))
    y_direct = cpu_direct.conv2d_forward(x, w, b, **hp)  # float64: the definition, to 1e-15
    dy = rng.standard_normal(y_direct.shape)
    dx_direct, dw_direct, _ = cpu_direct.conv2d_backward(dy, x, w, **hp)
    f32 = [a.astype(np.float32) for a in (x, w, b, dy)]
    y = cpu.conv2d_forward(*f32[:3], **hp)
    dx, dw, _ = cpu.conv2d_backward(f32[3], f32[0], f32[1], **hp)
    assert max_diff(y, y_direct) < F32_BOUND, f"{model} {name} forward: {max_diff(y, y_direct):.2e}"
    assert max_diff(dx, dx_direct) < F32_BOUND, f"{model} {name} dx: {max_diff(dx, dx_direct):.2e}"
    assert max_diff(dw, dw_direct) < F32_BOUND, f"{model} {name} dw: {max_diff(dw, dw_direct):.2e}"


def test_kernel_pieces_split_and_join():
    # split_kernel's channels p*Cg + c hold piece p of channel c (zeros past the kernel's edge), and
    # join_kernel_grad is its inverse on the kernel's own entries
    w = np.arange(2 * 3 * 5 * 5, dtype=np.float64).reshape(2, 3, 5, 5)
    assert ref.pieces(5, 5) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    w3 = ref.split_kernel(w)
    assert w3.shape == (2, 12, 3, 3)
    np.testing.assert_array_equal(w3[:, 0:3], w[:, :, 0:3, 0:3])
    np.testing.assert_array_equal(w3[:, 3:6, :, :2], w[:, :, 0:3, 3:5])
    np.testing.assert_array_equal(w3[:, 3:6, :, 2], 0)
    np.testing.assert_array_equal(w3[:, 9:12, :2, :2], w[:, :, 3:5, 3:5])
    back = np.empty_like(w)
    np.testing.assert_array_equal(ref.join_kernel_grad(w3, 5, 5, back), w)


def test_direct_reference_agrees_in_float64():
    # the reference Winograd is exact arithmetic re-arranged: float64 agrees with the definition
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 4, 11, 9)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    hp = dict(geometry=ConvGeometry(stride=S1, padding=(1, 2), groups=2))
    assert max_diff(ref.conv2d_forward(x, w, b, **hp), ref_direct.conv2d_forward(x, w, b, **hp)) < 1e-13


# ---------------------------------------------------------------------------------------------
# 4. shapes and errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [(3, 3), (5, 5), (2, 4)])
@pytest.mark.parametrize("padding", [(0, 0), (1, 1), (2, 0), (3, 3)])
def test_output_shapes(tier, kernel, padding):
    x, w, b = np.zeros((2, 4, 7, 6)), np.zeros((6, 2, *kernel)), np.zeros(6)
    y = tier.conv2d_forward(x, w, b, geometry=ConvGeometry(S1, padding, 2))
    assert y.shape == (2, 6, 7 + 2 * padding[0] - kernel[0] + 1, 6 + 2 * padding[1] - kernel[1] + 1)
    dx, dw, db = tier.conv2d_backward(np.zeros(y.shape), x, w, geometry=ConvGeometry(S1, padding, 2))
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape


def test_errors(tier):
    x = np.zeros((1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"needs stride 1, got stride \(2, 2\) for w \(2, 2, 3, 3\)"):
        tier.conv2d_forward(x, np.zeros((2, 2, 3, 3)), np.zeros(2),
                            geometry=ConvGeometry(stride=(2, 2), padding=(0, 0), groups=1))
    with pytest.raises(ValueError, match="groups=2"):
        tier.conv2d_forward(x, np.zeros((3, 1, 3, 3)), np.zeros(3),
                            geometry=ConvGeometry(stride=S1, padding=(0, 0), groups=2))
