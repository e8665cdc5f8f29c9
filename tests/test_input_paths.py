"""Every path from an image file to the net goes through the input contract (rawcnn.data.contract): for
the same file and checkpoint, `predict`, `trace` and the viz commands feed the net the same tensor.

The tensor is caught where it enters the net (the first Net.forward of each command, run through
the command line), so the test sees what each command really fed, not what a helper returns.
Cases: a grey radiograph checkpoint trained on lung-ROI crops (no mask given: every command must
crop with the locator, as `predict` does); a colour checkpoint (an ImageNet-style record: the
file's colours, not grey); two files of different sizes through `viz heatmap` at once.
"""
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from rawcnn.data import default_settings, synthesize
from rawcnn.data.contract import contract_of, file_to_stored
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import read_checkpoint, save_checkpoint
from rawcnn.engine.models import build
from rawcnn.engine.net import Net


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_conv_pool_spec):
    d = tmp_path_factory.mktemp("paths")
    recs = synthesize(d / "syn", 4, size=128, seed=3, progress=False)
    net = build(tiny_conv_pool_spec, seed=0, weight_std="he")
    s = default_settings(32)
    s.update(base_size=None, roi="masks")  # trained on mask crops: without a mask, the locator crops
    grey = Preprocessing(channel_order="RGB", mean=(100.0,) * 3, std=(50.0,) * 3, input_size=(32, 32),
                         resize="direct", name="test", decode="gray")
    save_checkpoint(d / "grey.h5", net, preprocessing=grey.to_dict(),
                    meta={"data_settings": s, "class_names": ["normal", "abnormal"]})
    save_checkpoint(d / "no_settings.h5", net, preprocessing=grey.to_dict(), meta={"class_names": ["a", "b"]})
    colour = Preprocessing(channel_order="BGR", mean=(103.9, 116.8, 123.7), input_size=(32, 32),
                           resize="direct", name="test-colour", decode="color")
    save_checkpoint(d / "colour.h5", net, preprocessing=colour.to_dict(), meta={"class_names": ["a", "b"]})
    rng = np.random.default_rng(0)
    rgb = np.zeros((40, 56, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, rng.integers(0, 255, (40, 56)), 10  # B, G, R planes differ
    cv2.imwrite(str(d / "colour.png"), rgb)
    small = cv2.resize(cv2.imread(str(recs[1].path), cv2.IMREAD_GRAYSCALE), (77, 91))
    cv2.imwrite(str(d / "other_size.png"), small)
    return {"dir": d, "xray": str(recs[0].path), "other": str(d / "other_size.png"), "grey": str(d / "grey.h5"),
            "colour": str(d / "colour.h5"), "no_settings": str(d / "no_settings.h5"),
            "colour_png": str(d / "colour.png"), "tiny_spec": tiny_conv_pool_spec}


@pytest.fixture
def fed(monkeypatch):
    """Run a command line; return the inputs of every Net.forward call that started from the input."""
    def run(*args):
        seen = []
        real = Net.forward

        def forward(self, x, *a, **kw):
            if kw.get("after") is None:
                seen.append(np.array(x))
            return real(self, x, *a, **kw)
        monkeypatch.setattr(Net, "forward", forward)
        r = CliRunner().invoke(main, [str(a) for a in args])
        monkeypatch.setattr(Net, "forward", real)
        assert r.exit_code == 0, r.output
        assert seen, f"{args}: the net was never run"
        return seen, r.output
    return run


def test_trace_predict_and_viz_feed_the_same_tensor_to_a_lung_roi_checkpoint(files, fed, tmp_path):
    f, ck = files["xray"], files["grey"]
    p, out = fed("predict", "--checkpoint", ck, f)
    assert "lung ROI from the locator" in out
    t, out_t = fed("trace", ck, "--input", f)
    h, _ = fed("viz", "heatmap", ck, "--image", f, "--method", "saliency", "--out", tmp_path / "h")
    a, _ = fed("viz", "activations", ck, "--image", f, "--top", 2, "--out", tmp_path / "a")
    x = p[0]
    assert x.shape == (1, 3, 32, 32)
    for other in (t[0], h[0], a[0]):
        np.testing.assert_array_equal(other, x)
    assert "lung ROI from the locator" in out_t  # trace says how it made the input, as predict does
    # the crop matters: the whole image, uncropped, is another tensor
    c = contract_of(read_checkpoint(ck))
    c.settings = {**c.settings, "roi": "none", "roi_crop": False}
    whole = file_to_stored(f, c)[0]
    assert whole.shape[1:] == (32, 32)
    assert not np.array_equal(np.round((whole[None].astype(np.float32) - 100) / 50, 5), np.round(x, 5))


def test_trace_decodes_colour_for_a_colour_checkpoint(files, fed):
    f, ck = files["colour_png"], files["colour"]
    p, _ = fed("predict", "--checkpoint", ck, f)
    t, _ = fed("trace", ck, "--input", f)
    np.testing.assert_array_equal(t[0], p[0])
    b, g, r = (p[0][0, c] for c in range(3))  # BGR contract: the file's planes, not one grey plane
    np.testing.assert_allclose(b.mean() + 103.9, 200, atol=0.5)
    np.testing.assert_allclose(r.mean() + 123.7, 10, atol=0.5)


def test_viz_on_files_of_different_sizes_feeds_what_predict_feeds(files, fed, tmp_path):
    ck, f1, f2 = files["no_settings"], files["xray"], files["other"]  # no data settings: the files' own sizes
    p1, _ = fed("predict", "--checkpoint", ck, f1)
    p2, _ = fed("predict", "--checkpoint", ck, f2)
    h, _ = fed("viz", "heatmap", ck, "--image", f1, "--image", f2, "--method", "saliency", "--out", tmp_path)
    np.testing.assert_array_equal(h[0], np.concatenate([p1[0], p2[0]]))


def test_mask_outside_set_and_checkpoint_need_the_lung_mask_at_predict_time(files, fed, tmp_path):
    """prepare --mask-outside zeroes outside the lungs; a checkpoint trained so refuses a file without its
    mask, and with --masks feeds the net exactly the stored image's tensor."""
    from rawcnn.data import load_dataset
    syn = files["dir"] / "syn"
    r = CliRunner().invoke(main, ["data", "prepare", str(syn), "--out", str(tmp_path / "m.h5"), "--input-size", "32",
                                  "--base-size", "0", "--mask-outside"])
    assert r.exit_code == 0, r.output
    d = load_dataset(tmp_path / "m.h5")
    a = d.split("all")
    assert d.settings["mask_outside"] is True
    lungs = a.lung_masks.astype(bool)  # (N, 32, 32)
    assert lungs.any() and (~lungs).any()
    assert (a.images[:, 0][~lungs] == 0).all() and (a.images[:, 0][lungs] > 0).mean() > 0.9
    net = build(files["tiny_spec"], seed=0, weight_std="he")
    grey = Preprocessing(channel_order="RGB", mean=(100.0,) * 3, std=(50.0,) * 3, input_size=(32, 32),
                         resize="direct", name="test", decode="gray")
    ck = tmp_path / "masked.h5"
    save_checkpoint(ck, net, preprocessing=grey.to_dict(),
                    meta={"data_settings": d.settings, "class_names": ["normal", "abnormal"]})
    name = a.names[0].split("/")[-1]
    image = syn / "CXR_png" / f"{name}.png"
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(ck), str(image)])
    assert r.exit_code != 0
    assert str(image) in r.output and "--masks DIR" in r.output
    seen, out = fed("predict", "--checkpoint", ck, "--masks", syn, image)
    want = (a.images[:1].astype(np.float32) - 100) / 50  # (1, 3, 32, 32): the stored image, step 3
    np.testing.assert_allclose(seen[0], want, rtol=0, atol=1e-6)


def test_viz_activations_default_top_fits_a_narrow_layer(files, tmp_path):
    """--top defaults to 8 channels, or every channel of a layer with fewer (tiny: 4); an explicit
    --top above the layer's width is an error naming the layer."""
    ck, f = files["grey"], files["xray"]
    r = CliRunner().invoke(main, ["viz", "activations", ck, "--image", f, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    top = r.output.split("top channels [", 1)[1].split("]", 1)[0]
    assert sorted(int(c) for c in top.split(",")) == [0, 1, 2, 3]
    r = CliRunner().invoke(main, ["viz", "activations", ck, "--image", f, "--top", "9", "--out", str(tmp_path / "b")])
    assert r.exit_code != 0 and "layer 'relu1' has only 4 channels" in r.output
    assert not (tmp_path / "b").exists()
