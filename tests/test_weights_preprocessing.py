"""The preprocessing contract that travels with imported weights, and the fine-tuning head."""
import numpy as np
import pytest

import weights_fixtures as wf
from rawcnn.data.preprocessing import PRESETS, Preprocessing, preset
from rawcnn.engine.checkpoint import load_checkpoint, save_checkpoint
from rawcnn.engine.models import build
from weights_import.finetune import new_head

# -- hand-computed values -------------------------------------------------------------------------------

def test_gray_radiograph_is_replicated_before_the_bgr_mean():
    pre = preset("vgg-keras").with_input_size((2, 3))
    gray = np.full((2, 3), 100, np.uint8)  # one radiograph, already at the input size
    x = pre.apply(gray)
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    # channel 0 is Blue: 100 - 103.939; 1 Green: 100 - 116.779; 2 Red: 100 - 123.68
    assert np.allclose(x[0, :, 0, 0], [-3.939, -16.779, -23.68], atol=1e-4)
    assert np.allclose(x[0, 0], -3.939, atol=1e-4)


def test_rgb_image_channel_order_per_preset():
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # R, G, B
    bgr = Preprocessing(channel_order="BGR", mean=(103.939, 116.779, 123.68), input_size=(4, 4), resize="none")
    rgb = Preprocessing(channel_order="RGB", mean=(123.68, 116.779, 103.939), input_size=(4, 4), resize="none")
    assert np.allclose(bgr.apply(img)[0, :, 1, 2], [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)
    assert np.allclose(rgb.apply(img)[0, :, 1, 2], [10 - 123.68, 20 - 116.779, 30 - 103.939], atol=1e-4)


def test_scale_and_std():
    pre = Preprocessing(channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0), scale=1 / 255,
                        input_size=(1, 1), resize="none")
    x = pre.apply(np.array([[[255, 0, 51]]], np.uint8))
    assert np.allclose(x[0, :, 0, 0], [2.0, -1.0, -0.3], atol=1e-6)
    with pytest.raises(ValueError, match="value_range"):
        pre.apply(np.ones((1, 1, 3), np.float32))
    assert np.allclose(pre.apply(np.array([[[1.0, 0.0, 0.2]]]), value_range=1.0)[0, :, 0, 0], [2, -1, -0.3], atol=1e-6)


def test_resize_then_centre_crop():
    # a 256 x 256 ramp: column j holds j; crop 227 starts at (256 - 227) // 2 = 14
    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    x = preset("alexnet-heuritech").apply(ramp)
    assert x.shape == (1, 3, 227, 227)
    assert np.allclose(x[0, 0, 0, [0, 226]], [14 - 123.68, 240 - 123.68], atol=1e-3)
    small = preset("vgg-keras").apply(np.zeros((5, 448, 448), np.uint8))
    assert small.shape == (5, 3, 224, 224)
    stored = np.full((2, 1, 300, 300), 100, np.uint8)  # a rawcnn data set's (N, 1, S, S) radiographs
    x = preset("vgg-keras").apply(stored)
    assert x.shape == (2, 3, 224, 224) and np.allclose(x[1, :, 5, 7], [-3.939, -16.779, -23.68], atol=1e-3)
    with pytest.raises(ValueError, match="resize='none'"):
        Preprocessing(input_size=(4, 4), resize="none").apply(np.zeros((5, 5), np.uint8))


def test_presets_json_round_trip_and_bad_values():
    for p in PRESETS.values():
        assert Preprocessing.from_json(p.to_json()) == p
        assert Preprocessing.from_json(p.to_dict()) == p
    assert preset("alexnet-bvlc").mean == (104.0, 116.7, 122.7) and preset("alexnet-bvlc").input_size == (227, 227)
    with pytest.raises(ValueError, match="channel_order"):
        Preprocessing(channel_order="GBR")
    with pytest.raises(ValueError, match="3 numbers"):
        Preprocessing(mean=(1, 2))
    with pytest.raises(ValueError, match="unknown preprocessing preset"):
        preset("imagenet-torch")
    with pytest.raises(ValueError, match="images must be"):
        preset("vgg-keras").apply(np.zeros((2, 3, 4, 5, 6), np.uint8))


# -- fine-tuning head ----------------------------------------------------------------------------------

def test_new_head_replaces_last_linear_and_survives_a_checkpoint(tmp_path):
    net = build(wf.vgg_mini_spec(), seed=0)
    w7 = net["fc7"].params["w"].copy()
    head = new_head(net, 2, seed=11, lr_mult=10.0)
    assert net["fc8"] is head and head.params["w"].shape == (2, 9) and head.lr_mult == 10.0
    assert not head.params["b"].any() and np.array_equal(net["fc7"].params["w"], w7)
    again = new_head(build(wf.vgg_mini_spec(), seed=0), 2, seed=11)
    assert np.array_equal(again.params["w"], head.params["w"])
    big = new_head(build(wf.vgg_mini_spec(), seed=0), 2000, seed=1)
    assert abs(float(big.params["w"].std()) - 0.01) < 5e-4
    net.freeze_through("fc7")
    assert [l.name for l in net.layers if l.trainable and l.params] == ["fc8"]
    save_checkpoint(tmp_path / "ft.h5", net)
    back, _ = load_checkpoint(tmp_path / "ft.h5")
    assert back["fc8"].params["w"].shape == (2, 9)
    assert np.array_equal(back["fc8"].params["w"], head.params["w"])
