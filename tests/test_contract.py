"""The input contract (rawcnn.data.contract): predict on colour files feeds an imported ImageNet net what
its source framework fed it; predict on radiographs crops the lung ROI the way training did (masks,
or the lung-field locator); class names travel with checkpoints and sets."""
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import weights_fixtures as wf
from cli import main
from rawcnn.data.contract import contract_of, find_masks, match_classes
from rawcnn.engine.checkpoint import read_checkpoint, save_checkpoint
from rawcnn.engine.models import build
from rawcnn.training.evaluate import predict
from weights_import import import_to_checkpoint

KERAS_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])  # keras preprocess_input(mode='caffe')


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def imported_vgg(tmp_path):
    """A Keras-1 (TensorFlow) VGG-like weight file imported with `rawcnn import-weights`, and its params."""
    rng = np.random.default_rng(7)
    params = wf.make_params(wf.VGG_MINI, rng, "hwio")
    src = tmp_path / "vgg_mini_keras.h5"
    wf.write_weights_file(src, wf.VGG_MINI, params, "keras1-tf")
    ckpt = tmp_path / "vgg.h5"
    import_to_checkpoint(src, wf.vgg_mini_spec(), ckpt)
    return ckpt, params


def colour_pngs(tmp_path, n=3, seed=0):
    """n colourful PNGs of the mini VGG's input size (16 x 12: no resize), R, G and B all different."""
    rng = np.random.default_rng(seed)
    H, W = wf.VGG_MINI_INPUT[1:]
    paths, bgr = [], []
    for i in range(n):
        im = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)  # (H, W, 3) BGR as OpenCV writes
        im[..., 2] = np.clip(im[..., 2].astype(int) + 60 * i, 0, 255)  # more red in each image
        p = tmp_path / f"colour{i}.png"
        cv2.imwrite(str(p), im)
        paths.append(p)
        bgr.append(im)
    return paths, np.stack(bgr)


def test_predict_on_colour_pngs_is_the_source_frameworks_forward(tmp_path, imported_vgg):
    ckpt, params = imported_vgg
    assert contract_of(read_checkpoint(ckpt)).decode == "color"
    paths, bgr = colour_pngs(tmp_path)
    # Keras: RGB file -> preprocess_input(mode='caffe') = BGR minus the ImageNet mean; TF-convention forward
    x = (bgr.astype(np.float64) - KERAS_CAFFE_MEAN_BGR).transpose(0, 3, 1, 2)  # (N, 3, H, W) BGR
    want = softmax(wf.tf_forward(x, wf.VGG_MINI, params))
    got = predict(ckpt, paths)
    assert np.abs(got - want).max() < 1e-5
    # the grey reading (what predict did before) gives other numbers: the test can fail
    gray = np.repeat(cv2.cvtColor(bgr.reshape(-1, bgr.shape[2], 3), cv2.COLOR_BGR2GRAY).reshape(bgr.shape[:3])[:, None],
                     3, axis=1).astype(np.float64) - KERAS_CAFFE_MEAN_BGR[None, :, None, None]
    assert np.abs(softmax(wf.tf_forward(gray, wf.VGG_MINI, params)) - want).max() > 1e-3
    r = run("predict", *paths, "--checkpoint", ckpt, "--top", 3)
    assert r.exit_code == 0, r.output
    blocks = r.output.strip().split(str(paths[0].parent))[1:]
    for block, p in zip(blocks, want, strict=True):
        printed = [int(line.split()[0]) for line in block.strip().splitlines()[1:]]
        assert printed == list(np.argsort(-p, kind="stable")[:3])


def test_old_imported_checkpoint_without_decode_field_reads_colour(tmp_path, imported_vgg):
    ckpt, _ = imported_vgg
    ck = read_checkpoint(ckpt)
    pre = dict(ck["preprocessing"])
    del pre["decode"]  # as written before the field existed
    net = build(ck["spec"])
    net.load_state_dict(ck["params"])
    old = tmp_path / "old.h5"
    save_checkpoint(old, net, preprocessing=pre, meta=ck["meta"])
    paths, _ = colour_pngs(tmp_path, n=2)
    assert contract_of(read_checkpoint(old)).decode == "color"
    assert np.array_equal(predict(old, paths), predict(ckpt, paths))


def test_find_masks_by_name(tmp_path):
    (tmp_path / "m" / "leftMask").mkdir(parents=True)
    (tmp_path / "m" / "rightMask").mkdir()
    for p in ("m/leftMask/MCUCXR_0001_0.png", "m/rightMask/MCUCXR_0001_0.png", "m/CHNCXR_0002_1_mask.png"):
        cv2.imwrite(str(tmp_path / p), np.zeros((4, 4), np.uint8))
    pair = find_masks("x/MCUCXR_0001_0.png", tmp_path / "m")
    assert [p.parent.name for p in pair] == ["leftMask", "rightMask"]
    assert find_masks("CHNCXR_0002_1.png", tmp_path / "m")[0].name == "CHNCXR_0002_1_mask.png"
    assert find_masks("other.png", tmp_path / "m") is None


class _Set:
    def __init__(self, names, labels):
        self.class_names, self.labels, self.path = list(names), np.array(labels), "set.h5"


def test_class_order_mismatch_is_refused_and_mapped_by_classes():
    with pytest.raises(ValueError, match="class order.*--classes normal,abnormal"):
        match_classes(_Set(["abnormal", "normal"], [0, 1, 1]), ["normal", "abnormal"])
    with pytest.raises(ValueError, match="class names"):
        match_classes(_Set(["cat", "dog"], [0, 1]), ["normal", "abnormal"])
    s = _Set(["abnormal", "normal"], [0, 1, 1])
    note = match_classes(s, ["normal", "abnormal"], classes=["normal", "abnormal"])
    assert s.labels.tolist() == [1, 0, 0] and s.class_names == ["normal", "abnormal"] and "remapped" in note
    assert match_classes(_Set(["normal", "abnormal"], [0]), ["normal", "abnormal"]) == ""
