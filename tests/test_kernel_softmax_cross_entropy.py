"""Softmax cross-entropy kernels: hand values, finite differences, cpu vs reference, shapes and errors.

Tolerances:
    backward vs finite differences, float64 ........ rel_error < 1e-7
    cpu vs reference, loss: relative difference; probs and dlogits: max|cpu - ref| / max|ref|
        float32 .................................... 1e-6
        float64 .................................... 1e-13
"""
import numpy as np
import pytest

from kernels.cpu import softmax_cross_entropy as cpu
from kernels.reference import softmax_cross_entropy as ref
from rawcnn.engine.gradcheck import max_diff, numeric_gradient, rel_error

OP = "softmax_cross_entropy"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7
TOL = {np.float32: 1e-6, np.float64: 1e-13}



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sce_hand_values(tier, dtype):
    # row 0: probs [1/4, 3/4], label 1 -> loss ln(4/3); row 1: logits +-1e4, label 1 -> loss 2e4
    logits = np.array([[0.0, np.log(3.0)], [1e4, -1e4]], dtype=dtype)
    labels = np.array([1, 1], dtype=np.int64)
    loss, probs = tier.softmax_cross_entropy_forward(logits, labels)
    assert isinstance(loss, float) and probs.dtype == dtype
    assert loss == pytest.approx((np.log(4 / 3) + 2e4) / 2, rel=1e-7)
    np.testing.assert_allclose(probs, [[0.25, 0.75], [1.0, 0.0]], rtol=1e-6, atol=1e-30)
    # (probs - onehot) * dloss / N with N = 2, dloss = 3
    dlogits = tier.softmax_cross_entropy_backward(probs, labels, dloss=3.0)
    assert dlogits.dtype == dtype
    np.testing.assert_allclose(dlogits, [[0.25 * 1.5, -0.25 * 1.5], [1.5, -1.5]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sce_extreme_logits_stay_finite(tier, dtype):
    rng = np.random.default_rng(0)
    logits = rng.choice([-1e4, 1e4], (8, 5)).astype(dtype)
    labels = rng.integers(0, 5, 8)
    loss, probs = tier.softmax_cross_entropy_forward(logits, labels)
    dlogits = tier.softmax_cross_entropy_backward(probs, labels)
    assert np.isfinite(loss) and np.isfinite(probs).all() and np.isfinite(dlogits).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)


# Finite differences check the reference; the cpu tier is checked against the reference below.
@pytest.mark.parametrize("dloss", [1.0, 0.5])
def test_sce_backward_matches_finite_differences(dloss):
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    _, probs = ref.softmax_cross_entropy_forward(logits, labels)
    dlogits = ref.softmax_cross_entropy_backward(probs, labels, dloss=dloss)
    num, _ = numeric_gradient(lambda: np.array(ref.softmax_cross_entropy_forward(logits, labels)[0]),
                              logits, np.array(dloss))
    assert rel_error(dlogits, num) < GRAD_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, K, scale", [(1, 1, 1.0), (16, 2, 3.0), (32, 10, 1.0), (5, 1000, 30.0)])
def test_sce_cpu_matches_reference(dtype, N, K, scale):
    rng = np.random.default_rng(2)
    logits, labels = (scale * rng.standard_normal((N, K))).astype(dtype), rng.integers(0, K, N)
    loss, probs = cpu.softmax_cross_entropy_forward(logits, labels)
    loss_ref, probs_ref = ref.softmax_cross_entropy_forward(logits, labels)
    errs = {"loss": abs(loss - loss_ref) / max(abs(loss_ref), 1e-300), "probs": max_diff(probs, probs_ref),
            "dlogits": max_diff(cpu.softmax_cross_entropy_backward(probs_ref, labels, dloss=0.7),
                                ref.softmax_cross_entropy_backward(probs_ref, labels, dloss=0.7))}
    print(f"sce N={N} K={K} {np.dtype(dtype)}: " + ", ".join(f"{n} {e:.1e}" for n, e in errs.items()))
    assert probs.dtype == dtype
    assert all(e < TOL[dtype] for e in errs.values())  # NaN fails


@pytest.mark.parametrize("N, K", [(1, 1), (3, 2), (8, 7)])
def test_sce_shapes_and_errors(tier, N, K):
    logits, labels = np.zeros((N, K), np.float32), np.zeros(N, np.int64)
    loss, probs = tier.softmax_cross_entropy_forward(logits, labels)
    assert probs.shape == tier.softmax_cross_entropy_backward(probs, labels).shape == (N, K)
    assert loss == pytest.approx(np.log(K), abs=1e-6)
    bad = labels.copy()
    bad[-1] = K
    with pytest.raises(ValueError, match=f"label {K} at position {N - 1}"):
        tier.softmax_cross_entropy_forward(logits, bad)
    bad[-1] = -1
    with pytest.raises(ValueError, match="label -1"):
        tier.softmax_cross_entropy_backward(probs, bad)
    with pytest.raises(ValueError, match="labels"):
        tier.softmax_cross_entropy_forward(logits, np.zeros(N + 1, np.int64))
    with pytest.raises(ValueError, match="integer"):
        tier.softmax_cross_entropy_forward(logits, labels.astype(np.float32))
