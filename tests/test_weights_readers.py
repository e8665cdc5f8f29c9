"""Reading the files: attribute spellings, format detection, mapping at real sizes, and bad input.

Real-size files are written with their datasets unallocated (reads give zeros, the file stays a few MB)
except the tensors a test checks value by value, so VGG16/VGG19/AlexNet are mapped at their true
shapes without writing 500 MB.
"""
import zipfile

import h5py
import numpy as np
import pytest

import weights_fixtures as wf
from rawcnn.data.preprocessing import preset
from rawcnn.engine.checkpoint import load_checkpoint, save_checkpoint
from rawcnn.engine.models import build
from weights_import import FORMATS, WeightsImportError, convert, import_to_checkpoint, import_weights


@pytest.fixture
def rng():
    return np.random.default_rng(99)


def _mini(tmp_path, rng, style="keras2", layout="hwio", **kw):
    params = wf.make_params(wf.VGG_MINI, rng, layout)
    path = tmp_path / "w.h5"
    wf.write_weights_file(path, wf.VGG_MINI, params, style, **kw)
    return path, params


def _expected_conv1(params, layout="hwio", flip=False):
    k = params["block1_conv1"][0]
    w = k.transpose(3, 2, 0, 1) if layout == "hwio" else k
    return w[:, :, ::-1, ::-1] if flip else w


# -- the conversions, on hand-made values ---------------------------------------------------------------

def test_conversions_by_hand():
    k = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)               # (KH, KW, C, F)
    w = convert.hwio_to_oihw(k)
    assert w.shape == (5, 4, 2, 3) and w[4, 1, 0, 2] == k[0, 2, 1, 4]
    assert convert.rot180(np.arange(4).reshape(1, 1, 2, 2)).ravel().tolist() == [3, 2, 1, 0]
    # fc rows of an (H, W, C) = (1, 2, 2) map: file rows (w0 c0, w0 c1, w1 c0, w1 c1); rawcnn wants
    # (c0 w0, c0 w1, c1 w0, c1 w1), i.e. file rows 0, 2, 1, 3
    dense = np.array([[0, 10], [1, 11], [2, 12], [3, 13]])            # (D=4, K=2)
    assert convert.dense_to_out_in(dense, (2, 1, 2)).tolist() == [[0, 2, 1, 3], [10, 12, 11, 13]]
    assert convert.dense_to_out_in(dense).tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert convert.merge_groups([np.zeros((2, 3)), np.ones((2, 3))])[:, 0].tolist() == [0, 0, 1, 1]
    assert convert.kernel_layouts((3, 3, 4, 8), (8, 4, 3, 3)) == {"hwio"}
    assert convert.kernel_layouts((3, 3, 3, 3), (3, 3, 3, 3)) == {"hwio", "oihw"}


# -- attribute spellings -----------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(strings="bytes"), dict(strings="vlen"), dict(strings="bytes", chunk=3),
                                dict(strings="vlen", chunk=1)])
def test_string_attribute_spellings_give_the_same_import(tmp_path, rng, kw):
    path, params = _mini(tmp_path, rng, **kw)
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert [m.target for m in report.mapped] == ["conv1_1", "conv1_2", "conv2_1", "fc6", "fc7", "fc8"]
    assert [m.sources for m in report.mapped][0] == ["block1_conv1"]
    assert np.array_equal(net["conv1_1"].params["w"], _expected_conv1(params))
    assert ("chunked" in report.facts[0]) == ("chunk" in kw)


def test_null_dataspace_and_float_empty_weight_names_mean_no_weights(tmp_path, rng):
    path, params = _mini(tmp_path, rng)
    with h5py.File(path, "r+") as f:
        assert f["flatten_1"].attrs["weight_names"].dtype == np.float64   # Keras' empty list
        f["pool_1"].attrs["weight_names"] = h5py.Empty("f")
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert len(report.mapped) == 6 and not report.unexpected


def test_kernel_and_bias_are_told_apart_by_order_and_rank_not_name(tmp_path, rng):
    # names that say nothing ('a', 'b'); the kernel is the first rank-2+ weight, the bias the rank-1 one
    path, params = _mini(tmp_path, rng)
    with h5py.File(path, "r+") as f:
        for lname in ("block1_conv1", "fc1"):
            g = f[lname]
            old = [n.decode() for n in g.attrs["weight_names"]]
            for new, o in zip(("a", "b"), old, strict=True):
                g[new] = g[o][()]
                del g[o]
            g.attrs["weight_names"] = np.array([b"a", b"b"])
    net, _ = import_weights(path, wf.vgg_mini_spec())
    assert np.array_equal(net["conv1_1"].params["w"], _expected_conv1(params))
    assert np.array_equal(net["conv1_1"].params["b"], params["block1_conv1"][1])


