"""Imported weights compute what the source framework computed with them.

Each test writes a small file in one real layout (tests/weights_fixtures.py), imports it, runs the
rawcnn net (reference kernels: the definition, independent of the fast tiers) and compares with a
forward written in the SOURCE's own convention: TensorFlow semantics (NHWC, HWIO kernels,
cross-correlation, Flatten (H, W, C), x @ K) for Keras files, true convolution with the unflipped
kernel (scipy.signal.convolve2d) for Theano files, the paper-form LRN after the pool for heuritech.
The last tests skip one conversion on purpose and show the outputs then differ.
"""
import copy
import json
import os
import zipfile

import numpy as np
import pytest

import weights_fixtures as wf
from rawcnn.engine.models import build
from weights_import import convert, import_weights

RTOL = 2e-5  # float32 net vs float64 oracle, relative to the largest logit


def run(net, x, backend="reference"):
    return np.asarray(net.to(backend).forward(x), np.float64)


def close(y, ref):
    return np.abs(y - ref).max() <= RTOL * np.abs(ref).max()


def assert_close(y, ref):
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err <= RTOL, f"max relative difference {err:.3g}"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _vgg_case(tmp_path, rng, style, layout="hwio", **kw):
    params = wf.make_params(wf.VGG_MINI, rng, layout)
    path = tmp_path / "w.h5"
    wf.write_weights_file(path, wf.VGG_MINI, params, style, **kw)
    return path, params, wf.images(rng, wf.VGG_MINI_INPUT)


# -- VGG-style Keras files ----------------------------------------------------------------------------

@pytest.mark.parametrize("style, kw", [
    ("keras1-tf", {}),                                                       # the real tf VGG files
    ("keras2", dict(strings="vlen", backend="tensorflow", keras_version="2.2.4", chunk=4)),
    ("keras3", dict(strings="vlen", backend="torch", keras_version="3.15.1")),
    ("keras2", dict(backend="cntk", keras_version="2.1.2")),
])
def test_tf_layout_weights_match_tensorflow_forward(tmp_path, rng, style, kw):
    path, params, x = _vgg_case(tmp_path, rng, style, **kw)
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert report.flip is False and report.fc_order == "hwc"
    assert report.num_classes == 7
    assert_close(run(net, x), wf.tf_forward(x, wf.VGG_MINI, params))


def test_keras1_theano_file_matches_true_convolution(tmp_path, rng):
    # the th_dim_ordering_th_kernels layout: (F, C, KH, KW) Theano kernels, (C, H, W) fc1 rows
    path, params, x = _vgg_case(tmp_path, rng, "keras1-th", layout="oihw")
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert report.flip is True and report.fc_order == "chw"
    assert_close(run(net, x), wf.theano_forward(x, wf.VGG_MINI, params))


def test_keras2_file_with_theano_backend_is_flipped(tmp_path, rng):
    # Keras 2 on Theano: kernels stored (KH, KW, C, F) but convolved (flipped) by Theano
    path, params, x = _vgg_case(tmp_path, rng, "keras2", backend="theano", keras_version="2.2.4")
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert report.flip is True
    as_oihw = {n: (k.transpose(3, 2, 0, 1) if k.ndim == 4 else k, b) for n, (k, b) in params.items()}
    assert_close(run(net, x), wf.theano_forward(x, wf.VGG_MINI, as_oihw, flatten="hwc"))


@pytest.mark.parametrize("conv_df, flat_df, keras1, order", [
    ("channels_last", "channels_last", False, "hwc"),
    ("channels_first", "channels_first", False, "hwc"),   # Keras >= 2.2: Flatten permutes to channels-last
    ("channels_first", None, False, "chw"),               # Keras <= 2.1.5: memory order
    ("channels_first", None, True, "chw"),                # Keras 1 dim_ordering 'th'
])
def test_full_model_file_reads_flatten_order_from_model_config(tmp_path, rng, conv_df, flat_df, keras1, order):
    params = wf.make_params(wf.VGG_MINI, rng, "hwio")
    path = tmp_path / "model.h5"
    config = wf.keras_config(wf.VGG_MINI, conv_df, flat_df, keras1=keras1)
    wf.write_full_model(path, wf.VGG_MINI, params, "keras2", config, strings="vlen")
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert report.format == "keras-model-h5" and report.fc_order == order
    x = wf.images(rng, wf.VGG_MINI_INPUT)
    assert_close(run(net, x), wf.tf_forward(x, wf.VGG_MINI, params, flatten=order))


