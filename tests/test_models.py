"""Model specs: the built-in architectures' sizes, user spec files, and spec errors."""
import json

import numpy as np
import pytest

from rawcnn.engine import models

# Parameter totals with 1000 classes, as published: BVLC AlexNet 60,965,224 (Caffe's deploy net),
# VGG16 138,357,544 and VGG19 143,667,240 (Simonyan & Zisserman; Keras' VGG16().count_params()).
PUBLISHED = {"alexnet": 60_965_224, "vgg16": 138_357_544, "vgg19": 143_667_240}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_totals(name):
    net = models.build(name, num_classes=1000, weight_std=0.0)
    assert net.num_params() == PUBLISHED[name]


def test_custom_model_reading_of_the_paper():
    # 96 7x7/2 -> 111, pool -> 55, 3x3 -> 53, pool -> 26, 24, 22, 20, pool -> 9: fc6 takes 256*9*9
    net = models.build("custom", weight_std=0.0)
    shapes = {name: shape for name, _, shape, _, _ in net.summary()}
    assert shapes["conv1"] == (96, 111, 111)
    assert shapes["pool2"] == (128, 26, 26)
    assert shapes["pool5"] == (256, 9, 9)
    assert shapes["fc8"] == (2,)
    assert net.num_params() == 103_328_514
    lrn = net["norm1"]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)


def test_alexnet_layout_and_groups():
    net = models.build("alexnet", weight_std=0.0)
    assert net["conv2"].params["w"].shape == (256, 48, 5, 5)
    assert net["conv4"].params["w"].shape == (384, 192, 3, 3)
    assert net["conv5"].params["w"].shape == (256, 192, 3, 3)
    assert net["fc6"].params["w"].shape == (4096, 9216)
    assert net.names()[:4] == ["conv1", "relu1", "norm1", "pool1"]  # BVLC order: LRN before pool


def test_init_is_seeded_normal_001():
    a = models.build("custom", input_shape=(3, 99, 99), seed=3)
    b = models.build("custom", input_shape=(3, 99, 99), seed=3)
    c = models.build("custom", input_shape=(3, 99, 99), seed=4)
    wa, wb, wc = a["conv2"].params["w"], b["conv2"].params["w"], c["conv2"].params["w"]
    assert np.array_equal(wa, wb) and not np.array_equal(wa, wc)
    assert abs(float(wa.std()) - 0.01) < 0.001 and abs(float(wa.mean())) < 0.001
    assert not a["fc6"].params["b"].any()


def test_spec_file_works_like_a_name(tmp_path):
    spec = {"name": "tiny", "input": [1, 8, 8], "layers": [
        {"type": "Conv2d", "name": "c1", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "ReLU", "name": "r1"}, {"type": "MaxPool2d", "name": "p1", "kernel_size": 2},
        {"type": "Flatten", "name": "f"}, {"type": "Linear", "name": "fc", "out_features": 3}]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(spec))
    net = models.build(str(path), num_classes=5)
    assert [r[2] for r in net.summary()] == [(2, 8, 8), (2, 8, 8), (2, 4, 4), (32,), (5,)]
    assert json.loads(json.dumps(net.spec))["layers"][-1]["out_features"] == 5


@pytest.mark.parametrize("entry, message", [
    ({"type": "Conv3d", "name": "c"}, "unknown layer type 'Conv3d'"),
    ({"type": "Conv2d", "name": "c", "kernel_size": 3}, "needs field 'out_channels'"),
    ({"type": "Conv2d", "name": "c", "out_channels": 2, "kernel_size": 3, "dilation": 2}, "unknown field(s) dilation"),
    ({"type": "Dropout", "name": "d", "p": 1.5}, "bad value 1.5 for field 'p'"),
    ({"type": "ReLU"}, "needs a non-empty string 'name'"),
])
def test_spec_errors_name_the_entry(entry, message):
    spec = {"input": [1, 8, 8], "layers": [{"type": "ReLU", "name": "ok"}, entry]}
    with pytest.raises(ValueError) as e:
        models.build(spec)
    assert "layer entry 1" in str(e.value) and message in str(e.value)


def test_shape_mismatch_names_the_layer():
    spec = {"input": [1, 4, 4], "layers": [{"type": "Conv2d", "name": "big", "out_channels": 2, "kernel_size": 7}]}
    with pytest.raises(ValueError, match="'big'.*1, 4, 4"):
        models.build(spec)
    spec = {"input": [1, 4, 4], "layers": [{"type": "Linear", "name": "fc", "out_features": 2}]}
    with pytest.raises(ValueError, match="'fc'.*Flatten"):
        models.build(spec)


def test_unknown_model_and_bad_json(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.build("resnet")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        models.build(str(bad))
