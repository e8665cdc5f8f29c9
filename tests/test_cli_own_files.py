"""A user's own files through the command line: a folder-per-class set named normal/ abnormal/ (the
class order is said, and a checkpoint with another order is refused unless --classes maps it), a DICOM
radiograph through `data prepare` and `predict`, and bad input as one line with exit 1."""
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from rawcnn.app.demo import standardise
from rawcnn.data import load_dataset
from rawcnn.engine.models import build
from rawcnn.training.recipes import resolve
from rawcnn.training.train import Run, train
from test_data_sources import write_dicom


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_conv_spec):
    d = tmp_path_factory.mktemp("own")
    assert run("data", "synth", "--n", 20, "--size", 96, "--seed", 4, "--out", d / "syn").exit_code == 0
    assert run("data", "prepare", d / "syn", "--out", d / "nlm.h5", "--input-size", 32,
               "--base-size", 0).exit_code == 0
    data = load_dataset(d / "nlm.h5")
    assert data.class_names == ["normal", "abnormal"]
    train(build(tiny_conv_spec, seed=0, weight_std="he"), data, resolve("paper", epochs=1, batch_size=7, lr=1e-3),
          Run(out_dir=d / "run", progress=False, log=lambda m: None),
          preprocessing=standardise(data.split("train").images, 32))
    for cls, label in (("normal", 0), ("abnormal", 1)):
        (d / "tree" / cls).mkdir(parents=True)
        (d / "dicom" / cls).mkdir(parents=True)
        for p in sorted((d / "syn" / "CXR_png").glob(f"*_{label}.png")):
            shutil.copy(p, d / "tree" / cls / p.name)
            x = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 16  # 12-bit values
            write_dicom(d / "dicom" / cls / f"{p.stem}.dcm", x)
    return d


def test_folder_per_class_order_is_said_and_checked(files):
    d = files
    r = run("data", "prepare", d / "tree", "--out", d / "tree.h5", "--input-size", 32, "--base-size", 0)
    assert r.exit_code == 0 and "class order ['abnormal', 'normal']" in r.output, r.output
    assert load_dataset(d / "tree.h5").settings["roi"] == "none"  # no masks: what was done is recorded
    r = run("evaluate", d / "run" / "best.h5", "--data", d / "tree.h5", "--split", "all")
    assert r.exit_code == 1 and "--classes normal,abnormal" in r.output and len(r.output.strip().splitlines()) == 1
    ok = run("evaluate", d / "run" / "best.h5", "--data", d / "tree.h5", "--split", "all",
             "--classes", "normal,abnormal", "--json")
    # the same 20 files prepared from the NLM layout without the ROI crop (the tree has no lung masks)
    assert run("data", "prepare", d / "syn", "--out", d / "nlm_none.h5", "--input-size", 32, "--base-size", 0,
               "--roi", "none").exit_code == 0
    ref = run("evaluate", d / "run" / "best.h5", "--data", d / "nlm_none.h5", "--split", "all", "--json")
    assert ok.exit_code == 0 and ref.exit_code == 0, ok.output
    acc = lambda out: float(out.split('"accuracy": ')[1].split(",")[0])
    assert acc(ok.output) == acc(ref.output)  # the same 20 images, the same labels after the mapping
    wrong = run("evaluate", d / "run" / "best.h5", "--data", d / "tree.h5", "--split", "all", "--json",
                "--classes", "abnormal,normal")  # the identity: labels as sorted, meaning flipped
    assert wrong.exit_code == 0 and acc(wrong.output) == pytest.approx(1 - acc(ref.output))
    r = run("data", "prepare", d / "tree", "--out", d / "tree2.h5", "--input-size", 32, "--base-size", 0,
            "--classes", "normal,abnormal")
    assert r.exit_code == 0 and "class order" not in r.output
    assert load_dataset(d / "tree2.h5").class_names == ["normal", "abnormal"]


def test_dicom_through_prepare_and_predict(files):
    d = files
    r = run("data", "prepare", d / "dicom", "--out", d / "dicom.h5", "--input-size", 32, "--base-size", 0,
            "--classes", "normal,abnormal", "--roi", "locator")
    assert r.exit_code == 0, r.output
    assert load_dataset(d / "dicom.h5").settings["roi"] == "locator"
    dcm = sorted((d / "dicom" / "abnormal").glob("*.dcm"))[0]
    r = run("predict", "--checkpoint", d / "run" / "best.h5", dcm)
    assert r.exit_code == 0 and "abnormal" in r.output and "normal" in r.output, r.output


def test_bad_files_are_one_line_and_exit_1(files, tmp_path):
    d = files
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    r = run("predict", "--checkpoint", d / "run" / "best.h5", bad)
    assert r.exit_code == 1 and "broken.png" in r.output and "Traceback" not in r.output
    nopix = write_dicom(tmp_path / "nopix.dcm", np.zeros((8, 8), np.uint16), pixels=False)
    r = run("predict", "--checkpoint", d / "run" / "best.h5", nopix)
    assert r.exit_code == 1 and "nopix.dcm: DICOM without pixel data" in r.output


def test_train_from_weights_refuses_another_class_order(files, tmp_path):
    d = files
    if not (d / "tree.h5").exists():
        run("data", "prepare", d / "tree", "--out", d / "tree.h5", "--input-size", 32, "--base-size", 0)
    args = ("train", "--weights", d / "run" / "best.h5", "--data", d / "tree.h5", "--epochs", 1, "--batch-size", 7,
            "--no-augment")
    r = run(*args, "--out", tmp_path / "a")
    assert r.exit_code == 1 and "--classes normal,abnormal" in r.output and not (tmp_path / "a").exists()
    r = run(*args, "--out", tmp_path / "b", "--classes", "normal,abnormal")
    assert r.exit_code == 0 and "labels remapped by --classes" in r.output, r.output
