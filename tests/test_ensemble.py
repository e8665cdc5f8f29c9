"""rawcnn.training.ensemble: k checkpoints as one predictor (the mean of their probabilities), the file that
names them, and `rawcnn cv --save-ensemble` / `predict` / `evaluate` with it.

The oracle is the members themselves: each evaluated alone, their probabilities averaged by hand, and
the AUC of that average by scikit-learn where it is installed.
"""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import cli
from rawcnn.data import load_dataset
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import save_checkpoint
from rawcnn.files.validate import InputError
from rawcnn.training.ensemble import read_ensemble, write_ensemble
from rawcnn.training.evaluate import evaluate_checkpoint, predict

UNIT = Preprocessing(scale=1 / 255, input_size=(16, 16), name="unit")


@pytest.fixture
def members(tmp_path, square_net, write_square_set):
    """Two checkpoints of the square net, the second with other fc8 weights, and the prepared set."""
    paths = []
    for k, scale in enumerate((1.0, 0.3)):
        net = square_net()
        net["fc8"].params["w"] = net["fc8"].params["w"] * scale + 0.05 * k
        p = tmp_path / "ens" / f"fold_{k + 1}" / "best.h5"
        save_checkpoint(p, net, preprocessing=UNIT.to_dict(), meta={"class_names": ["normal", "abnormal"]})
        paths.append(p)
    data = tmp_path / "set.h5"
    write_square_set(data)
    return paths, data, tmp_path


def test_evaluate_and_predict_average_the_members(members):
    paths, data, tmp = members
    ens = write_ensemble(tmp / "ens" / "ensemble.json", paths)
    assert json.loads(open(ens).read())["members"] == ["fold_1/best.h5", "fold_2/best.h5"]
    one = [evaluate_checkpoint(p, data, split="all") for p in paths]
    assert not np.allclose(one[0]["probabilities"], one[1]["probabilities"])  # the members differ
    both = evaluate_checkpoint(ens, data, split="all")
    mean = (one[0]["probabilities"] + one[1]["probabilities"]) / 2
    np.testing.assert_allclose(both["probabilities"], mean, rtol=0, atol=1e-12)
    labels = load_dataset(data).labels
    assert both["loss"] == pytest.approx(-np.mean(np.log(mean[np.arange(len(labels)), labels])))
    sk = pytest.importorskip("sklearn.metrics")
    assert both["auc"] == pytest.approx(sk.roc_auc_score(labels, mean[:, 1]))
    # image files: the same average, through each member's input contract
    d = load_dataset(data)
    files = []
    for i in range(3):
        f = tmp / f"img{i}.png"
        cv2.imwrite(str(f), d.images[i, 0])
        files.append(f)
    p = [predict(m, files) for m in paths]
    np.testing.assert_allclose(predict(ens, files), (p[0] + p[1]) / 2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("content, match", [
    ({"format": "rawcnn-ensemble-1", "members": ["../outside.h5"]}, "outside the ensemble's folder"),
    ({"format": "rawcnn-ensemble-1", "members": ["/etc/passwd"]}, "outside the ensemble's folder"),
    ({"format": "rawcnn-ensemble-1", "members": ["missing.h5"]}, "is not a file"),
    ({"format": "rawcnn-ensemble-1", "members": []}, "non-empty list"),
    ({"format": "rawcnn-ensemble-1", "members": [3]}, "non-empty list"),
    ({"format": "other", "members": ["a.h5"]}, "not a rawcnn ensemble file"),
    ({"format": "rawcnn-ensemble-1", "members": ["a.h5"], "combine": "vote"}, "combine 'vote'"),
    ({"format": "rawcnn-ensemble-1", "members": ["sub"]}, "is not a file"),
])
def test_hostile_ensemble_files_are_refused_by_name(tmp_path, content, match):
    (tmp_path / "a.h5").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "outside.h5").write_bytes(b"x")
    (tmp_path / "in").mkdir()
    f = tmp_path / "in" / "ensemble.json"
    if content["members"] and content["members"][0] in ("a.h5", "sub", "missing.h5"):
        f = tmp_path / "ensemble.json"
    f.write_text(json.dumps(content))
    with pytest.raises(InputError, match=match) as e:
        read_ensemble(f)
    assert str(f) in str(e.value)


def test_members_that_disagree_are_refused(members, square_net):
    paths, data, tmp = members
    other = tmp / "ens" / "other.h5"
    save_checkpoint(other, square_net(), preprocessing=UNIT.to_dict(), meta={"class_names": ["a", "b"]})
    ens = write_ensemble(tmp / "ens" / "bad.json", [paths[0], other])
    with pytest.raises(InputError, match="other class names than the first member"):
        evaluate_checkpoint(ens, data, split="all")


def test_cv_save_ensemble_then_predict_and_evaluate(tmp_path, tiny_conv_spec):
    from rawcnn.data import default_settings, prepare, synthesize
    synthesize(tmp_path / "src", 20, size=64, seed=0, progress=False)
    s = default_settings(32)
    s.update(roi_crop=False)
    prepare(tmp_path / "src", tmp_path / "set.h5", s, seed=0, progress=False)
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(tiny_conv_spec))
    run = CliRunner().invoke(cli.main, ["cv", "--data", str(tmp_path / "set.h5"), "--folds", "2", "--model", str(spec),
                                        "--epochs", "1", "--save-ensemble", "--out", str(tmp_path / "cv")])
    assert run.exit_code == 0, run.output
    assert "ensemble.json" in run.output
    assert [p.split("/")[-2] for p in read_ensemble(tmp_path / "cv" / "ensemble.json")] == ["fold_1", "fold_2"]
    img = next((tmp_path / "src").rglob("MCUCXR_*.png"))
    run = CliRunner().invoke(cli.main, ["predict", str(img), "--checkpoint", str(tmp_path / "cv" / "ensemble.json")])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(cli.main, ["evaluate", str(tmp_path / "cv" / "ensemble.json"), "--data",
                                        str(tmp_path / "set.h5"), "--split", "all", "--json"])
    assert run.exit_code == 0, run.output
    assert 0 <= json.loads(run.output.strip().splitlines()[-1])["auc"] <= 1
