"""Hostile HDF5 and .keras files: data kept outside the file, config fields of the wrong type, zip members
that inflate beyond what they declare.

Every reader of HDF5 (checkpoints, prepared sets, Keras 2 / Keras 3 / .keras / AlexNet weight files, a
rawcnn checkpoint through import-weights) must refuse a dataset whose data lives elsewhere, without
opening the other file: HDF5 external raw storage (`create_dataset(..., external=[(file, 0, n)])`), an
external link, a soft link and a virtual dataset. Each case below points at a file that exists and holds
recognisable, valid bytes, so a reader that followed it would succeed (exit 0): the test asserts exit 1,
one 'Error:' line naming the file, the dataset and the reason, and no output written. Where the file
system records access times, the other file's must not change (it was never read).
"""
import json
import os
import shutil
import struct
import zipfile
import zlib

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import fuzz_inputs as fz
import weights_fixtures as wf
from cli import main

INSIDE = "rawcnn reads only data stored inside the file"
HOW = ("external", "extlink", "softlink", "virtual")


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostilebase")
    return fz.make_bases(d, np.random.default_rng(0))


def _atime_tracked(path):
    """True when reading `path` moves its access time here (relatime: when atime is older than mtime)."""
    os.utime(path, (1_000_000, os.stat(path).st_mtime))
    with open(path, "rb") as fh:
        fh.read()
    seen = os.stat(path).st_atime != 1_000_000
    os.utime(path, (1_000_000, os.stat(path).st_mtime))
    return seen


def _redirect(h5path, name, how, elsewhere):
    """Replace dataset `name` of `h5path` by one whose data lives outside the file; returns the file holding it.

    The data are the dataset's own values (valid, so following them would work): written raw to
    `elsewhere`.bin for external storage, into `elsewhere`.h5 for an external link or a virtual dataset,
    and for a soft link moved to /hidden inside the same file.
    """
    with h5py.File(h5path, "a") as f:
        a = f[name][()]
        if how == "softlink":
            f.move(name, "/hidden")
            f[name] = h5py.SoftLink("/hidden")
            return None
        del f[name]
        if how == "external":
            other = f"{elsewhere}.bin"
            np.ascontiguousarray(a).tofile(other)
            f.create_dataset(name, shape=a.shape, dtype=a.dtype, external=[(other, 0, h5py.h5f.UNLIMITED)])
            return other
        other = f"{elsewhere}.h5"
        with h5py.File(other, "w") as g:
            g.create_dataset("x", data=a)
        if how == "extlink":
            f[name] = h5py.ExternalLink(other, "/x")
        else:
            layout = h5py.VirtualLayout(shape=a.shape, dtype=a.dtype)
            layout[...] = h5py.VirtualSource(other, "x", shape=a.shape)
            f.create_virtual_dataset(name, layout)
        return other


def _refused(args, names, other, out=None):
    """Run the command: exit 1, one Error line naming `names`, not the last resort, nothing written, `other` unread."""
    tracked = other is not None and _atime_tracked(other)
    r = CliRunner().invoke(main, [str(a) for a in args])
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert r.exit_code == 1 and len(errors) == 1, r.output
    assert "internal error" not in errors[0], errors[0]
    for n in names:
        assert n in errors[0], (n, errors[0])
    assert out is None or not os.path.exists(out)
    if tracked:
        assert os.stat(other).st_atime == 1_000_000, f"{other} was read"
    return errors[0]


