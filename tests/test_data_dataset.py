"""prepare + load_dataset: round trip, stratified split, attributes, bad files, validation."""
import json

import h5py
import numpy as np
import pytest

from rawcnn.data.dataset import load_dataset, prepare, stratified_split
from rawcnn.data.records import DataError
from rawcnn.data.synth import synthesize

SETTINGS = dict(base_size=96, input_size=48, clahe_tile_grid=4)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    synthesize(root / "src", 20, size=96, seed=2, progress=False)
    summary = prepare(root / "src", root / "set.h5", SETTINGS, seed=7, progress=False)
    return root, summary, load_dataset(root / "set.h5")


def test_round_trip_shapes_and_labels(prepared):
    root, summary, ds = prepared
    assert summary.n == len(ds) == 20 and summary.skipped == []
    assert ds.images.shape == (20, 1, 48, 48) and ds.images.dtype == np.uint8
    assert ds.class_names == ["normal", "abnormal"] and ds.layout == "montgomery"
    assert ds.settings["input_size"] == 48 and ds.settings["base_size"] == 96 and ds.settings["clahe"] is True
    assert ds.version == "0.1.0" and ds.seed == 7
    assert ds.source == str((root / "src").resolve())
    for name, label in zip(ds.names, ds.labels, strict=True):
        assert label == int(name[-1])  # MCUCXR_####_L
    train = ds.split("train")
    assert train.images.shape == (len(train.labels), 3, 48, 48) and train.images.dtype == np.uint8
    assert (train.images[:, 0] == train.images[:, 2]).all()
    assert ds.has_lesion_mask.all() and ds.has_lung_mask.all()
    for lesion, label in zip(ds.lesion_masks, ds.labels, strict=True):
        assert lesion.any() == (label == 1)
        assert set(np.unique(lesion)) <= {0, 1}
    assert ((ds.lesion_masks == 1) <= (ds.lung_masks == 1)).all()  # lesions inside lungs
    assert (ds.roi_boxes[:, 1] > ds.roi_boxes[:, 0]).all() and (ds.source_shapes == 96).all()


def test_split_is_stratified_and_seeded(prepared):
    root, summary, ds = prepared
    # 10 normal and 10 abnormal; by hand: round(0.7 * 10) = 7, round(0.9 * 10) = 9 -> 7 / 2 / 1
    assert ds.counts().tolist() == [[7, 7], [2, 2], [1, 1]]
    assert summary.counts.tolist() == [[7, 7], [2, 2], [1, 1]]
    parts = [set(ds.split(n).names) for n in ("train", "val", "test")]
    assert sum(map(len, parts)) == 20 and set.union(*parts) == set(ds.names)
    again = prepare(root / "src", root / "again.h5", SETTINGS, seed=7, progress=False)
    other = prepare(root / "src", root / "other.h5", SETTINGS, seed=8, progress=False)
    assert (load_dataset(again.path).split_ids == ds.split_ids).all()
    assert (load_dataset(other.path).split_ids != ds.split_ids).any()
    assert (load_dataset(again.path).images == ds.images).all()


def test_stratified_split_by_hand():
    labels = np.array([0] * 7 + [1] * 3)
    split = stratified_split(labels, (0.5, 0.25, 0.25), np.random.default_rng(0))
    # class 0: round(3.5) = 4 train, round(5.25) = 5 -> 1 val, 2 test; class 1: round(1.5) = 2
    # train, round(2.25) = 2 -> 0 val, 1 test
    assert np.bincount(split[labels == 0], minlength=3).tolist() == [4, 1, 2]
    assert np.bincount(split[labels == 1], minlength=3).tolist() == [2, 0, 1]


def test_bad_file_raises_or_is_skipped(tmp_path):
    synthesize(tmp_path / "src", 6, size=64, seed=0, progress=False)
    bad = tmp_path / "src" / "CXR_png" / "MCUCXR_0099_0.png"
    # a PNG whose header the reader accepts (signature, IHDR 64 x 64) but whose data is junk:
    # only decoding, in prepare, finds it out
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00\x00\x00\x40" * 2
                    + bytes([8, 0, 0, 0, 0]) + b"\x00" * 4 + b"garbage" * 4)
    with pytest.raises(DataError, match="MCUCXR_0099_0.png"):
        prepare(tmp_path / "src", tmp_path / "out.h5", dict(base_size=64, input_size=32), progress=False)
    assert list(tmp_path.glob("*.h5")) == [] and list(tmp_path.glob(".*tmp*")) == []
    summary = prepare(tmp_path / "src", tmp_path / "out.h5", dict(base_size=64, input_size=32),
                      skip_bad=True, progress=False)
    assert summary.n == 6 and [p for p, _ in summary.skipped] == [str(bad)]
    ds = load_dataset(tmp_path / "out.h5")
    assert len(ds) == 6 and "MCUCXR_0099_0" not in set(ds.names)
    assert ds.skipped[0][0] == str(bad) and "decoded" in ds.skipped[0][1]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        prepare(tmp_path, tmp_path / "x.h5", split=(0.5, 0.5, 0.5), progress=False)
    with pytest.raises(ValueError, match="input_size or base_size"):
        prepare(tmp_path, tmp_path / "x.h5", dict(base_size=None, input_size=None), progress=False)


def test_load_errors_name_the_file(prepared, tmp_path):
    root, _, ds = prepared
    with pytest.raises(DataError, match="nothing.h5: no such file"):
        load_dataset(tmp_path / "nothing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="text.h5: not a readable HDF5"):
        load_dataset(tmp_path / "text.h5")
    broken = tmp_path / "broken.h5"
    with h5py.File(root / "set.h5", "r") as src, h5py.File(broken, "w") as dst:
        for name in src:
            if name != "labels":
                src.copy(name, dst)
        dst.attrs.update(src.attrs)
    with pytest.raises(DataError, match=r"broken.h5: missing dataset\(s\) \['labels'\]"):
        load_dataset(broken)
    with h5py.File(broken, "a") as f:
        f["labels"] = np.zeros(19, np.int64)
    with pytest.raises(DataError, match=r"broken.h5: dataset 'images' has shape \(20, 1, 48, 48\), expected \(19"):
        load_dataset(broken)
    with h5py.File(broken, "a") as f:
        del f["labels"]
        f["labels"] = np.full(20, 5, np.int64)
        assert json.loads(f.attrs["class_names"]) == ["normal", "abnormal"]
    with pytest.raises(DataError, match="labels outside 0..1"):
        load_dataset(broken)
    with pytest.raises(ValueError, match="no split 'dev'"):
        ds.split("dev")
