"""kernels/cuda/softmax_cross_entropy.py against hand values and the reference tier."""
import numpy as np
import pytest

from kernels import to_numpy

pytestmark = pytest.mark.gpu

# CUDA result in `dtype` vs the reference in float64 on the same values. The loss is summed in
# float64 by both, from float32 or float64 logits.
TOL = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-15)}


def test_sce_hand_values(be):
    logits = be.asarray(np.zeros((2, 4)))  # uniform: loss = log 4 whatever the labels
    labels = be.asarray(np.array([3, 0], dtype=np.int64))
    loss, probs = be.softmax_cross_entropy.softmax_cross_entropy_forward(logits, labels)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.log(4.0), rel=1e-14)
    dlogits = be.softmax_cross_entropy.softmax_cross_entropy_backward(probs, labels, dloss=2.0)
    want = np.full((2, 4), 0.25)  # (probs - onehot) * dloss / N with N = 2, dloss = 2
    want[0, 3] -= 1
    want[1, 0] -= 1
    np.testing.assert_allclose(to_numpy(dlogits), want, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sce_stable_at_1e4(be, dtype):
    logits = be.asarray(np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=dtype))
    labels = be.asarray(np.array([1, 1], dtype=np.int64))
    loss, probs = be.softmax_cross_entropy.softmax_cross_entropy_forward(logits, labels)
    assert loss == pytest.approx(1e4, rel=1e-6)  # row 0 costs 2e4, row 1 costs 0; mean 1e4
    np.testing.assert_array_equal(to_numpy(probs), [[1, 0], [0, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sce_vs_reference(be, ref, rng, dtype):
    logits = (4 * rng.standard_normal((6, 5))).astype(dtype)  # (N, K)
    labels = rng.integers(0, 5, size=6)  # (N,) int64
    sce, sce_ref = be.softmax_cross_entropy, ref.softmax_cross_entropy
    loss, probs = sce.softmax_cross_entropy_forward(be.asarray(logits), be.asarray(labels))
    dlogits = sce.softmax_cross_entropy_backward(probs, be.asarray(labels), dloss=0.5)
    loss_ref, probs_ref = sce_ref.softmax_cross_entropy_forward(logits.astype(np.float64), labels)
    dlogits_ref = sce_ref.softmax_cross_entropy_backward(probs_ref, labels, dloss=0.5)
    assert probs.dtype == dtype and dlogits.dtype == dtype
    assert loss == pytest.approx(loss_ref, rel=TOL[dtype]["rtol"])
    np.testing.assert_allclose(to_numpy(probs), probs_ref, **TOL[dtype], err_msg="probs")
    np.testing.assert_allclose(to_numpy(dlogits), dlogits_ref, **TOL[dtype], err_msg="dlogits")


def test_sce_rejects_bad_input(be):
    logits = be.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="label 3 at position 1"):
        be.softmax_cross_entropy.softmax_cross_entropy_forward(logits, be.asarray(np.array([0, 3])))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        be.softmax_cross_entropy.softmax_cross_entropy_forward(logits, be.asarray(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match="integer labels"):
        be.softmax_cross_entropy.softmax_cross_entropy_backward(logits, be.asarray(np.array([0.0, 1.0])))