def _ok(args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output


# -- defect 7: data outside the file, in every reader ------------------------------------------------

@pytest.mark.parametrize("how", HOW)
def test_checkpoint_with_data_outside_the_file(bases, tmp_path, how):
    ck = tmp_path / "ck.h5"
    shutil.copyfile(bases["checkpoint"], ck)
    _ok(["predict", "--checkpoint", ck, bases["png"]])  # the intact copy works
    other = _redirect(ck, "/params/conv1/w", how, tmp_path / "elsewhere")
    names = ["ck.h5", "/params/conv1/w", INSIDE]
    _refused(["predict", "--checkpoint", ck, bases["png"]], names, other)
    _refused(["evaluate", ck, "--data", bases["prepared"], "--split", "all", "--out", tmp_path / "ev"], names, other,
             tmp_path / "ev")
    out = tmp_path / "imp.h5"
    _refused(["import-weights", ck, "--arch", bases["spec"], "--out", out], names, other, out)


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", ["images", "labels"])
def test_prepared_set_with_data_outside_the_file(bases, tmp_path, how, name):
    data = tmp_path / "set.h5"
    shutil.copyfile(bases["prepared"], data)
    _ok(["evaluate", bases["checkpoint"], "--data", data, "--split", "all"])
    other = _redirect(data, name, how, tmp_path / "elsewhere")
    _refused(["evaluate", bases["checkpoint"], "--data", data, "--split", "all", "--out", tmp_path / "ev"],
             ["set.h5", f"/{name}", INSIDE], other, tmp_path / "ev")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", ["images", "labels"])
def test_sharded_reader_with_data_outside_the_file(bases, tmp_path, how, name):
    """The MPI ranks' reader (rawcnn.training.distributed.ShardedData) opens the prepared file itself."""
    from rawcnn.data.records import DataError
    from rawcnn.training.distributed import ShardedData
    data = tmp_path / "set.h5"
    shutil.copyfile(bases["prepared"], data)
    ShardedData(str(data), None).split("train").images[0:2]  # the intact copy works
    other = _redirect(data, name, how, tmp_path / "elsewhere")
    tracked = other is not None and _atime_tracked(other)
    with pytest.raises(DataError, match=rf"set\.h5: .*'/{name}'.*{INSIDE}"):
        ShardedData(str(data), None).split("train").images[0:2]
    if tracked:
        assert os.stat(other).st_atime == 1_000_000


def _weights(tmp_path, kind):
    """(path of an intact weight file of `kind`, arch, the weight file to redirect, the dataset's name)."""
    rng = np.random.default_rng(3)
    if kind == "keras2":
        path = tmp_path / "w.h5"
        wf.write_weights_file(path, wf.VGG_MINI, wf.make_params(wf.VGG_MINI, rng, "hwio"), "keras2",
                              backend="tensorflow", keras_version="2.2.4")
        return path, wf.vgg_mini_spec(), path, "/fc1/fc1/kernel:0"
    if kind == "keras3":
        path = tmp_path / "w.weights.h5"
        wf.write_keras3(path, wf.VGG_MINI, wf.make_params(wf.VGG_MINI, rng, "hwio"))
        return path, wf.vgg_mini_spec(), path, "/layers/conv2d/vars/0"
    if kind == "alexnet":
        model = wf.heuritech_mini()
        path = tmp_path / "alexnet_weights.h5"
        wf.write_weights_file(path, model, wf.make_params(model, rng, "oihw", std=0.08), "keras1-th")
        return path, wf.alexnet_mini_spec(), path, "/conv_2_1/conv_2_1_W"
    inner = tmp_path / "model.weights.h5"
    wf.write_keras3(inner, wf.VGG_MINI, wf.make_params(wf.VGG_MINI, rng, "hwio"))
    return tmp_path / "m.keras", wf.vgg_mini_spec(), inner, "/layers/dense/vars/0"


def _zip(path, inner, config):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(inner, "model.weights.h5")
        if config is not None:
            z.writestr("config.json", config if isinstance(config, (str, bytes)) else json.dumps(config))


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("kind", ["keras2", "keras3", "keras_zip", "alexnet"])
def test_weight_file_with_data_outside_the_file(tmp_path, how, kind):
    path, arch, h5, name = _weights(tmp_path, kind)
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps(arch))
    out = tmp_path / "out.h5"
    if kind == "keras_zip":
        _zip(path, h5, wf.keras_config(wf.VGG_MINI))
    _ok(["import-weights", path, "--arch", spec, "--out", out])
    os.remove(out)
    other = _redirect(h5, name, how, tmp_path / "elsewhere")
    if kind == "keras_zip":
        _zip(path, h5, wf.keras_config(wf.VGG_MINI))
    _refused(["import-weights", path, "--arch", spec, "--out", out], [path.name, name, INSIDE], other, out)


def test_external_storage_of_a_system_file_is_never_imported(tmp_path):
    """The user's report: a kernel whose storage is /etc/passwd (or any file) became a checkpoint, exit 0."""
    path, arch, _, _ = _weights(tmp_path, "keras2")
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps(arch))
    secret = tmp_path / "secret.txt"
    secret.write_bytes(np.full(10 * 9, 1234.5, "<f4").tobytes())  # exactly fc2's kernel, recognisable values
    with h5py.File(path, "a") as f:
        del f["fc2/fc2/kernel:0"]
        f.create_dataset("fc2/fc2/kernel:0", shape=(10, 9), dtype="<f4",
                         external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
    out = tmp_path / "out.h5"
    line = _refused(["import-weights", path, "--arch", spec, "--out", out], ["w.h5", "/fc2/fc2/kernel:0", INSIDE],
                    str(secret), out)
    assert "secret.txt" in line  # the message says where the data would have come from


def test_a_link_anywhere_in_a_weight_file_is_refused_before_the_tree_is_read(tmp_path):
    """A layer group that is an external link: format detection walks groups, so it must not follow it."""
    path, arch, _, _ = _weights(tmp_path, "keras3")
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps(arch))
    other = tmp_path / "other.h5"
    with h5py.File(path, "a") as f, h5py.File(other, "w") as g:
        f.copy("layers/dense", g, "dense")
        del f["layers/dense"]
        f["layers/dense"] = h5py.ExternalLink(str(other), "/dense")
    out = tmp_path / "out.h5"
    _refused(["import-weights", path, "--arch", spec, "--out", out],
             ["w.weights.h5", "/layers/dense", "external link", "other.h5", INSIDE], None, out)


