"""viz/score.py: pointing game, energy share and IoU on hand-computed cases; the table over a
prepared set (written here in rawcnn.data.dataset's layout) for a net whose answer is known."""
import csv
import json

import h5py
import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.data.dataset import load_dataset
from rawcnn.viz.score import energy_share, iou, localisation_table, lung_scores, pointing_game, score_map

HEAT = np.array([[0, 0, 0, 0],
                 [0, 1, 2, 0],
                 [0, 3, 4, 0],
                 [0, 0, 0, 0]], np.float32)            # sum 10, maximum 4 at (2, 2)
LESION = np.zeros((4, 4), np.uint8)
LESION[2, 1:3] = 1                                      # holds 3 + 4 = 7 of the 10


def test_pointing_game_by_hand():
    assert pointing_game(HEAT, LESION) is True
    miss = np.zeros((4, 4), np.uint8)
    miss[1, 1] = 1
    assert pointing_game(HEAT, miss) is False
    assert pointing_game(HEAT, miss, tolerance=1) is True      # (2, 2) is one pixel from (1, 1)
    assert pointing_game(HEAT, np.zeros((4, 4))) is None


def test_energy_share_by_hand():
    assert energy_share(HEAT, LESION) == pytest.approx(0.7)
    lung = np.zeros((4, 4), bool)
    lung[0:2] = True
    assert energy_share(HEAT, lung) == pytest.approx(0.3)
    assert np.isnan(energy_share(np.zeros((4, 4)), LESION))


def test_iou_by_hand():
    assert iou(HEAT, LESION, threshold=2.5) == pytest.approx(1.0)        # {3, 4} is the lesion
    assert iou(HEAT, LESION, threshold=1.5) == pytest.approx(2 / 3)      # {2, 3, 4} vs {3, 4}
    assert iou(HEAT, LESION, threshold=5.0) == pytest.approx(0.0)
    assert np.isnan(iou(np.zeros((4, 4)), np.zeros((4, 4)), threshold=0.5))


def test_map_of_another_size_is_resized_to_the_masks():
    small = np.array([[0, 0], [0, 1]], np.float32)
    corner = np.zeros((4, 4), np.uint8)
    corner[3, 3] = 1
    assert pointing_game(small, corner) is True


def test_score_map_row():
    lung = np.ones((4, 4), np.uint8)
    r = score_map(HEAT, LESION, lung, threshold=2.5)
    assert r == pytest.approx({"pointing": 1.0, "energy_lesion": 0.7, "energy_lung": 1.0, "iou": 1.0,
                               "lesion_area": 2 / 16})
    assert np.isnan(score_map(HEAT, LESION)["energy_lung"])
    with pytest.raises(ValueError, match="non-negative"):
        score_map(-HEAT, LESION)


