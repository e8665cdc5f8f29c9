"""Damaged and hostile input files for the fuzz test (tests/test_fuzz.py), from a seeded generator.

Families (each mutation is a class of damage seen in the wild or built by a hostile user):
    checkpoint  a rawcnn checkpoint: attributes of the wrong kind (a number, a list, null, JSON nested
                thousands deep, damaged JSON), a dataset where a group belongs and the reverse, empty
                groups, weights declared with 2**40 elements, NaN / Inf weights, settings read back
                that no user could type, flipped bits anywhere, truncation
    prepared    a prepared data set: the same attribute and dataset damage, settings (CLAHE clip
                limit null, input size 100000, tile grid 10**7, a seed that is an array), image names
                that are paths ('../../x', '/abs'), a flipped bit inside a compressed chunk
    keras       Keras 3 .weights.h5 and a .keras zip: flipped bits, truncation, a zip member that
                declares gigabytes, group/dataset swaps, NaN weights
    image       PNG / JPEG / 16-bit TIFF / float TIFF: a header declaring 65535 x 65535 pixels,
                truncation, flipped bits, NaN pixels, a constant float image
    spec        a JSON model spec: 10**6-wide layers, wrong kinds, deep nesting, a 100000-pixel input

`generate(base, rng, n)` returns n (family, mutation, path) cases; `make_bases` writes the intact
files they start from. A failure found later becomes a new entry of SEED_CASES (family, mutation,
seed) so it is tried on every run.
"""
import json
import os
import shutil
import struct
import zipfile

import cv2
import h5py
import numpy as np

import weights_fixtures as wf
from specs import TINY_CONV_POOL_SPEC

TINY = TINY_CONV_POOL_SPEC  # tests/specs.py

FAMILIES = ("checkpoint", "prepared", "keras", "image", "spec")
SEED_CASES = [("checkpoint", "bad_history", 7), ("prepared", "names_path", 1), ("checkpoint", "huge_dataset", 2),
              ("keras", "zip_bomb", 3),
              ("image", "png_huge_header", 4), ("prepared", "chunk_bitflip", 5), ("checkpoint", "nan_weights", 6)]


def make_bases(d, rng):
    """Write the intact files every mutation starts from into folder d; returns {name: path}."""
    from rawcnn.data import default_settings, prepare, synthesize
    from rawcnn.data.preprocessing import Preprocessing
    from rawcnn.engine.checkpoint import save_checkpoint
    from rawcnn.engine.models import build
    d = str(d)
    synthesize(os.path.join(d, "syn"), 12, size=64, seed=1, progress=False)
    s = default_settings(32)
    s.update(base_size=None)
    prepare(os.path.join(d, "syn"), os.path.join(d, "set.h5"), s, seed=0, progress=False)
    net = build(TINY, seed=0, weight_std="he")
    pre = Preprocessing(channel_order="RGB", mean=(100.0,) * 3, std=(50.0,) * 3, input_size=(32, 32),
                        resize="direct", name="test")
    save_checkpoint(os.path.join(d, "ck.h5"), net, preprocessing=pre.to_dict(),
                    meta={"data_settings": s, "class_names": ["normal", "abnormal"]})
    with open(os.path.join(d, "tiny.json"), "w") as fh:
        json.dump(TINY, fh)
    with open(os.path.join(d, "vgg_mini.json"), "w") as fh:
        json.dump(wf.vgg_mini_spec(), fh)
    params = wf.make_params(wf.VGG_MINI, rng, "hwio")
    wf.write_keras3(os.path.join(d, "k3.weights.h5"), wf.VGG_MINI, params)
    with zipfile.ZipFile(os.path.join(d, "model.keras"), "w") as z:
        z.write(os.path.join(d, "k3.weights.h5"), "model.weights.h5")
        z.writestr("config.json", json.dumps(wf.keras_config(wf.VGG_MINI)))
    img = (rng.random((64, 64)) * 255).astype(np.uint8)
    cv2.imwrite(os.path.join(d, "img.png"), img)
    cv2.imwrite(os.path.join(d, "img.jpg"), img)
    cv2.imwrite(os.path.join(d, "img16.tif"), (img.astype(np.uint16) * 200))
    return {"checkpoint": os.path.join(d, "ck.h5"), "prepared": os.path.join(d, "set.h5"),
            "keras3": os.path.join(d, "k3.weights.h5"), "keras_zip": os.path.join(d, "model.keras"),
            "png": os.path.join(d, "img.png"), "jpg": os.path.join(d, "img.jpg"),
            "tif16": os.path.join(d, "img16.tif"), "spec": os.path.join(d, "tiny.json"),
            "arch": os.path.join(d, "vgg_mini.json"), "syn": os.path.join(d, "syn"), "dir": d}


