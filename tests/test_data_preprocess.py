"""Preprocessing: shapes and dtypes on real radiographs, CLAHE, masks carried through the crop."""
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from rawcnn.data.preprocess import default_settings, lung_roi_box, preprocess_image

NIH = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-cxr14-samples"


def nih_images():
    if not (NIH / "labels.csv").is_file():
        pytest.skip(f"NIH samples not found at {NIH}")
    with open(NIH / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    return [(cv2.imread(str(NIH / r["file"]), cv2.IMREAD_GRAYSCALE), int(r["size"])) for r in rows]


def local_std(y, b=32):
    """Mean over b x b blocks of the block's standard deviation: a local-contrast measure."""
    H, W = y.shape
    blocks = y[:H // b * b, :W // b * b].astype(np.float64).reshape(H // b, b, W // b, b)
    return blocks.std(axis=(1, 3)).mean()


def test_real_radiographs_default_settings():
    for x, size in nih_images()[:3] + nih_images()[-1:]:
        assert x.shape == (size, size)
        y, lung, lesion = preprocess_image(x)
        assert y.shape == (3, 227, 227) and y.dtype == np.uint8
        assert lung is None and lesion is None
        assert (y[0] == y[1]).all() and (y[0] == y[2]).all()
        assert y.std() > 20  # a radiograph, not a flat image


def test_clahe_raises_local_contrast_on_real_radiographs():
    plain = dict(base_size=512, input_size=None, clahe=False, channels=1)
    for x, _ in nih_images():
        a, _, _ = preprocess_image(x, settings=plain)
        b, _, _ = preprocess_image(x, settings={**plain, "clahe": True})
        assert a.shape == b.shape == (512, 512)
        assert local_std(b) > 1.25 * local_std(a)


def test_masks_follow_the_crop_and_resizes():
    # 200 x 300 image; lung box rows 50..149, cols 60..259; a bright 20 x 20 lesion square
    x = np.zeros((200, 300), np.uint8)
    lung = np.zeros((200, 300), np.uint8)
    lung[50:150, 60:260] = 255
    x[50:150, 60:260] = 100
    lesion = np.zeros((200, 300), bool)
    lesion[90:110, 150:170] = True
    x[lesion] = 250
    s = dict(roi_crop=True, roi_margin=0.0, base_size=100, clahe=False, input_size=50, channels=1)
    y, lung_y, lesion_y, box = preprocess_image(x, lung, lesion, s, return_box=True)
    assert box == (50, 150, 60, 260)
    assert y.shape == lung_y.shape == lesion_y.shape == (50, 50)
    assert lung_y.dtype == lesion_y.dtype == np.uint8
    assert (lung_y == 1).all()  # the crop is exactly the lung box
    # by hand: crop rows 40..59, cols 90..109; 100x200 -> 100x100 samples col 2j+1, so cols
    # 45..54; 100 -> 50 samples 2j+1 again: rows 20..29, cols 22..26
    expected = np.zeros((50, 50), np.uint8)
    expected[20:30, 22:27] = 1
    assert (lesion_y == expected).all()
    # the image is area-averaged: every fully-lesion output pixel (250) is inside the mask, and
    # every mask pixel is at least half lesion, (100 + 250) / 2 = 175
    assert (lesion_y[y == 250] == 1).all() and (y == 250).sum() == 10 * 4
    assert y[lesion_y == 1].min() >= 175 and np.median(y[lesion_y == 0]) == 100


def test_roi_margin_is_clipped_to_the_image():
    lung = np.zeros((200, 300), np.uint8)
    lung[50:150, 60:260] = 1
    assert lung_roi_box(lung, 0.1) == (40, 160, 40, 280)  # 10 % of 100 rows, of 200 columns
    lung[:5] = 1
    lung[:, 295:] = 1
    assert lung_roi_box(lung, 0.1) == (0, 200, 0, 300)
    assert lung_roi_box(np.zeros((4, 4), np.uint8), 0.1) is None


def test_no_crop_without_a_mask_and_optional_steps():
    x = np.tile(np.arange(64, dtype=np.uint8), (32, 1))  # (32, 64) horizontal ramp
    s = dict(base_size=None, clahe=False, input_size=None, channels=1)
    y, _, _, box = preprocess_image(x, settings=s, return_box=True)
    assert box == (0, 32, 0, 64) and (y == x).all()  # every step off: the identity
    y, _, _ = preprocess_image(x, settings={**s, "input_size": 16})
    assert y.shape == (16, 16)
    assert (np.diff(y.astype(int), axis=1) > 0).all()  # still a left-to-right ramp


def test_default_settings_and_bad_input():
    assert default_settings(224)["input_size"] == 224
    assert default_settings()["base_size"] == 1024 and default_settings()["clahe"] is True
    x = np.zeros((10, 12), np.uint8)
    with pytest.raises(ValueError, match=r"\(10, 11\).*\(10, 12\)"):
        preprocess_image(x, lung_mask=np.zeros((10, 11)))
    with pytest.raises(ValueError, match="2-D uint8"):
        preprocess_image(x.astype(np.float32))
    with pytest.raises(ValueError, match="unknown keys"):
        preprocess_image(x, settings={"clahe_clip": 3})
    with pytest.raises(ValueError, match="channels"):
        preprocess_image(x, settings={"channels": 2})


def test_mask_outside_zeroes_exactly_the_pixels_outside_the_lungs():
    rng = np.random.default_rng(4)
    x = rng.integers(1, 256, (120, 100), dtype=np.uint8)  # no zero pixel of its own
    lung = np.zeros((120, 100), np.uint8)
    lung[20:90, 10:45] = 1
    lung[25:95, 55:92] = 1
    s = dict(base_size=None, input_size=64, roi="masks", clahe=True)
    plain, lung_y, _ = preprocess_image(x, lung, None, s)
    masked, lung_m, _ = preprocess_image(x, lung, None, {**s, "mask_outside": True})
    np.testing.assert_array_equal(lung_m, lung_y)
    inside = lung_y.astype(bool)  # (64, 64), the mask as resized with the image
    assert 0.2 < inside.mean() < 0.9
    assert (masked[:, ~inside] == 0).all()
    np.testing.assert_array_equal(masked[:, inside], plain[:, inside])  # CLAHE still sees the whole crop
    assert (plain[:, ~inside] > 0).any()
    # the default leaves the image alone, and mask_outside without a mask is an error that says why
    assert default_settings()["mask_outside"] is False
    with pytest.raises(ValueError, match="mask_outside .*needs the image's lung mask"):
        preprocess_image(x, None, None, {**s, "mask_outside": True})
    with pytest.raises(ValueError, match="mask_outside must be true or false"):
        preprocess_image(x, lung, None, {**s, "mask_outside": "yes"})
