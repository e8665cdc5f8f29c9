"""Augmenter: determinism, identity at zero ranges, hand-checked shifts and rotations."""
import numpy as np
import pytest

from rawcnn.data.augment import Augmenter


def batch(seed=0, shape=(4, 3, 24, 24), dtype=np.float32):
    return np.random.default_rng(seed).random(shape).astype(dtype)


def test_same_seed_same_output_and_different_seed_differs():
    x = batch()
    a, b, c = Augmenter(0.1, 10, rng=5)(x), Augmenter(0.1, 10, rng=5)(x), Augmenter(0.1, 10, rng=6)(x)
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    gen = np.random.default_rng(5)
    assert np.array_equal(Augmenter(0.1, 10, rng=gen)(x), a)  # a Generator works like its seed
    assert isinstance(Augmenter(0.1, 10, rng=5).rng, np.random.Generator)  # rawcnn.training.train saves its state
    # a generator passed to the call wins over the Augmenter's own
    assert np.array_equal(Augmenter(0.1, 10)(x, np.random.default_rng(5)), a)
    assert np.array_equal(Augmenter(0.1, 10, rng=99)(x, np.random.default_rng(5)), a)
    u8 = (x * 255).astype(np.uint8)
    assert Augmenter(0.1, 10, rng=5)(u8).dtype == np.uint8


def test_each_call_draws_fresh_transforms_and_leaves_input_alone():
    x = batch()
    keep = x.copy()
    aug = Augmenter(0.1, 10, rng=0)
    first, second = aug(x), aug(x)
    assert not np.allclose(first, second)
    assert np.array_equal(x, keep)
    same = np.repeat(x[:1], 4, axis=0)  # four copies of one image
    y = aug(same)
    assert not np.allclose(y[0], y[1])  # each image gets its own transform


def test_zero_ranges_give_the_identity():
    for dtype in (np.float32, np.float64, np.uint8):
        x = (batch(1, dtype=np.float64) * 255).astype(dtype)
        for border in ("reflect", "constant"):
            assert np.array_equal(Augmenter(0.0, 0.0, rng=0, border=border)(x), x)


def test_drawn_transforms_stay_in_range():
    angles, shifts = Augmenter(0.05, 7, rng=0).draw(1000)
    assert angles.shape == (1000,) and shifts.shape == (1000, 2)
    assert np.abs(angles).max() <= 7 and np.abs(angles).max() > 6.5
    assert np.abs(shifts).max() <= 0.05 and np.abs(shifts).max() > 0.045


def test_translation_by_hand():
    x = np.zeros((1, 1, 10, 10), np.float32)
    x[0, 0, 4, 2] = 1.0
    aug = Augmenter(0.1, 0.0, rng=0, border="constant")
    y = aug.apply(x, np.array([0.0]), np.array([[0.3, -0.2]]))  # +3 px right, 2 px up
    expected = np.zeros_like(x)
    expected[0, 0, 2, 5] = 1.0
    assert np.allclose(y, expected, atol=1e-6)


def test_rotation_by_90_degrees_matches_rot90():
    x = batch(2, shape=(2, 3, 9, 9))
    y = Augmenter(0.0, 90.0, rng=0).apply(x, np.array([90.0, -90.0]), np.zeros((2, 2)))
    # counter-clockwise as displayed (row 0 on top) is numpy's rot90 with k = 1
    assert np.allclose(y[0], np.rot90(x[0], k=1, axes=(1, 2)), atol=1e-5)
    assert np.allclose(y[1], np.rot90(x[1], k=-1, axes=(1, 2)), atol=1e-5)


def test_reflect_border_leaves_no_black_wedges():
    x = np.ones((1, 1, 16, 16), np.float32)
    angles, shifts = np.array([10.0]), np.array([[0.1, 0.1]])
    assert np.allclose(Augmenter(0.1, 10, rng=0, border="reflect").apply(x, angles, shifts), 1.0)
    wedge = Augmenter(0.1, 10, rng=0, border="constant").apply(x, angles, shifts)
    assert wedge[0, 0, 0, 0] == 0.0  # the corner came from outside the image


def test_many_channels_and_nearest_for_masks():
    x = batch(3, shape=(2, 6, 12, 12))
    aug = Augmenter(0.1, 10, rng=0)
    angles, shifts = aug.draw(2)
    y = aug.apply(x, angles, shifts)
    for c in range(6):  # channel by channel, or 3 at a time: the same warp
        assert np.allclose(y[:, c:c + 1], aug.apply(x[:, c:c + 1], angles, shifts), atol=1e-6)
    assert np.allclose(y[:, :3], aug.apply(x[:, :3], angles, shifts), atol=1e-6)
    masks = (batch(4, shape=(2, 1, 12, 12)) > 0.5).astype(np.uint8)
    assert set(np.unique(aug.apply(masks, angles, shifts, nearest=True))) <= {0, 1}


def test_bad_arguments():
    with pytest.raises(ValueError, match="no random generator"):
        Augmenter(0.1, 10)(batch())
    with pytest.raises(ValueError, match="border"):
        Augmenter(0.1, 10, rng=0, border="wrap")
    with pytest.raises(ValueError, match=">= 0"):
        Augmenter(-0.1, 10, rng=0)
    with pytest.raises(ValueError, match=r"\(3, 24, 24\)"):
        Augmenter(0.1, 10, rng=0)(batch()[0])
    with pytest.raises(ValueError, match=r"\(4,\) and \(4, 2\)"):
        Augmenter(0.1, 10, rng=0).apply(batch(), np.zeros(3), np.zeros((4, 2)))