# -- format detection --------------------------------------------------------------------------------

def test_format_is_read_from_structure_not_name(tmp_path, rng):
    params = wf.make_params(wf.VGG_MINI, rng, "hwio")
    legacy, model, k3 = tmp_path / "a.weights.h5", tmp_path / "b.keras", tmp_path / "c.h5"  # misleading names
    wf.write_weights_file(legacy, wf.VGG_MINI, params, "keras2")
    wf.write_full_model(model, wf.VGG_MINI, params, "keras2", wf.keras_config(wf.VGG_MINI))
    wf.write_keras3(k3, wf.VGG_MINI, params)
    found = [import_weights(p, wf.vgg_mini_spec())[1].format for p in (legacy, model, k3)]
    assert found == ["keras-h5", "keras-model-h5", "keras3-weights-h5"]
    assert set(FORMATS) == {"keras-h5", "keras-model-h5", "keras3-weights-h5", "heuritech-alexnet", "rawcnn"}


def test_forced_format_must_fit_the_structure(tmp_path, rng):
    path, _ = _mini(tmp_path, rng)
    with pytest.raises(WeightsImportError, match=r"w\.h5.*not 'keras3-weights-h5'.*looks like 'keras-h5'"):
        import_weights(path, wf.vgg_mini_spec(), fmt="keras3-weights-h5")
    alex = tmp_path / "alexnet.h5"
    model = wf.bvlc_keras_mini(split=True)
    wf.write_weights_file(alex, model, wf.make_params(model, rng, "hwio"), "keras2")
    with pytest.raises(WeightsImportError, match="heuritech.*Theano-layout.*(KH, KW, C, F)"):
        import_weights(alex, wf.alexnet_mini_spec(), fmt="heuritech-alexnet")
    with pytest.raises(WeightsImportError, match="unknown format 'caffe'"):
        import_weights(path, wf.vgg_mini_spec(), fmt="caffe")


# -- real-size files -----------------------------------------------------------------------------------

def test_real_vgg16_tf_file_maps_every_layer(tmp_path, rng):
    # keras-applications vgg16_weights_tf_dim_ordering_tf_kernels.h5: Keras 1, names block1_conv1_W_1:0
    k11 = rng.standard_normal((3, 3, 3, 64)).astype(np.float32)
    k53 = rng.standard_normal((3, 3, 512, 512)).astype(np.float32)
    hwc = [(1, 2, 3), (6, 0, 511), (0, 6, 0)]  # (h, w, c) of a few fc1 rows given values
    rows = [((h * 7 + w) * 512 + c, rng.standard_normal(4096).astype(np.float32)) for h, w, c in hwc]
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    wf.write_real_vgg(path, 16, True, "keras1-tf", "hwio",
                      data={"block1_conv1": k11, "block5_conv3": k53, "fc1/rows": rows})
    net, report = import_weights(path, "vgg16")
    names = [m.target for m in report.mapped]
    assert names == [n for n in net.names() if n.startswith(("conv", "fc"))] and len(names) == 16
    assert report.mapped[0].sources == ["block1_conv1"] and report.mapped[-1].sources == ["predictions"]
    assert report.num_classes == 1000 and not report.missing and not report.unexpected
    assert report.flip is False and report.fc_order == "hwc"
    assert np.array_equal(net["conv1_1"].params["w"], k11.transpose(3, 2, 0, 1))
    assert np.array_equal(net["conv5_3"].params["w"][17, 300], k53[:, :, 300, 17])
    w6 = net["fc6"].params["w"]  # (4096, 25088), column c*49 + h*7 + w
    for (h, w, c), (_, row) in zip(hwc, rows, strict=True):
        assert np.array_equal(w6[:, c * 49 + h * 7 + w], row)
    assert report.preprocessing == preset("vgg-keras")
    assert report.preprocessing.channel_order == "BGR"