# -- defect 3: config fields of the wrong type ------------------------------------------------------

BAD_VALUES = [["tf"], {"a": "tf"}, 3, None]


def _full_model(tmp_path, config):
    path = tmp_path / "model.h5"
    params = wf.make_params(wf.VGG_MINI, np.random.default_rng(5), "hwio")
    wf.write_full_model(path, wf.VGG_MINI, params, "keras2", config)
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps(wf.vgg_mini_spec()))
    return path, spec


def _conv_cfg(config, i=1):
    return config["config"]["layers"][i]["config"]


@pytest.mark.parametrize("value", BAD_VALUES, ids=["list", "dict", "number", "null"])
@pytest.mark.parametrize("field", ["dim_ordering", "data_format"])
def test_conv_data_format_of_the_wrong_type(tmp_path, field, value):
    config = wf.keras_config(wf.VGG_MINI, keras1=field == "dim_ordering")
    _conv_cfg(config)[field] = value
    path, spec = _full_model(tmp_path, config)
    out = tmp_path / "out.h5"
    _refused(["import-weights", path, "--arch", spec, "--out", out],
             ["model.h5", "'block1_conv1'", f"'{field}'", "model_config"], None, out)
    zpath = tmp_path / "m.keras"  # the same field in a .keras zip's config.json
    inner = tmp_path / "model.weights.h5"
    wf.write_keras3(inner, wf.VGG_MINI, wf.make_params(wf.VGG_MINI, np.random.default_rng(5), "hwio"))
    _zip(zpath, inner, config)
    _refused(["import-weights", zpath, "--arch", spec, "--out", out],
             ["m.keras", "'block1_conv1'", f"'{field}'", "config.json"], None, out)


def test_unknown_data_format_string_is_refused(tmp_path):
    config = wf.keras_config(wf.VGG_MINI)
    _conv_cfg(config)["data_format"] = "channels_sideways"
    path, spec = _full_model(tmp_path, config)
    _refused(["import-weights", path, "--arch", spec, "--out", tmp_path / "o.h5"],
             ["model.h5", "'block1_conv1'", "'data_format'", "channels_sideways"], None, tmp_path / "o.h5")


def _bad(config, what):
    layers = config["config"]["layers"]
    flatten = next(i for i, e in enumerate(layers) if e["class_name"] == "Flatten")
    if what == "layers":
        config["config"]["layers"] = {"0": layers[1]}
    elif what == "class_name":
        layers[1]["class_name"] = ["Conv2D"]
    elif what == "config":
        layers[1]["config"] = "channels_last"
    elif what == "name":
        layers[1]["config"]["name"] = ["block1_conv1"]
    elif what == "flatten_format":
        layers[flatten]["config"]["data_format"] = ["channels_first"]
    elif what == "top":
        return ["not", "a", "model"]
    return config


@pytest.mark.parametrize("what,names", [
    ("layers", ["'layers'", "list"]), ("class_name", ["'class_name'", "string"]),
    ("config", ["'config'", "object"]), ("name", ["'name'", "string"]),
    ("flatten_format", ["'flatten'", "'data_format'"]), ("top", ["model config", "object"])])
def test_config_fields_of_the_wrong_type(tmp_path, what, names):
    path, spec = _full_model(tmp_path, _bad(wf.keras_config(wf.VGG_MINI), what))
    _refused(["import-weights", path, "--arch", spec, "--out", tmp_path / "o.h5"], ["model.h5"] + names, None,
             tmp_path / "o.h5")


def test_intact_configs_still_decide_the_fc_order(tmp_path):
    """Keras 1 dim_ordering, Keras 2 data_format, and a Keras 2.0 Sequential whose config is a bare list."""
    from weights_import import import_weights
    for config, order in [(wf.keras_config(wf.VGG_MINI, keras1=True), "hwc"),
                          (wf.keras_config(wf.VGG_MINI, "channels_first", None), "chw"),
                          ({"class_name": "Sequential", "config": wf.keras_config(wf.VGG_MINI)["config"]["layers"]},
                           "hwc")]:
        path, spec = _full_model(tmp_path, config)
        _, report = import_weights(path, wf.vgg_mini_spec())
        assert report.fc_order == order and "model config" in report.fc_order_reason