# -- generic byte-level damage -------------------------------------------------------------------
def bitflip(src, dst, rng, nbits=None, lo=0, hi=None):
    data = bytearray(open(src, "rb").read())
    hi = len(data) if hi is None else min(hi, len(data))
    for _ in range(int(nbits or rng.integers(1, 9))):
        i = int(rng.integers(lo, hi))
        data[i] ^= 1 << int(rng.integers(0, 8))
    open(dst, "wb").write(bytes(data))


def truncate(src, dst, rng):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:int(rng.integers(0, len(data)))])


def deep_json(depth):
    return "[" * depth + "]" * depth


# -- HDF5 structural damage ----------------------------------------------------------------------
WRONG_KINDS = (lambda rng: np.int64(rng.integers(-5, 5)), lambda rng: np.arange(3.0), lambda rng: "null",
               lambda rng: "[1, 2, 3]", lambda rng: '"a string"', lambda rng: deep_json(50000),
               lambda rng: "{not json", lambda rng: np.array([b"x", b"y"]), lambda rng: b"\xff\xfe",
               lambda rng: "1e999", lambda rng: '{"a": NaN}')


def _h5_members(f):
    names = []
    f.visit(names.append)
    return names


def _attr_slots(f):
    """[(object path, attribute name)] of every attribute in the file, the root's first."""
    slots = [("/", k) for k in f.attrs.keys()]
    for n in _h5_members(f):
        slots += [(n, k) for k in f[n].attrs.keys()]
    return slots


