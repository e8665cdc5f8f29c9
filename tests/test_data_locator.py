"""The mask-free lung-field locator (rawcnn.data.locator) against the real lung masks' boxes, and
the `roi` setting that records where the crop's box came from."""
import numpy as np
import pytest

from rawcnn.data import check_settings, preprocess_image, render_case
from rawcnn.data.locator import box_iou, box_mask, locate_lungs, mask_box


@pytest.fixture(scope="module")
def cases():
    return [render_case(np.random.default_rng(s), 256, abnormal=bool(s % 2)) for s in range(12)]


def test_box_iou_by_hand():
    assert box_iou((0, 10, 0, 10), (0, 10, 0, 10)) == 1.0
    assert box_iou((0, 10, 0, 10), (0, 10, 5, 15)) == pytest.approx(50 / 150)
    assert box_iou((0, 2, 0, 2), (5, 6, 5, 6)) == 0.0
    assert mask_box(box_mask((2, 5, 1, 4), (8, 8))) == (2, 5, 1, 4)
    assert mask_box(np.zeros((3, 3))) is None


def test_locator_box_matches_the_lung_masks_box(cases):
    ious = []
    for c in cases:
        truth = mask_box((c.left_lung > 0) | (c.right_lung > 0))
        found = locate_lungs(c.image)
        ious.append(0.0 if found is None else box_iou(truth, found))
    print(f"locator box IoU on {len(ious)} synthetic radiographs: mean {np.mean(ious):.3f}, min {np.min(ious):.3f}")
    assert np.mean(ious) > 0.88 and np.min(ious) > 0.75


def test_locator_finds_nothing_in_a_flat_image():
    assert locate_lungs(np.full((128, 128), 200, np.uint8)) is None


def test_roi_setting_defaults_and_old_settings():
    assert check_settings({})["roi"] == "masks"
    assert check_settings({"roi_crop": False})["roi"] == "none"
    assert check_settings({"roi": "locator"})["roi_crop"] is True
    with pytest.raises(ValueError, match="roi must be one of"):
        check_settings({"roi": "guess"})


def test_roi_locator_crops_without_masks_and_keeps_masks_aligned(cases):
    c = cases[1]
    lung = ((c.left_lung > 0) | (c.right_lung > 0)).astype(np.uint8)
    s = {"roi": "locator", "roi_margin": 0.0, "base_size": None, "clahe": False, "input_size": None, "channels": 1}
    y, lung_y, _, box = preprocess_image(c.image, lung, None, s, return_box=True)
    assert box == locate_lungs(c.image)
    assert y.shape == (box[1] - box[0], box[3] - box[2]) and lung_y.shape == y.shape
    assert np.array_equal(lung_y, lung[box[0]:box[1], box[2]:box[3]])
    s_masks = {**s, "roi": "masks"}
    assert preprocess_image(c.image, lung, None, s_masks, return_box=True)[3] == mask_box(lung)