# -- defect 8a: .keras zip members read under a budget -----------------------------------------------

def _lying_zip(path, member_bytes, declared, config=None):
    """A .keras zip whose model.weights.h5 header (local and central) declares `declared` bytes, CRC of that prefix."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(config or {}))
        z.writestr("model.weights.h5", member_bytes)
    b = bytearray(open(path, "rb").read())
    crc = zlib.crc32(member_bytes[:declared])
    name = b"model.weights.h5"
    local = next(i for i in range(len(b)) if b.startswith(b"PK\x03\x04", i) and b[i + 30:i + 46] == name)
    struct.pack_into("<I", b, local + 14, crc)  # local header: CRC-32 at 14, uncompressed size at 22
    struct.pack_into("<I", b, local + 22, declared)
    central = next(i for i in range(len(b)) if b.startswith(b"PK\x01\x02", i) and b[i + 46:i + 62] == name)
    struct.pack_into("<I", b, central + 16, crc)  # central directory: CRC-32 at 16, uncompressed size at 24
    struct.pack_into("<I", b, central + 24, declared)
    open(path, "wb").write(bytes(b))


def test_keras_member_that_inflates_beyond_its_declared_size(tmp_path, monkeypatch):
    monkeypatch.setenv("RAWCNN_MAX_BYTES", str(8 << 20))
    inner = tmp_path / "model.weights.h5"
    wf.write_keras3(inner, wf.VGG_MINI, wf.make_params(wf.VGG_MINI, np.random.default_rng(5), "hwio"))
    real = inner.read_bytes()
    path = tmp_path / "m.keras"
    _lying_zip(path, real + bytes(64 << 20), len(real))  # 64 MB of zeros past what the header declares
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("model.weights.h5").file_size == len(real)
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps(wf.vgg_mini_spec()))
    out = tmp_path / "o.h5"
    line = _refused(["import-weights", path, "--arch", spec, "--out", out], ["m.keras", "model.weights.h5"], None, out)
    assert f"more than the {len(real)} bytes its header declares" in line


def test_keras_member_declared_beyond_the_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("RAWCNN_MAX_BYTES", str(4 << 20))
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", bytes(6 << 20))
    out = tmp_path / "o.h5"
    _refused(["import-weights", path, "--arch", "vgg16", "--out", out],
             ["m.keras", "model.weights.h5", "memory budget"], None, out)


def test_keras_config_json_has_a_budget_of_its_own(tmp_path):
    inner = tmp_path / "model.weights.h5"
    wf.write_keras3(inner, wf.VGG_MINI, wf.make_params(wf.VGG_MINI, np.random.default_rng(5), "hwio"))
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps(wf.vgg_mini_spec()))
    path, out = tmp_path / "m.keras", tmp_path / "o.h5"
    _zip(path, inner, " " * (20 << 20))  # 20 MiB of spaces: text, but no model config is that large
    _refused(["import-weights", path, "--arch", spec, "--out", out], ["m.keras", "config.json", "16 MB"], None, out)
    _zip(path, inner, wf.keras_config(wf.VGG_MINI))
    _ok(["import-weights", path, "--arch", spec, "--out", out])


def test_config_nested_thousands_deep_is_ignored_like_any_invalid_json(tmp_path):
    """json.loads gives up with RecursionError; that was reported as 'damaged HDF5 file ... download it again'."""
    inner = tmp_path / "model.weights.h5"
    wf.write_keras3(inner, wf.VGG_MINI, wf.make_params(wf.VGG_MINI, np.random.default_rng(5), "hwio"))
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps(wf.vgg_mini_spec()))
    config = json.dumps(wf.keras_config(wf.VGG_MINI) | {"extra": "@"}).replace('"@"', "[" * 100000 + "]" * 100000)
    zpath = tmp_path / "m.keras"
    _zip(zpath, inner, config)
    hpath, _ = _full_model(tmp_path, {})
    with h5py.File(hpath, "a") as f:
        f.attrs["model_config"] = config
    for path in (zpath, hpath):
        out = tmp_path / "o.h5"
        r = CliRunner().invoke(main, ["import-weights", str(path), "--arch", str(spec), "--out", str(out)])
        assert r.exit_code == 0 and "not valid JSON" in r.output and "ignored" in r.output, r.output
        os.remove(out)
