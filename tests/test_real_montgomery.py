"""The real Montgomery County set, when you have it (none is shipped): set RAWCNN_MONTGOMERY to its folder
(CXR_png/ with ManualMask/leftMask + rightMask as NLM ships it, or one mask file a radiograph in masks/ as
redistributed copies have it); skipped otherwise. The counts are the set's published ones (Jaeger et al.,
Quant Imaging Med Surg 4(6), 2014: 138 frontal radiographs, 80 normal and 58 with TB, every one with lung
masks)."""
import os

import h5py
import numpy as np
import pytest

from rawcnn.data.dataset import prepare
from rawcnn.data.readers import read_montgomery

ROOT = os.environ.get("RAWCNN_MONTGOMERY")
pytestmark = pytest.mark.skipif(not ROOT, reason="set RAWCNN_MONTGOMERY to a Montgomery County set to run")


def test_the_whole_set_reads_with_its_labels_and_masks():
    records = read_montgomery(ROOT)
    assert len(records) == 138
    assert sum(r.label for r in records) == 58
    assert all(r.lung_masks for r in records), [r.name for r in records if not r.lung_masks]


def test_prepared_with_the_roi_from_the_masks(tmp_path):
    """The README's `rawcnn data prepare` at a small size: every crop is the masks' box, inside its radiograph,
    and the lungs fill a plausible part of it."""
    prepare(ROOT, tmp_path / "mc.h5", settings={"input_size": 64}, progress=False)
    with h5py.File(tmp_path / "mc.h5", "r") as f:
        assert f["images"].shape == (138, 1, 64, 64)
        assert f["has_lung_mask"][:].all()
        boxes, shapes = f["roi_boxes"][:], f["source_shapes"][:]  # (138, 4), (138, 2)
        lungs = f["lung_masks"][:].reshape(138, -1).mean(axis=1)  # fraction of each crop inside the lungs
        split = f["split"][:]
    y0, y1, x0, x1 = boxes.T  # (y0, y1, x0, x1) in source pixels
    assert np.all((0 <= y0) & (y0 < y1) & (y1 <= shapes[:, 0]) & (0 <= x0) & (x0 < x1) & (x1 <= shapes[:, 1]))
    assert np.all((y1 - y0) * (x1 - x0) < 0.95 * shapes[:, 0] * shapes[:, 1])  # a crop, not the whole film
    assert np.all((lungs > 0.3) & (lungs < 0.9)), lungs.round(2)
    assert sorted(np.unique(split).tolist()) == [0, 1, 2]
