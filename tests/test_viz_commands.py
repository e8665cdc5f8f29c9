"""rawcnn/app/viz.py: each `rawcnn viz ...` task end to end on a checkpoint and a prepared set."""
import csv

import cv2
import numpy as np
import pytest

from rawcnn.app import viz as commands
from rawcnn.app.report import ReportOptions
from rawcnn.app.viz import DreamOptions, HeatmapOptions, Images, ScoreOptions
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import TrainingState, save_checkpoint
from rawcnn.viz.dream import Ascent, input_scale
from specs import write_boxes_csv

UNIT = Preprocessing(scale=1 / 255, input_size=(16, 16), name="unit")   # 0..255 -> [0, 1], nothing else


@pytest.fixture
def setup(tmp_path, square_net, write_square_set):
    ckpt = tmp_path / "run" / "best.h5"
    save_checkpoint(ckpt, square_net(), state=TrainingState(epoch=1), preprocessing=UNIT.to_dict())
    data = tmp_path / "set.h5"
    write_square_set(data)
    return ckpt, data, tmp_path


def test_filters_and_dream(setup):
    ckpt, _, tmp = setup
    assert cv2.imread(commands.viz_filters(ckpt, str(tmp / "f.png"))) is not None
    path = commands.viz_dream(ckpt, str(tmp / "d.png"), DreamOptions(ascent=Ascent(steps=3, octaves=2)))
    img = cv2.imread(path)
    assert img is not None and img.shape[1] > 2 * 128                       # one tile per class
    one_channel = DreamOptions(layer="relu1", channel=0, ascent=Ascent(steps=3))
    one = cv2.imread(commands.viz_dream(ckpt, str(tmp / "c.png"), one_channel))
    assert one.shape[1] < img.shape[1]


def test_input_scale_of_the_unit_contract(setup):
    ckpt = setup[0]
    net, _, to_input = commands.open_checkpoint(ckpt)
    ramp = np.linspace(0, 1, 16)
    assert input_scale(to_input, net.input_shape) == pytest.approx(ramp.std(), rel=0.02)


def test_heatmaps_land_on_the_lesions(setup):
    ckpt, data, tmp = setup
    paths = commands.viz_heatmap(ckpt, tmp / "maps", Images(data=data),
                                 HeatmapOptions(method="gradcam", layer="relu1", save_raw=True))
    assert len(paths) == 6                                                   # the whole test split
    from rawcnn.data import load_dataset
    s = load_dataset(data).split("test")
    for n, p in enumerate(paths):
        assert cv2.imread(p) is not None
        heat = np.load(p[:-4] + ".npy")
        if s.labels[n] == 1:
            i, j = np.unravel_index(np.argmax(heat), heat.shape)
            assert s.lesion_masks[n, i, j] == 1
    with pytest.raises(ValueError, match="--index \\[99\\] does not fit"):
        commands.viz_heatmap(ckpt, tmp / "maps", Images(data=data, indices=[99]))


def test_heatmap_of_an_image_file(setup):
    ckpt, _, tmp = setup
    img = np.zeros((16, 16), np.uint8)
    img[4:8, 8:12] = 255
    cv2.imwrite(str(tmp / "x.png"), img)
    (p,) = commands.viz_heatmap(ckpt, tmp / "maps", Images(images=[tmp / "x.png"]),
                                HeatmapOptions(method="channel", channel=0, layer="relu1", save_raw=True))
    heat = np.load(p[:-4] + ".npy")
    i, j = np.unravel_index(np.argmax(heat), heat.shape)
    assert 4 <= i < 8 and 8 <= j < 12


def test_activations_and_score(setup):
    ckpt, data, tmp = setup
    out = commands.viz_activations(ckpt, tmp / "acts", Images(data=data, indices=[1]), layer="relu1", top_k=1)
    assert out[0]["top"].tolist() == [0]                                     # inside the lesion: channel 0
    assert np.load(out[0]["raw"]).shape == (2, 16, 16)
    t = commands.viz_score(ckpt, data, str(tmp / "loc"), ScoreOptions(layer="relu1"))
    with open(t["paths"][0]) as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert float(rows["gradcam"]["pointing"]) == 1.0


def test_report_command(setup):
    ckpt, data, tmp = setup
    path = commands.report(ckpt.parent, data=data, options=ReportOptions(dream_steps=2, dream_octaves=1))
    text = open(path, encoding="utf-8").read()
    assert "no training history" in text                                    # saved without one
    assert text.count("data:image/png;base64,") == 7                        # all the other pictures


def test_score_with_boxes_gives_the_masks_scores(setup):
    # boxes drawn exactly on the lesion squares, the set's own lesion masks erased: the same table as the masks give
    ckpt, data, tmp = setup
    from rawcnn.data import load_dataset
    d = load_dataset(data)
    write_boxes_csv(d, tmp / "boxes.csv")
    opts = dict(layer="relu1", methods=("gradcam", "saliency"))
    with_masks = commands.viz_score(ckpt, data, None, ScoreOptions(**opts))
    import h5py
    with h5py.File(data, "r+") as f:
        f["lesion_masks"][...] = 0
    without = commands.viz_score(ckpt, data, None, ScoreOptions(**opts))  # lungs only now: no lesion scores
    assert all(np.isnan(r["pointing"]) and np.isnan(r["energy_lesion"]) for r in without["summary"])
    with_boxes = commands.viz_score(ckpt, data, None, ScoreOptions(**opts, boxes=str(tmp / "boxes.csv")))
    assert [r["n"] for r in with_boxes["summary"]] == [r["n"] for r in with_masks["summary"]] == [3, 3]
    for a, b in zip(with_boxes["summary"], with_masks["summary"], strict=True):
        assert {k: v for k, v in a.items() if k != "lesion_area"} == pytest.approx(
            {k: v for k, v in b.items() if k != "lesion_area"}, nan_ok=True)
    from click.testing import CliRunner

    import cli
    run = CliRunner().invoke(cli.main, ["viz", "score", str(ckpt), "--data", str(data), "--layer", "relu1",
                                        "--method", "gradcam", "--boxes", str(tmp / "boxes.csv"),
                                        "--out", str(tmp / "cli")])
    assert run.exit_code == 0, run.output
    with open(tmp / "cli.csv") as fh:
        assert float(next(csv.DictReader(fh))["pointing"]) == with_masks["summary"][0]["pointing"]
    (tmp / "other.csv").write_text("file,x,y,w,h\nnot_in_the_set.png,1,1,2,2\n")
    with pytest.raises(ValueError, match="names none of the 12 images"):
        commands.viz_score(ckpt, data, None, ScoreOptions(**opts, boxes=str(tmp / "other.csv")))