def test_real_vgg19_th_notop_file_flips_and_keeps_fc_init(tmp_path, rng):
    # vgg19_weights_th_dim_ordering_th_kernels_notop.h5: (F, C, KH, KW) Theano kernels, no dense layers
    k11 = rng.standard_normal((64, 3, 3, 3)).astype(np.float32)
    k54 = rng.standard_normal((512, 512, 3, 3)).astype(np.float32)
    path = tmp_path / "vgg19_notop.h5"
    wf.write_real_vgg(path, 19, False, "keras1-th", "oihw", data={"block1_conv1": k11, "block5_conv4": k54})
    net, report = import_weights(path, "vgg19", input_shape=(3, 32, 32))  # small fc6: a notop file has none
    assert len(report.mapped) == 16 and report.mapped[-1].target == "conv5_4"
    assert report.flip is True and report.fc_order is None
    assert report.missing == ["fc6", "fc7", "fc8"] and "include_top=False" in " ".join(report.notes)
    assert np.array_equal(net["conv1_1"].params["w"], k11[:, :, ::-1, ::-1])
    assert np.array_equal(net["conv5_4"].params["w"][5, 7], k54[5, 7, ::-1, ::-1])
    assert net["fc6"].params["w"].shape == (4096, 512) and abs(float(net["fc8"].params["w"].std()) - 0.01) < 1e-3
    assert report.preprocessing.input_size == (32, 32)


def test_real_heuritech_file_merges_split_groups(tmp_path, rng):
    g0 = rng.standard_normal((128, 48, 5, 5)).astype(np.float32)
    g1 = rng.standard_normal((128, 48, 5, 5)).astype(np.float32)
    path = tmp_path / "alexnet_weights.h5"
    wf.write_real_heuritech(path, data={"conv_2_1": g0, "conv_2_2": g1})
    net, report = import_weights(path, "alexnet")
    assert report.format == "heuritech-alexnet" and len(report.mapped) == 8
    assert report.mapped[1].sources == ["conv_2_1", "conv_2_2"] and report.mapped[1].target == "conv2"
    w2 = net["conv2"].params["w"]
    assert w2.shape == (256, 48, 5, 5)
    assert np.array_equal(w2[:128], g0[:, :, ::-1, ::-1]) and np.array_equal(w2[128:], g1[:, :, ::-1, ::-1])
    assert net.names()[:4] == ["conv1", "relu1", "pool1", "norm1"]
    assert net.names()[6:8] == ["pool2", "norm2"]
    assert len(report.spec_changes) == 4
    assert report.preprocessing == preset("alexnet-heuritech")
    assert [l.name for l in net.layers if l.kind == "Linear"] == ["fc6", "fc7", "fc8"]


# -- bad input: one clear WeightsImportError, nothing written ----------------------------------------------

def test_not_hdf5_missing_and_truncated_files(tmp_path, rng):
    text = tmp_path / "weights.h5"
    text.write_text("not weights\n")
    with pytest.raises(WeightsImportError, match=r"weights\.h5: not an HDF5 file"):
        import_weights(text, "vgg16")
    with pytest.raises(WeightsImportError, match="nope.h5: no such file"):
        import_weights(tmp_path / "nope.h5", "vgg16")
    path, _ = _mini(tmp_path, rng)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    for frac in (0.05, 0.5, 0.9, 0.999):
        cut.write_bytes(data[:int(len(data) * frac)])
        with pytest.raises(WeightsImportError, match=r"cut\.h5: .*(truncated|damaged|not an HDF5)"):
            import_weights(cut, wf.vgg_mini_spec())
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(WeightsImportError, match=r"m\.keras: a zip file without model.weights.h5"):
        import_weights(tmp_path / "m.keras", "vgg16")


def test_truncated_dataset_names_the_layer(tmp_path, rng):
    path, _ = _mini(tmp_path, rng)
    with h5py.File(path, "r+") as f:  # an external-storage dataset whose bytes are missing
        g = f["fc2"]
        name = [n.decode() for n in g.attrs["weight_names"]][0]
        del g[name]
        g.create_dataset(name, shape=(10, 9), dtype="<f4", external=[(str(tmp_path / "gone.bin"), 0, 360)])
    with pytest.raises(WeightsImportError, match=r"layer 'fc2'.*cannot read"):
        import_weights(path, wf.vgg_mini_spec())


def test_wrong_architecture_names_layer_and_both_shapes(tmp_path, rng):
    path = tmp_path / "vgg19_notop.h5"
    wf.write_real_vgg(path, 19, False, "keras2", "hwio")
    with pytest.raises(WeightsImportError, match=r"vgg19_notop\.h5: layer 'block3_conv4' -> vgg16 layer "
                                                 r"'conv4_1'.*\(3, 3, 256, 256\).*\(512, 256, 3, 3\).*VGG19"):
        import_weights(path, "vgg16")
    heur = tmp_path / "alexnet_weights.h5"
    wf.write_real_heuritech(heur)
    with pytest.raises(WeightsImportError, match=r"'conv_1' -> vgg16 layer 'conv1_1'.*\(96, 3, 11, 11\).*AlexNet"):
        import_weights(heur, "vgg16")