def h5_attr_kind(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        slots = _attr_slots(f) or [("/", "extra")]
        n, k = slots[int(rng.integers(len(slots)))]
        if k in f[n].attrs:
            del f[n].attrs[k]
        f[n].attrs[k] = WRONG_KINDS[int(rng.integers(len(WRONG_KINDS)))](rng)


def h5_attr_delete(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        slots = _attr_slots(f)
        if slots:
            n, k = slots[int(rng.integers(len(slots)))]
            del f[n].attrs[k]


def h5_swap_kind(src, dst, rng):
    """A member replaced by the other kind: a dataset by an (empty) group, a group by a dataset."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        names = _h5_members(f)
        n = names[int(rng.integers(len(names)))]
        was_group = isinstance(f[n], h5py.Group)
        del f[n]
        if was_group:
            f.create_dataset(n, data=np.arange(4.0))
        else:
            f.create_group(n)


def h5_delete_member(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        names = _h5_members(f)
        n = names[int(rng.integers(len(names)))]
        if n in f:
            del f[n]


def h5_huge_dataset(src, dst, rng):
    """A dataset that declares 10**9 or 2**40 elements in a file of a few KB (chunked, never written)."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        ds = [n for n in _h5_members(f) if isinstance(f[n], h5py.Dataset)]
        n = ds[int(rng.integers(len(ds)))]
        shape, dtype = f[n].shape, f[n].dtype
        del f[n]
        big = int(2 ** 40 if rng.random() < 0.5 else 10 ** 9)
        new = (big,) + tuple(shape[1:]) if len(shape) else (big,)
        if int(np.prod(new, dtype=np.float64)) > 2 ** 50:
            new = (big,)
        f.create_dataset(n, shape=new, dtype=dtype if dtype.kind in "iuf" else np.float32,
                         chunks=(1,) * len(new), maxshape=(None,) * len(new))


def h5_nonfinite(src, dst, rng):
    """NaN or Inf written into a float dataset."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        ds = [n for n in _h5_members(f) if isinstance(f[n], h5py.Dataset) and f[n].dtype.kind == "f"
              and f[n].size]
        if not ds:
            return
        n = ds[int(rng.integers(len(ds)))]
        a = f[n][()]
        flat = a.reshape(-1)
        flat[rng.integers(0, flat.size, size=max(1, flat.size // 10))] = rng.choice([np.nan, np.inf, -np.inf])
        f[n][...] = a


def h5_wrong_shape(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        ds = [n for n in _h5_members(f) if isinstance(f[n], h5py.Dataset)]
        n = ds[int(rng.integers(len(ds)))]
        dtype = f[n].dtype if f[n].dtype.kind in "iuf" else np.float32
        del f[n]
        f.create_dataset(n, data=np.zeros(tuple(int(v) for v in rng.integers(0, 4, size=rng.integers(0, 4))),
                                          dtype=dtype))


def h5_metadata_bitflip(src, dst, rng):
    bitflip(src, dst, rng, lo=0, hi=4096)


def h5_any_bitflip(src, dst, rng):
    bitflip(src, dst, rng)


H5_MUTATIONS = {"attr_kind": h5_attr_kind, "attr_delete": h5_attr_delete, "swap_kind": h5_swap_kind,
                "delete_member": h5_delete_member, "huge_dataset": h5_huge_dataset, "nonfinite": h5_nonfinite,
                "wrong_shape": h5_wrong_shape, "metadata_bitflip": h5_metadata_bitflip,
                "bitflip": h5_any_bitflip, "truncate": truncate}


# -- family-specific damage ----------------------------------------------------------------------
def ck_nan_weights(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        w = f["params/conv1/w"]
        a = w[()]
        a.reshape(-1)[:3] = np.nan
        w[...] = a


def ck_bad_preprocessing(src, dst, rng):
    shutil.copyfile(src, dst)
    pp = {"channel_order": "RGB", "mean": [1, 2, 3], "input_size": [32, 32], "resize": "direct"}
    k = int(rng.integers(6))
    pp = [dict(pp, input_size=[100000, 100000]), dict(pp, mean=[1, None, 3]), dict(pp, mean=5),
          dict(pp, resize_size=[1, 2, 3], resize="resize-crop"), [1, 2], dict(pp, std=[0, 0, "x"])][k]
    with h5py.File(dst, "a") as f:
        f.attrs["preprocessing"] = json.dumps(pp)


def ck_bad_meta_settings(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        meta = json.loads(f.attrs["meta"])
        key, val = [("clahe_clip_limit", None), ("input_size", 100000), ("clahe_tile_grid", 10 ** 7),
                    ("base_size", "big"), ("roi_margin", float("nan")), ("channels", 7)][int(rng.integers(6))]
        meta["data_settings"][key] = val
        f.attrs["meta"] = json.dumps(meta)


def ck_bad_history(src, dst, rng):
    """A training history of the wrong shape: rows that are not objects, values that are not numbers."""
    shutil.copyfile(src, dst)
    row = {"epoch": 1, "train_loss": 0.7, "train_acc": 0.5, "val_loss": 0.7, "val_acc": 0.5, "lr": 0.01,
           "seconds": 1.0, "images_per_s": 10.0}
    k = int(rng.integers(5))
    hist = [[1, 2], [dict(row, val_acc="high")], [dict(row, epoch=None)], [{"x": 1}], [dict(row, lr=[1])]][k]
    with h5py.File(dst, "a") as f:
        f.attrs["history"] = json.dumps(hist)


def ck_bad_spec(src, dst, rng):
    shutil.copyfile(src, dst)
    spec = json.loads(json.dumps(TINY))
    k = int(rng.integers(5))
    if k == 0:
        spec["layers"][-1]["out_features"] = 10 ** 6
    elif k == 1:
        spec["input"] = [3, 100000, 100000]
    elif k == 2:
        spec["layers"][0] = "conv"
    elif k == 3:
        spec["layers"] = {"a": 1}
    else:
        spec["layers"][0]["name"] = "../../evil"
    with h5py.File(dst, "a") as f:
        f.attrs["spec"] = json.dumps(spec)


def prep_bad_settings(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        k = int(rng.integers(6))
        if k == 5:
            del f.attrs["seed"]
            f.attrs["seed"] = np.arange(3)
            return
        s = json.loads(f.attrs["settings"])
        key, val = [("clahe_clip_limit", None), ("input_size", 100000), ("clahe_tile_grid", 10 ** 7),
                    ("channels", "3"), ("roi_crop", [1])][k]
        s[key] = val
        f.attrs["settings"] = json.dumps(s)


def prep_names_path(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        names = f["names"].asstr()[...]
        for i in range(len(names)):
            names[i] = ["../../escaped", "/tmp/abs_escaped", "..", "a/../../b", ""][i % 5]
        del f["names"]
        f.create_dataset("names", data=names.astype(object), dtype=h5py.string_dtype("utf-8"))


def prep_chunk_bitflip(src, dst, rng):
    """One flipped bit inside a gzip-compressed chunk of the images (h5py raises OSError on reading it)."""
    shutil.copyfile(src, dst)
    with h5py.File(src, "r") as f:
        d = f["images"]
        info = d.id.get_chunk_info(int(rng.integers(d.id.get_num_chunks())))
        off, size = info.byte_offset, info.size
    bitflip(dst, dst, rng, nbits=1, lo=off, hi=off + size)


def prep_bad_labels(src, dst, rng):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        a = f["labels"][()]
        a[0] = [-1, 7, 2 ** 40][int(rng.integers(3))]
        f["labels"][...] = a


def keras_zip_bomb(src, dst, rng):
    """A .keras zip whose model.weights.h5 inflates to gigabytes (a header that says so)."""
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        with z.open("model.weights.h5", "w", force_zip64=True) as fh:
            chunk = bytes(1 << 20)
            for _ in range(int(rng.integers(1, 3)) * 64):  # 64-128 MB of zeros, a few hundred KB zipped
                fh.write(chunk)
    data = bytearray(open(dst, "rb").read())  # and the central directory then claims far more
    open(dst, "wb").write(bytes(data))


def keras_zip_truncate(src, dst, rng):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:int(rng.integers(len(data) // 4, len(data) - 1))])


def keras_zip_bitflip(src, dst, rng):
    bitflip(src, dst, rng)


def png_huge_header(src, dst, rng):
    """A PNG whose IHDR declares 65535 x 65535 (or 2**31-1 wide), CRC fixed so only the size is wrong."""
    import zlib
    data = bytearray(open(src, "rb").read())
    w, h = [(65535, 65535), (2 ** 31 - 1, 1), (1, 2 ** 31 - 1), (50000, 40000)][int(rng.integers(4))]
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    open(dst, "wb").write(bytes(data))


def jpeg_huge_header(src, dst, rng):
    data = bytearray(open(src, "rb").read())
    i = data.find(b"\xff\xc0")
    if i >= 0:
        data[i + 5:i + 9] = struct.pack(">HH", 65535, 65535)
    open(dst, "wb").write(bytes(data))


def tiff_float(src, dst, rng):
    k = int(rng.integers(3))
    a = rng.random((32, 32)).astype(np.float32)
    if k == 0:
        a[3, 4] = np.nan
    elif k == 1:
        a[:] = np.inf
    else:
        a[:] = 0.0  # decodes all black
    cv2.imwrite(dst, a)


SPEC_MUTATIONS = {
    "wide": lambda s, rng: s["layers"][-1].update(out_features=10 ** 6),
    "wide_conv": lambda s, rng: s["layers"][0].update(out_channels=10 ** 6),
    "huge_input": lambda s, rng: s.update(input=[3, 100000, 100000]),
    "wrong_kind": lambda s, rng: s["layers"][0].update(kernel_size="3"),
    "layers_object": lambda s, rng: s.update(layers={"x": 1}),
    "huge_kernel": lambda s, rng: s["layers"][0].update(kernel_size=2 ** 40),
    "float_width": lambda s, rng: s["layers"][-1].update(out_features=2.5),
    "negative": lambda s, rng: s["layers"][0].update(padding=-1),
}


def spec_case(dst, rng, kind):
    s = json.loads(json.dumps(TINY))
    if kind == "deep":
        open(dst, "w").write(deep_json(100000))
        return
    if kind == "not_json":
        open(dst, "wb").write(bytes(rng.integers(0, 256, 200, dtype=np.uint8)))
        return
    SPEC_MUTATIONS[kind](s, rng)
    with open(dst, "w") as fh:
        json.dump(s, fh)


FAMILY_MUTATIONS = {
    "checkpoint": {**H5_MUTATIONS, "nan_weights": ck_nan_weights, "bad_preprocessing": ck_bad_preprocessing,
                   "bad_meta_settings": ck_bad_meta_settings, "bad_spec": ck_bad_spec,
                   "bad_history": ck_bad_history},
    "prepared": {**H5_MUTATIONS, "bad_settings": prep_bad_settings, "names_path": prep_names_path,
                 "chunk_bitflip": prep_chunk_bitflip, "bad_labels": prep_bad_labels},
    "keras": {**{k: v for k, v in H5_MUTATIONS.items() if k != "nonfinite"}, "zip_bomb": keras_zip_bomb,
              "zip_truncate": keras_zip_truncate, "zip_bitflip": keras_zip_bitflip, "nonfinite": h5_nonfinite},
    "image": {"png_huge_header": png_huge_header, "jpeg_huge_header": jpeg_huge_header, "truncate": truncate,
              "bitflip": lambda s, d, rng: bitflip(s, d, rng), "tiff_float": tiff_float},
    "spec": {k: None for k in (*SPEC_MUTATIONS, "deep", "not_json")},
}


def make_case(base, family, mutation, rng, out_dir, idx):
    """Write one damaged file; returns its path."""
    if family == "checkpoint":
        src, ext = base["checkpoint"], ".h5"
    elif family == "prepared":
        src, ext = base["prepared"], ".h5"
    elif family == "keras":
        zipped = mutation.startswith("zip")
        src, ext = (base["keras_zip"], ".keras") if zipped else (base["keras3"], ".weights.h5")
    elif family == "image":
        src = {"jpeg_huge_header": base["jpg"], "tiff_float": base["tif16"]}.get(
            mutation, [base["png"], base["jpg"], base["tif16"]][int(rng.integers(3))])
        ext = ".tif" if mutation == "tiff_float" else os.path.splitext(src)[1]
    else:
        src, ext = base["spec"], ".json"
    dst = os.path.join(out_dir, f"case{idx:04d}_{family}_{mutation}{ext}")
    if family == "spec":
        spec_case(dst, rng, mutation)
    else:
        FAMILY_MUTATIONS[family][mutation](src, dst, rng)
    return dst


def generate(base, rng, n, out_dir):
    """n cases [(family, mutation, path)]: SEED_CASES first, then families in turn, mutations drawn by rng."""
    cases = []
    for i, (fam, mut, seed) in enumerate(SEED_CASES):
        cases.append((fam, mut, make_case(base, fam, mut, np.random.default_rng(seed), out_dir, i)))
    i = len(cases)
    while len(cases) < n:
        fam = FAMILIES[i % len(FAMILIES)]
        muts = sorted(FAMILY_MUTATIONS[fam])
        mut = muts[int(rng.integers(len(muts)))]
        cases.append((fam, mut, make_case(base, fam, mut, rng, out_dir, i)))
        i += 1
    return cases
