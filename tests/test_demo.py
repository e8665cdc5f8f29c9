"""rawcnn.app.demo: the quick demo end to end (every file written, the summary consistent with them),
the standardising input contract by hand, and bad arguments.

The quick run trains 2 epochs on 28 images: far too short to learn, so no accuracy is asserted.
"""
import csv
import json
import os

import h5py
import numpy as np
import pytest

from rawcnn.app.demo import demo_paths, run_demo, standardise
from rawcnn.viz.heatmap import METHODS

FILES = ("prepared", "best_checkpoint", "last_checkpoint", "history", "curves", "eval_json", "roc_png",
         "localisation", "localisation_images", "report", "summary")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    summary = run_demo(out, seed=3, quick=True, progress=False, log=lines.append)
    return out, summary, lines


def test_quick_demo_writes_every_file(quick):
    out, s, lines = quick
    for key in FILES:
        path = s["paths"][key]
        assert os.path.isfile(path) and os.path.getsize(path) > 0, key
        assert os.path.commonpath([str(out), path]) == str(out), key
        assert any(path in line for line in lines), f"{key} ({path}) is not printed"
    pngs = sorted(os.listdir(os.path.join(s["paths"]["data"], "CXR_png")))
    assert len(pngs) == 40 and pngs[0] in ("MCUCXR_0001_0.png", "MCUCXR_0001_1.png")
    assert len(os.listdir(os.path.join(s["paths"]["data"], "LesionMask"))) == 40
    with open(s["paths"]["report"], encoding="utf-8") as fh:
        page = fh.read()
    assert page.startswith("<!DOCTYPE html>") and "Localisation" in page and "seed 3" in page


def test_quick_demo_summary_is_consistent(quick):
    out, s, _ = quick
    with open(s["paths"]["summary"]) as fh:
        assert json.load(fh) == json.loads(json.dumps(s))
    counts = np.array(s["counts"])  # (3 splits, 2 classes)
    # 40 images, half abnormal, cut 70/20/10 per class: round(20 * 0.7) = 14, round(20 * 0.9) = 18
    assert counts.tolist() == [[14, 14], [4, 4], [2, 2]]
    t = s["test"]
    cm = np.array(t["confusion_matrix"])  # (2, 2) rows true, columns predicted
    assert t["n"] == 4 and cm.sum() == 4 and cm.sum(axis=1).tolist() == [2, 2]
    assert t["accuracy"] == pytest.approx(np.trace(cm) / 4)
    assert t["sensitivity"] == pytest.approx(cm[1, 1] / 2) and t["specificity"] == pytest.approx(cm[0, 0] / 2)
    with open(s["paths"]["eval_json"]) as fh:
        ev = json.load(fh)
    assert ev["accuracy"] == t["accuracy"] and ev["confusion_matrix"] == t["confusion_matrix"]
    with open(s["paths"]["history"], newline="") as fh:
        hist = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in hist] == [1, 2] and s["train"]["epoch"] == 2
    best = max(range(2), key=lambda i: (float(hist[i]["val_acc"]), -i))  # first epoch of the best accuracy
    assert s["train"]["best_epoch"] == best + 1
    assert s["train"]["best_val_acc"] == pytest.approx(float(hist[best]["val_acc"]))
    with h5py.File(s["paths"]["prepared"], "r") as f:
        assert f["images"].shape == (40, 1, 96, 96)
        assert int((f["labels"][:] == 1).sum()) == 20


def test_quick_demo_localisation(quick):
    _, s, _ = quick
    loc = s["localisation"]
    assert set(loc["methods"]) == set(METHODS)
    assert all(m["n"] == 2 for m in loc["methods"].values())  # the 2 abnormal test images
    assert loc["best_pointing"] == max(m["pointing"] for m in loc["methods"].values())
    with open(s["paths"]["localisation"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["method"] for r in rows) == sorted(METHODS)
    with open(s["paths"]["localisation_images"], newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2 * len(METHODS)


def test_standardise_by_hand():
    x = np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 2, 2)  # mean 3, std sqrt(5)
    pp = standardise(np.repeat(x, 3, axis=1), 2)
    assert pp.mean == (3.0, 3.0, 3.0) and pp.std == pytest.approx((5 ** 0.5,) * 3)
    y = pp.apply(np.repeat(x, 3, axis=1))  # (1, 3, 2, 2)
    want = (np.array([[0, 2], [4, 6]]) - 3) / 5 ** 0.5
    assert np.allclose(y[0, 0], want, atol=1e-6) and np.allclose(y[0, 2], want, atol=1e-6)
    with pytest.raises(ValueError, match="constant"):
        standardise(np.full((2, 3, 4, 4), 7, np.uint8), 4)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_images must be >= 20"):
        run_demo(tmp_path, overrides={"n_images": 10}, progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="unknown backend"):
        run_demo(tmp_path, device="tpu", quick=True, progress=False, log=lambda m: None)
    p = demo_paths(tmp_path)
    assert all(v.startswith(str(tmp_path)) for v in p.values())


def test_printed_train_command_repeats_the_demo_training(quick):
    # the demo prints one `rawcnn train` command; run through the CLI it must give the demo's model
    import shlex

    from click.testing import CliRunner

    from cli import main
    from rawcnn.engine.checkpoint import read_checkpoint
    out, s, lines = quick
    cmd = s["train_command"]
    assert any(cmd in line for line in lines)
    args = shlex.split(cmd)
    assert args[:2] == ["rawcnn", "train"]
    r = CliRunner().invoke(main, args[1:], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    cli_dir = args[args.index("--out") + 1]
    a, b = read_checkpoint(s["paths"]["best_checkpoint"]), read_checkpoint(os.path.join(cli_dir, "best.h5"))
    assert a["epoch"] == b["epoch"] and a["preprocessing"] == b["preprocessing"]
    for layer, d in a["params"].items():
        for k, w in d.items():
            np.testing.assert_array_equal(w, b["params"][layer][k], err_msg=f"{layer}/{k}")
    with open(s["paths"]["history"]) as fa, open(os.path.join(cli_dir, "history.csv")) as fb:
        drop = ("seconds", "images_per_s")
        ha = [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fa)]
        hb = [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fb)]
    assert ha == hb