def test_dense_shape_mismatch_and_conv_count_mismatch(tmp_path, rng):
    path, _ = _mini(tmp_path, rng)
    spec = wf.vgg_mini_spec()
    spec["layers"][9]["out_features"] = 11  # fc6 of another width
    with pytest.raises(WeightsImportError, match=r"'fc1' -> vgg16-mini layer 'fc6'.*\(72, 10\).*\(72, 11\)"):
        import_weights(path, spec)
    spec = wf.vgg_mini_spec()
    spec["layers"] = spec["layers"][:5] + spec["layers"][8:]  # drop conv2_1: the file has one conv more
    spec["layers"][6]["out_features"] = 10
    with pytest.raises(WeightsImportError, match="3 convolution layers but vgg16-mini has only 2"):
        import_weights(path, spec)


def test_damaged_and_unknown_layouts(tmp_path, rng):
    path, _ = _mini(tmp_path, rng)
    with h5py.File(path, "r+") as f:
        del f["block1_conv2"]
    with pytest.raises(WeightsImportError, match="lists 'block1_conv2' but .* no group"):
        import_weights(path, wf.vgg_mini_spec())
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(WeightsImportError, match=r"odd\.h5: unknown weight file layout \(root groups: data"):
        import_weights(odd, "vgg16")
    old = tmp_path / "gist.h5"
    with h5py.File(old, "w") as f:
        f.attrs["nb_layers"] = 2
        f.create_group("layer_0").attrs["nb_params"] = 0
    with pytest.raises(WeightsImportError, match="Keras 0.x"):
        import_weights(old, "vgg16")


def test_a_failed_import_writes_no_output(tmp_path, rng):
    path = tmp_path / "vgg19_notop.h5"
    wf.write_real_vgg(path, 19, False, "keras2", "hwio")
    out = tmp_path / "out.h5"
    with pytest.raises(WeightsImportError):
        import_to_checkpoint(path, "vgg16", out)
    assert list(tmp_path.iterdir()) == [path]
    assert isinstance(WeightsImportError("x"), ValueError)


def test_a_head_of_another_length_is_listed_not_loaded(tmp_path, rng):
    base = wf.VGG_MINI[:6]
    head = [wf.dense("dense", 72, 16), wf.dense("dense_1", 16, 2, relu=False)]
    params = wf.make_params(base + head, rng, "hwio")
    path = tmp_path / "finetuned.h5"
    wf.write_nested(path, base, head, params, full=False)
    net, report = import_weights(path, wf.vgg_mini_spec())
    assert [m.target for m in report.mapped] == ["conv1_1", "conv1_2", "conv2_1"]
    assert [u[0].split(" ")[0] for u in report.unexpected] == ["dense", "dense_1"]
    assert report.missing == ["fc6", "fc7", "fc8"] and report.warnings


# -- checkpoints ------------------------------------------------------------------------------------------

def test_imported_checkpoint_round_trip_keeps_weights_and_preprocessing(tmp_path, rng):
    path, _ = _mini(tmp_path, rng, backend="tensorflow", keras_version="2.2.4")
    out = tmp_path / "model.h5"
    report = import_to_checkpoint(path, wf.vgg_mini_spec(), out)
    net, ck = load_checkpoint(out)
    again, _ = import_weights(path, wf.vgg_mini_spec())
    for name, d in again.state_dict().items():
        for k, v in d.items():
            assert np.array_equal(net[name].params[k], v)
    assert ck["preprocessing"]["channel_order"] == "BGR"
    assert ck["meta"]["imported_from"]["format"] == "keras-h5" == report.format
    assert "block1_conv1" in report.text() and "rows permuted" in report.text()


def test_rawcnn_checkpoint_passes_through_and_is_checked(tmp_path):
    net = build(wf.vgg_mini_spec(), num_classes=3, seed=5)
    path = tmp_path / "mine.h5"
    save_checkpoint(path, net, preprocessing=preset("vgg-keras").to_dict())
    got, report = import_weights(path, wf.vgg_mini_spec())
    assert report.format == "rawcnn" and report.num_classes == 3
    assert np.array_equal(got["conv2_1"].params["w"], net["conv2_1"].params["w"])
    assert report.preprocessing == preset("vgg-keras")
    with pytest.raises(WeightsImportError, match=r"mine\.h5: a rawcnn checkpoint of 'vgg16-mini'.*conv1_1"):
        import_weights(path, wf.alexnet_mini_spec())
