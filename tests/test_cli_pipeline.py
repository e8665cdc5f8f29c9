"""The chest-radiograph pipeline through the command line: synth -> prepare -> train -> evaluate ->
predict -> viz -> report, and transfer learning from a checkpoint with a new head and frozen layers."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import read_checkpoint, save_checkpoint
from rawcnn.engine.models import build

TINY = {"name": "tiny", "input": [3, 32, 32], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Conv2d", "name": "conv2", "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc7", "out_features": 8},
    {"type": "ReLU", "name": "relu7"},
    {"type": "Linear", "name": "fc8", "out_features": 5}]}


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipe")
    r = run("data", "synth", "--n", 20, "--size", 128, "--seed", 3, "--out", d / "syn")
    assert r.exit_code == 0, r.output
    r = run("data", "prepare", d / "syn", "--out", d / "set.h5", "--input-size", 32, "--base-size", 0)
    assert r.exit_code == 0 and "train" in r.output, r.output
    spec = d / "tiny.json"
    spec.write_text(json.dumps(TINY))
    return d


def test_train_evaluate_predict_viz_report(prepared):
    d = prepared
    r = run("train", "--model", d / "tiny.json", "--data", d / "set.h5", "--out", d / "run", "--epochs", 2,
            "--batch-size", 4, "--seed", 1)
    assert r.exit_code == 0, r.output
    for f in ("last.h5", "best.h5", "history.csv", "curves.png"):
        assert (d / "run" / f).exists(), f
    assert read_checkpoint(d / "run" / "last.h5")["epoch"] == 2
    r = run("evaluate", d / "run" / "best.h5", "--data", d / "set.h5", "--split", "val", "--json")
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.output.strip().splitlines()[-1])
    assert metrics["n"] == 4 and 0 <= metrics["accuracy"] <= 1
    images = sorted((d / "syn" / "CXR_png").glob("*.png"))[:2]
    r = run("predict", "--checkpoint", d / "run" / "best.h5", *images)
    assert r.exit_code == 0 and str(images[1]) in r.output, r.output
    probs = [float(line.split()[1]) for line in r.output.splitlines() if line.startswith("  ")]
    assert len(probs) == 4 and abs(probs[0] + probs[1] - 1) < 1e-3
    r = run("viz", "heatmap", d / "run" / "best.h5", "--data", d / "set.h5", "--index", 0, "--method", "gradcam",
            "--out", d / "hm")
    assert r.exit_code == 0 and "wrote" in r.output, r.output
    r = run("viz", "score", d / "run" / "best.h5", "--data", d / "set.h5", "--method", "channel",
            "--out", d / "score")
    assert r.exit_code == 0 and "pointing" in r.output, r.output
    r = run("report", d / "run", "--data", d / "set.h5")
    assert r.exit_code == 0 and (d / "run" / "report.html").exists(), r.output


def test_transfer_learning_new_head_and_frozen_layers(prepared, tmp_path):
    d = prepared
    base = build(TINY, seed=5, weight_std=0.3)
    pre = Preprocessing(channel_order="BGR", mean=(100.0, 110.0, 120.0), input_size=(32, 32), resize="direct")
    save_checkpoint(tmp_path / "imported.h5", base, preprocessing=pre.to_dict())
    r = run("train", "--weights", tmp_path / "imported.h5", "--data", d / "set.h5", "--num-classes", 2,
            "--new-head-lr-mult", 10, "--freeze-through", "relu2", "--out", tmp_path / "ft", "--epochs", 1,
            "--batch-size", 4)
    assert r.exit_code == 0, r.output
    ck = read_checkpoint(tmp_path / "ft" / "last.h5")
    p = ck["params"]
    np.testing.assert_array_equal(p["conv1"]["w"], base["conv1"].params["w"])  # frozen: untouched
    np.testing.assert_array_equal(p["conv2"]["w"], base["conv2"].params["w"])
    assert not np.array_equal(p["fc7"]["w"], base["fc7"].params["w"])        # trained
    assert p["fc8"]["w"].shape == (2, 8)                                       # the new head
    assert ck["preprocessing"]["channel_order"] == "BGR"                      # the contract travelled
    assert ck["preprocessing"]["mean"] == [100.0, 110.0, 120.0]
    # resume with no transfer flags: the run's frozen layers and head multiplier come back with it
    r = run("train", "--resume", "--data", d / "set.h5", "--out", tmp_path / "ft", "--epochs", 2, "--batch-size", 4)
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    ck2 = read_checkpoint(tmp_path / "ft" / "last.h5")
    assert ck2["epoch"] == 2 and ck2["meta"]["config"]["layers"] == ck["meta"]["config"]["layers"]
    saved = ck2["meta"]["config"]["layers"]
    assert saved["fc8"] == [10.0, True] and saved["conv2"][1] is False
    np.testing.assert_array_equal(ck2["params"]["conv1"]["w"], base["conv1"].params["w"])  # still frozen
    assert not np.array_equal(ck2["params"]["fc7"]["w"], p["fc7"]["w"])                  # still training


def test_bad_inputs_exit_nonzero_with_one_line(prepared, tmp_path):
    d = prepared
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    for args in (("evaluate", junk, "--data", d / "set.h5"),
                 ("train", "--data", junk, "--out", tmp_path / "x"),
                 ("import-weights", junk, "--arch", "vgg16", "--out", tmp_path / "o.h5")):
        r = run(*args)
        assert r.exit_code != 0 and "junk.h5" in r.output, (args, r.output)
        assert "Traceback" not in r.output
    assert not (tmp_path / "o.h5").exists()
