"""kernels/cuda/dropout.py: reproducible device masks, and forward/backward vs the reference."""
import numpy as np
import pytest

from kernels import to_numpy

pytestmark = pytest.mark.gpu

# dropout multiplies by 0 or 1/(1-p), exactly representable in both tiers when the same mask is
# used: CUDA in `dtype` vs the reference in float64 differs only by float32 rounding of x*mask.
TOL = {np.float32: dict(rtol=1e-7, atol=0), np.float64: dict(rtol=0, atol=0)}

MASK64 = 2**64 - 1


def splitmix64(seed, i):
    """The (i+1)-th SplitMix64 output in Python integers: an independent statement of the formula."""
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_splitmix64_matches_published_outputs():
    # the first outputs of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c, common test vector)
    assert [splitmix64(1234567, i) for i in range(3)] == [
        6457827717110365317, 3203168211198807973, 9817491932198370423]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_is_the_documented_stream(be, dtype):
    p = 0.4
    mask = to_numpy(be.dropout.dropout_mask((3, 50), p=p, rng=np.random.default_rng(7), dtype=dtype))
    # dropout_mask draws one uint64 seed: repeat that draw, then the formula element by element
    seed = int(np.random.default_rng(7).integers(0, 2**64, dtype=np.uint64))
    u = np.array([(splitmix64(seed, i) >> 11) / 2.0**53 for i in range(150)]).reshape(3, 50)
    want = np.where(u >= p, 1 / (1 - p), 0).astype(dtype)
    assert mask.dtype == dtype and mask.shape == (3, 50)
    np.testing.assert_array_equal(mask, want)


def test_mask_reproducible_and_keeps_one_minus_p(be):
    shape, p = (40, 100), 0.3  # 4000 elements, one thread each
    a = to_numpy(be.dropout.dropout_mask(shape, p=p, rng=np.random.default_rng(11), dtype=np.float32))
    b = to_numpy(be.dropout.dropout_mask(shape, p=p, rng=np.random.default_rng(11), dtype=np.float32))
    c = to_numpy(be.dropout.dropout_mask(shape, p=p, rng=np.random.default_rng(12), dtype=np.float32))
    np.testing.assert_array_equal(a, b)  # same seed, same mask
    assert np.mean(a != c) > 0.2  # another seed, another mask (expected 2*0.3*0.7 = 0.42 differ)
    assert set(np.unique(a)) == {np.float32(0), np.float32(1 / (1 - p))}
    # keep rate 1-p: the standard deviation of the mean over 4000 draws is 0.0072; allow 5 of them
    assert abs(np.mean(a > 0) - (1 - p)) < 0.036
    ones = to_numpy(be.dropout.dropout_mask((5,), p=0.0, rng=np.random.default_rng(0), dtype=np.float64))
    np.testing.assert_array_equal(ones, np.ones(5))  # p = 0 keeps everything, unscaled


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_vs_reference(be, ref, rng, dtype):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)  # (N, C, H, W)
    dy = rng.standard_normal(x.shape).astype(dtype)
    mask = np.where(rng.random(x.shape) >= 0.5, 2.0, 0.0)  # a fixed mask, p = 0.5
    y = be.dropout.dropout_forward(be.asarray(x), be.asarray(mask, dtype=dtype))
    dx = be.dropout.dropout_backward(be.asarray(dy), be.asarray(mask, dtype=dtype))
    y_ref = ref.dropout.dropout_forward(x.astype(np.float64), mask)
    dx_ref = ref.dropout.dropout_backward(dy.astype(np.float64), mask)
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(to_numpy(y), y_ref, **TOL[dtype], err_msg="dropout forward")
    np.testing.assert_allclose(to_numpy(dx), dx_ref, **TOL[dtype], err_msg="dropout backward")


def test_dropout_rejects_bad_input(be):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        be.dropout.dropout_mask((3,), p=1.0, rng=np.random.default_rng(0), dtype=np.float32)
    with pytest.raises(TypeError, match="Generator"):
        be.dropout.dropout_mask((3,), p=0.5, rng=0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        be.dropout.dropout_forward(be.asarray(np.ones((2, 3))), be.asarray(np.ones((3, 2))))
