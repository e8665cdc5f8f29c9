"""viz/score.py: pointing game, energy share and IoU on hand-computed cases; the table over a
prepared set (tests/conftest.py's write_square_set, in rawcnn.data.dataset's layout) for a net whose
answer is known (square_net)."""
import csv

import numpy as np
import pytest

from rawcnn.viz.score import (
    ScoreSettings,
    energy_share,
    iou,
    localisation_table,
    lung_scores,
    pointing_game,
    score_map,
)

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


# -- a prepared set and a net that finds bright squares (tests/conftest.py) ------------------------
def test_localisation_table_on_a_prepared_set(tmp_path, write_square_set, square_net, to_input):
    data = write_square_set(tmp_path / "set.h5")
    net = square_net()
    t = localisation_table(net, data, "test", settings=ScoreSettings(layer="relu1", batch_size=2),
                           to_input=to_input, out=tmp_path / "loc.csv")
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


def test_localisation_table_with_lung_masks_only(tmp_path, write_square_set, square_net, to_input):
    data = write_square_set(tmp_path / "set.h5")
    data.lesion_masks[...] = 0
    t = localisation_table(square_net(), data, "test", methods=("channel",),
                           settings=ScoreSettings(layer="relu1", channel=0), to_input=to_input)
    n_lung = int(np.sum(data.split("test").has_lung_mask))
    r = t["summary"][0]
    assert r["n"] == n_lung and np.isnan(r["pointing"]) and np.isnan(r["energy_lesion"])
    assert 0 <= r["energy_lung"] <= 1 and 0 <= r["pointing_lung"] <= 1 and 0 <= r["energy_border"] <= 1
    data.lung_masks[...] = 0
    with pytest.raises(ValueError, match="no image with a non-empty lesion or lung mask"):
        localisation_table(square_net(), data, "test", settings=ScoreSettings(layer="relu1"), to_input=to_input)


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
