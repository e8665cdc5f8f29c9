"""bench/lesion_boxes.py: heat maps scored on boxes beside the flat and atlas maps, on the square set."""
import csv
import importlib.util
import os

import numpy as np
import pytest

from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import TrainingState, save_checkpoint
from specs import write_boxes_csv

HERE = os.path.dirname(os.path.abspath(__file__))


def _bench():
    spec = importlib.util.spec_from_file_location("lesion_boxes", os.path.join(HERE, "..", "bench", "lesion_boxes.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_maps_and_baselines_on_boxes(tmp_path, square_net, write_square_set, capsys):
    ckpt = tmp_path / "best.h5"
    save_checkpoint(ckpt, square_net(), state=TrainingState(epoch=1),
                    preprocessing=Preprocessing(scale=1 / 255, input_size=(16, 16), name="unit").to_dict())
    d = write_square_set(tmp_path / "set.h5")
    write_boxes_csv(d, tmp_path / "boxes.csv")
    _bench().main([str(ckpt), "--data", str(tmp_path / "set.h5"), "--boxes", str(tmp_path / "boxes.csv"),
                   "--split", "test", "--out", str(tmp_path / "out")])
    with open(tmp_path / "out" / "baselines.csv") as fh:
        base = {r["map"]: r for r in csv.DictReader(fh)}
    with open(tmp_path / "out" / "score.csv") as fh:
        maps = {r["method"]: r for r in csv.DictReader(fh)}
    test = [i for i in range(12) if i >= 6 and d.labels[i] == 1]          # the test split's boxed images
    area = np.mean([d.lesion_masks[i].mean() for i in test])              # every box is 4x4 of 16x16
    assert float(base["flat"]["energy_lesion"]) == pytest.approx(area) == pytest.approx(16 / 256)
    assert float(base["flat"]["pointing"]) == pytest.approx(area)
    atlas = np.mean([d.lesion_masks[i] for i in range(6) if d.labels[i] == 1], axis=0)  # the train split's boxes
    hits = np.mean([d.lesion_masks[i].ravel()[np.argmax(atlas)] for i in test])
    energy = np.mean([(atlas * d.lesion_masks[i]).sum() / atlas.sum() for i in test])
    assert float(base["atlas (train boxes)"]["pointing"]) == pytest.approx(hits)
    assert float(base["atlas (train boxes)"]["energy_lesion"]) == pytest.approx(energy)
    assert int(base["flat"]["n"]) == len(test) == int(maps["gradcam"]["n"])
    assert float(maps["saliency"]["pointing"]) == 1.0                   # square_net looks at its squares
    assert "atlas (train boxes)" in capsys.readouterr().out