# -- a prepared set and a net that finds bright squares ------------------------------------------
SQUARE_SPEC = {"name": "square", "input": [1, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 2, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}


def square_net():
    """Channel 0 fires on bright squares (3x3 sums minus 4), channel 1 is a constant 0.15;
    class 1 sums channel 0's pooled cells, class 0 channel 1's (input in [0, 1])."""
    net = models.build(SQUARE_SPEC, seed=0)
    w, b = net["conv1"].params["w"], net["conv1"].params["b"]
    w[...] = 0.0
    w[0] = 1.0
    b[...] = [-4.0, 0.15]
    fw = net["fc8"].params["w"]
    fw[...] = 0.0
    fw[1, :64] = 1.0
    fw[0, 64:] = 1.0
    return net


def to_input(x):
    return np.asarray(x, np.float32) / 255.0


def write_prepared(path, n=12, seed=0):
    """n 16x16 images in rawcnn.data.dataset's file layout: odd ones abnormal with a 4x4 bright
    square (its lesion mask), lungs = the middle rows; split train/val/test = first half / - / rest."""
    rng = np.random.default_rng(seed)
    S = 16
    images = np.zeros((n, 1, S, S), np.uint8)
    lesions = np.zeros((n, S, S), np.uint8)
    lungs = np.zeros((n, S, S), np.uint8)
    lungs[:, 2:14, 1:15] = 1
    labels = np.arange(n) % 2
    for i in np.flatnonzero(labels == 1):
        r, c = rng.integers(2, 10, size=2)
        images[i, 0, r:r + 4, c:c + 4] = 255
        lesions[i, r:r + 4, c:c + 4] = 1
    split = np.where(np.arange(n) < n // 2, 0, 2).astype(np.int8)
    with h5py.File(path, "w") as f:
        f["images"], f["labels"], f["split"] = images, labels.astype(np.int64), split
        f["names"] = np.array([f"img{i:03d}_{labels[i]}" for i in range(n)], dtype=h5py.string_dtype("utf-8"))
        f["lung_masks"], f["lesion_masks"] = lungs, lesions
        f["has_lung_mask"] = np.ones(n, np.uint8)
        f["has_lesion_mask"] = np.ones(n, np.uint8)
        f["roi_boxes"] = np.tile(np.array([0, S, 0, S], np.int32), (n, 1))
        f["source_shapes"] = np.full((n, 2), S, np.int32)
        f.attrs.update({"format": "rawcnn-prepared-1", "rawcnn_version": "test",
                        "settings": json.dumps({"channels": 1, "input_size": S}),
                        "class_names": json.dumps(["normal", "abnormal"]), "source": "test",
                        "layout": "montgomery", "seed": seed, "split_fractions": json.dumps([0.5, 0, 0.5]),
                        "skipped": "[]"})
    return load_dataset(path)


def test_localisation_table_on_a_prepared_set(tmp_path):
    data = write_prepared(tmp_path / "set.h5")
    net = square_net()
    t = localisation_table(net, data, "test", layer="relu1", to_input=to_input, batch_size=2,
                           out=tmp_path / "loc.csv")
    assert t["channel"] == 0                                   # chosen inside the train split's lesions
    by = {r["method"]: r for r in t["summary"]}
    assert set(by) == {"channel", "gradcam", "saliency"}
    n_abnormal = int(np.sum(data.split("test").labels == 1))
    assert all(r["n"] == n_abnormal for r in t["summary"])     # normal images have empty masks: skipped
    assert by["channel"]["pointing"] == 1.0 and by["gradcam"]["pointing"] == 1.0
    for r in t["summary"]:
        assert r["energy_lesion"] > 2 * r["lesion_area"]       # far better than a flat map
        assert r["energy_lung"] >= r["energy_lesion"]                # the lesions lie inside the lungs
    with open(tmp_path / "loc.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == ["channel", "gradcam", "saliency"]
    assert float(rows[1]["pointing"]) == 1.0
    with open(tmp_path / "loc_images.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 3 * n_abnormal


def test_localisation_table_with_lung_masks_only(tmp_path):
    data = write_prepared(tmp_path / "set.h5")
    data.lesion_masks[...] = 0
    t = localisation_table(square_net(), data, "test", layer="relu1", to_input=to_input, methods=("channel",),
                           channel=0)
    n_lung = int(np.sum(data.split("test").has_lung_mask))
    r = t["summary"][0]
    assert r["n"] == n_lung and np.isnan(r["pointing"]) and np.isnan(r["energy_lesion"])
    assert 0 <= r["energy_lung"] <= 1 and 0 <= r["pointing_lung"] <= 1 and 0 <= r["energy_border"] <= 1
    data.lung_masks[...] = 0
    with pytest.raises(ValueError, match="no image with a non-empty lesion or lung mask"):
        localisation_table(square_net(), data, "test", layer="relu1", to_input=to_input)


def test_lung_scores_border_corners_and_zero_maps():
    heat = np.zeros((20, 20))
    heat[0, 0] = 3.0       # a corner (film marker)
    heat[10, 10] = 1.0     # the middle
    lung = np.zeros((20, 20), np.uint8)
    lung[5:15, 5:15] = 1
    r = lung_scores(heat, lung)
    assert r["pointing_lung"] == 0.0                                 # the maximum is in the corner
    assert r["energy_border"] == pytest.approx(0.75) and r["energy_corners"] == pytest.approx(0.75)
    assert all(np.isnan(v) for v in lung_scores(np.zeros((20, 20)), lung).values())
