"""Synthetic radiographs: determinism, the Montgomery layout, and masks that make sense."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from rawcnn.data.synth import LESION_KINDS, render_case, synthesize

N, SIZE = 12, 128


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "set"
    records = synthesize(out, N, size=SIZE, seed=3, progress=False)
    return out, records


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(synth_dir, tmp_path):
    out, _ = synth_dir
    synthesize(tmp_path / "again", N, size=SIZE, seed=3, progress=False)
    synthesize(tmp_path / "other", N, size=SIZE, seed=4, progress=False)
    first, again, other = tree_bytes(out), tree_bytes(tmp_path / "again"), tree_bytes(tmp_path / "other")
    assert len(first) == 5 * N  # image, two lung masks, lesion mask, clinical reading per case
    assert first == again
    images = [k for k in first if k.startswith("CXR_png/")]
    other_images = [k for k in other if k.startswith("CXR_png/")]
    assert [first[k] for k in images] != [other[k] for k in other_images]


def test_image_i_does_not_depend_on_n(tmp_path):
    # every image has its own Generator spawned from the seed; with all images abnormal the
    # labels cannot differ, so the first two files of a 2-image and a 4-image set must agree
    two = synthesize(tmp_path / "two", 2, size=SIZE, seed=5, abnormal_fraction=1.0, progress=False)
    four = synthesize(tmp_path / "four", 4, size=SIZE, seed=5, abnormal_fraction=1.0, progress=False)
    for a, b in zip(two, four[:2], strict=True):
        assert a.path.name == b.path.name
        assert a.path.read_bytes() == b.path.read_bytes()
        assert a.lesion_mask.read_bytes() == b.lesion_mask.read_bytes()


def test_layout_labels_and_readings(synth_dir):
    out, records = synth_dir
    assert len(records) == N
    assert sorted(r.label for r in records) == [0] * 6 + [1] * 6  # round(12 * 0.5) abnormal
    for i, rec in enumerate(records):
        stem = f"MCUCXR_{i + 1:04d}_{rec.label}"
        assert rec.path == out / "CXR_png" / f"{stem}.png"
        for sub in ("ManualMask/leftMask", "ManualMask/rightMask", "LesionMask"):
            assert (out / sub / f"{stem}.png").is_file()
        text = (out / "ClinicalReadings" / f"{stem}.txt").read_text()
        assert text.startswith("Patient's Sex: ") and "Patient's Age: 0" in text
        finding = text.strip().splitlines()[-1]
        if rec.label == 0:
            assert finding == "normal"
        else:
            assert any(kind in finding for kind in LESION_KINDS)
        image = read(rec.path)
        assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8


def test_masks_are_sensible(synth_dir):
    out, records = synth_dir
    for rec in records:
        left = read(out / "ManualMask/leftMask" / rec.path.name) > 0
        right = read(out / "ManualMask/rightMask" / rec.path.name) > 0
        lesion = read(out / "LesionMask" / rec.path.name) > 0
        lung = left | right
        assert not (left & right).any()
        assert 0.10 < lung.mean() < 0.35, lung.mean()  # 300 seeds at 64-128 px gave 0.12-0.24
        cols = np.arange(SIZE)
        # the patient's left lung is on the image's right
        assert (left.sum(0) @ cols) / left.sum() > SIZE / 2 > (right.sum(0) @ cols) / right.sum()
        assert not (lesion & ~lung).any()  # lesions lie inside the lungs
        assert lesion.any() == (rec.label == 1)
        image = read(rec.path).astype(np.float64)
        body_centre = image[SIZE // 2:, SIZE // 2 - 4:SIZE // 2 + 4]
        assert image[lung & ~lesion].mean() + 40 < body_centre.mean()  # lungs are dark


@pytest.mark.parametrize("kind", ["nodule", "consolidation", "effusion"])
def test_dense_lesions_are_brighter_than_their_lung(kind):
    for seed in range(3):
        case = render_case(np.random.default_rng(seed), SIZE, kinds=[kind])
        lesion = case.lesion_mask > 0
        side = case.right_lung if case.lesions[0][1] == "right" else case.left_lung
        rest = (side > 0) & ~lesion
        image = case.image.astype(np.float64)
        assert lesion.sum() >= 20, lesion.sum()  # visible at 128 px, not a speck
        assert image[lesion].mean() > image[rest].mean() + 15


def test_cavity_has_a_bright_wall_and_a_dark_centre():
    for seed in range(3):
        case = render_case(np.random.default_rng(seed), SIZE, kinds=["cavity"])
        lesion = (case.lesion_mask > 0).astype(np.uint8)
        depth = cv2.distanceTransform(lesion, cv2.DIST_L2, 5)
        image = case.image.astype(np.float64)
        wall = (depth > 0) & (depth <= 0.5 * depth.max())
        centre = depth >= 0.85 * depth.max()
        assert image[wall].mean() > image[centre].mean() + 15


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="n >= 1"):
        synthesize(tmp_path / "a", 0, size=SIZE, progress=False)
    with pytest.raises(ValueError, match="abnormal_fraction"):
        synthesize(tmp_path / "a", 2, size=SIZE, abnormal_fraction=1.5, progress=False)


def test_existing_set_is_refused_unless_overwrite(synth_dir, tmp_path):
    synthesize(tmp_path / "s", 4, size=SIZE, seed=0, progress=False)
    with pytest.raises(ValueError, match="overwrite"):
        synthesize(tmp_path / "s", 2, size=SIZE, seed=0, progress=False)
    records = synthesize(tmp_path / "s", 2, size=SIZE, seed=0, progress=False, overwrite=True)
    assert len(records) == 2
    assert len(list((tmp_path / "s" / "CXR_png").iterdir())) == 2