def test_keras3_legacy_full_model_file(tmp_path, rng):
    params = wf.make_params(wf.VGG_MINI, rng, "hwio")
    path = tmp_path / "model.h5"
    wf.write_full_model(path, wf.VGG_MINI, params, "keras3", wf.keras_config(wf.VGG_MINI), strings="vlen",
                        backend="torch", keras_version="3.15.1")
    net, report = import_weights(path, wf.vgg_mini_spec())
    x = wf.images(rng, wf.VGG_MINI_INPUT)
    assert_close(run(net, x), wf.tf_forward(x, wf.VGG_MINI, params))


# -- Keras 3 native files -------------------------------------------------------------------------------

@pytest.mark.parametrize("name_attr, nested", [(True, False), (False, False), (True, True)])
def test_keras3_weights_h5_orders_layers_by_numeric_suffix(tmp_path, rng, name_attr, nested):
    # 12 convs: keys conv2d, conv2d_1, ..., conv2d_11; listing order would put conv2d_10 before conv2d_2
    params = wf.make_params(wf.DEEP_MINI, rng, "hwio", std=0.3)
    path = tmp_path / "model.weights.h5"
    wf.write_keras3(path, wf.DEEP_MINI, params, name_attr=name_attr, nested=nested)
    net, report = import_weights(path, wf.deep_mini_spec())
    assert report.format == "keras3-weights-h5" and report.fc_order == "hwc"
    if name_attr:
        assert report.mapped[10].sources[0].startswith("c10 (")
    x = wf.images(rng, wf.DEEP_MINI_INPUT)
    assert_close(run(net, x), wf.tf_forward(x, wf.DEEP_MINI, params))


def test_keras_zip_file(tmp_path, rng):
    params = wf.make_params(wf.VGG_MINI, rng, "hwio")
    inner = tmp_path / "model.weights.h5"
    wf.write_keras3(inner, wf.VGG_MINI, params)
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.write(inner, "model.weights.h5")
        z.writestr("config.json", json.dumps(wf.keras_config(wf.VGG_MINI)))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    os.remove(inner)
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert "config.json" in " ".join(report.facts)
    x = wf.images(rng, wf.VGG_MINI_INPUT)
    assert_close(run(net, x), wf.tf_forward(x, wf.VGG_MINI, params))


# -- nested sub-models ---------------------------------------------------------------------------------

def test_nested_base_model_group_is_split_per_inner_layer(tmp_path, rng):
    base = wf.VGG_MINI[:6]
    head = [wf.dense("dense", 72, 10), wf.dense("dense_1", 10, 9), wf.dense("dense_2", 9, 7, relu=False)]
    params = wf.make_params(base + head, rng, "hwio")
    path = tmp_path / "seq.h5"
    wf.write_nested(path, base, head, params)
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert report.mapped[0].sources == ["vgg16/block1_conv1"]
    x = wf.images(rng, wf.VGG_MINI_INPUT)
    assert_close(run(net, x), wf.tf_forward(x, base + head, params))


# -- AlexNet files ---------------------------------------------------------------------------------------

def test_heuritech_alexnet_matches_theano_with_pool_before_paper_lrn(tmp_path, rng):
    model = wf.heuritech_mini()
    params = wf.make_params(model, rng, "oihw", std=0.08)
    path = tmp_path / "alexnet_weights.h5"
    wf.write_weights_file(path, model, params, "keras1-th")
    net, report = import_weights(path, wf.alexnet_mini_spec())
    assert report.format == "heuritech-alexnet" and report.flip is True and report.fc_order == "chw"
    assert net.names()[:4] == ["conv1", "relu1", "pool1", "norm1"]
    assert (net["norm1"].alpha, net["norm1"].k, net["norm1"].size) == (5e-4, 2.0, 5)
    assert report.preprocessing.channel_order == "RGB"
    x = wf.images(rng, wf.ALEX_INPUT)
    ref = wf.theano_forward(x, model, params)
    assert_close(run(net, x), ref)
    # the LRN is not negligible here, so the test can tell its conventions apart
    no_lrn = wf.theano_forward(x, [op for op in model if op[0] != "lrn"], params)
    assert not close(no_lrn * (np.abs(ref).max() / np.abs(no_lrn).max()), ref)


@pytest.mark.parametrize("split", [False, True])
def test_bvlc_alexnet_in_keras2_layout_matches_tensorflow_forward(tmp_path, rng, split):
    model = wf.bvlc_keras_mini(split)
    params = wf.make_params(model, rng, "hwio", std=0.08)
    path = tmp_path / "alexnet.h5"
    wf.write_weights_file(path, model, params, "keras2", backend="tensorflow", keras_version="2.2.4")
    net, report = import_weights(path, wf.alexnet_mini_spec())
    assert report.format == "keras-h5" and report.flip is False and report.fc_order == "hwc"
    assert net.names()[:4] == ["conv1", "relu1", "norm1", "pool1"]
    assert report.preprocessing.name == "alexnet-bvlc"
    assert any(m.target == "conv2" and len(m.sources) == (2 if split else 1) for m in report.mapped)
    x = wf.images(rng, wf.ALEX_INPUT)
    assert_close(run(net, x), wf.tf_forward(x, model, params))


# -- one conversion skipped on purpose: the outputs must then differ ---------------------------------------

def test_skipping_the_theano_flip_changes_the_output(tmp_path, rng):
    path, params, x = _vgg_case(tmp_path, rng, "keras1-th", layout="oihw")
    ref = wf.theano_forward(x, wf.VGG_MINI, params)
    net, report = import_weights(path, wf.vgg_mini_spec(), flip=False)
    assert "forced" in report.flip_reason
    assert not close(run(net, x), ref)


def test_skipping_the_fc6_row_permutation_changes_the_output(tmp_path, rng):
    path, params, x = _vgg_case(tmp_path, rng, "keras2", backend="tensorflow", keras_version="2.2.4")
    ref = wf.tf_forward(x, wf.VGG_MINI, params)
    net, _ = import_weights(path, wf.vgg_mini_spec(), fc_order="chw")
    assert not close(run(net, x), ref)


def test_a_wrong_kernel_transpose_changes_the_output(tmp_path, rng, monkeypatch):
    path, params, x = _vgg_case(tmp_path, rng, "keras2", backend="tensorflow", keras_version="2.2.4")
    ref = wf.tf_forward(x, wf.VGG_MINI, params)
    monkeypatch.setattr(convert, "hwio_to_oihw", lambda k: k.transpose(3, 2, 1, 0))  # KH and KW swapped
    net, _ = import_weights(path, wf.vgg_mini_spec())
    assert not close(run(net, x), ref)


def test_heuritech_weights_in_the_bvlc_network_change_the_output(tmp_path, rng):
    model = wf.heuritech_mini()
    params = wf.make_params(model, rng, "oihw", std=0.08)
    path = tmp_path / "alexnet_weights.h5"
    wf.write_weights_file(path, model, params, "keras1-th")
    x = wf.images(rng, wf.ALEX_INPUT)
    ref = wf.theano_forward(x, model, params)
    net, report = import_weights(path, wf.alexnet_mini_spec(), fmt="keras-h5")  # BVLC order and LRN kept
    assert report.format == "keras-h5" and not report.spec_changes
    assert not close(run(net, x), ref)


@pytest.mark.parametrize("undo", ["paper alpha", "k", "order"])
def test_each_heuritech_network_change_matters(tmp_path, rng, undo):
    model = wf.heuritech_mini()
    params = wf.make_params(model, rng, "oihw", std=0.08)
    path = tmp_path / "alexnet_weights.h5"
    wf.write_weights_file(path, model, params, "keras1-th")
    x = wf.images(rng, wf.ALEX_INPUT)
    ref = wf.theano_forward(x, model, params)
    net, _ = import_weights(path, wf.alexnet_mini_spec())
    spec = copy.deepcopy(net.spec)
    if undo == "order":
        spec["layers"] = copy.deepcopy(wf.alexnet_mini_spec()["layers"])
        for e in spec["layers"]:
            if e["type"] == "LRN":
                e.update(alpha=5e-4, k=2.0)
    for e in spec["layers"]:
        if e["type"] == "LRN" and undo != "order":
            e.update({"paper alpha": {"alpha": 1e-4}, "k": {"k": 1.0}}[undo])
    wrong = build(spec, num_classes=6)
    wrong.load_state_dict(net.state_dict())
    assert close(run(net, x), ref) and not close(run(wrong, x), ref)


# -- the fast CPU tier, once its kernels exist ---------------------------------------------------------

CPU_OPS = ("conv2d", "relu", "lrn", "maxpool2d", "linear", "dropout")


@pytest.mark.skipif(not all(os.path.exists(os.path.join(os.path.dirname(__file__), "..", "kernels", "cpu",
                                                        f"{op}.py")) for op in CPU_OPS),
                    reason="kernels/cpu is not complete yet")
def test_imported_heuritech_net_on_the_cpu_backend(tmp_path, rng):
    model = wf.heuritech_mini()
    params = wf.make_params(model, rng, "oihw", std=0.08)
    path = tmp_path / "alexnet_weights.h5"
    wf.write_weights_file(path, model, params, "keras1-th")
    net, _ = import_weights(path, wf.alexnet_mini_spec())
    x = wf.images(rng, wf.ALEX_INPUT)
    assert_close(run(net, x, "cpu"), wf.theano_forward(x, model, params))
