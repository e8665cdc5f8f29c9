"""Readers: NLM Montgomery and Shenzhen layouts, one folder per class, and bad files."""
import cv2
import numpy as np
import pytest

from rawcnn.data.decode import load_image, load_mask
from rawcnn.data.readers import (
    detect_layout,
    parse_clinical,
    read_any,
    read_folder_per_class,
    read_montgomery,
    read_shenzhen,
)
from rawcnn.data.records import DataError
from rawcnn.data.synth import synthesize


def png(path, x):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), x)


def text(path, s):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(s)


def gray(seed=0, shape=(16, 20)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("readers") / "set"
    synthesize(out, 6, size=64, seed=0, progress=False)
    return out


def test_montgomery_on_a_synthesized_set(synth_dir):
    records = read_montgomery(synth_dir)
    assert [r.name for r in records] == sorted(p.stem for p in (synth_dir / "CXR_png").iterdir())
    assert records.class_names == ["normal", "abnormal"] and records.layout == "montgomery"
    assert records.skipped == []
    for rec in records:
        assert rec.label == int(rec.name[-1])
        left, right = rec.lung_masks
        assert left == synth_dir / "ManualMask/leftMask" / rec.path.name
        assert right == synth_dir / "ManualMask/rightMask" / rec.path.name
        assert rec.lesion_mask == synth_dir / "LesionMask" / rec.path.name
        assert rec.clinical["sex"] in ("F", "M") and 18 <= rec.clinical["age"] < 80
        assert (rec.clinical["finding"] == "normal") == (rec.label == 0)
    assert [r.name for r in read_any(synth_dir)] == [r.name for r in records]


def montgomery_by_hand(root):
    """Two good files and three bad ones; returns the bad paths."""
    png(root / "CXR_png/MCUCXR_0001_0.png", gray(1))
    text(root / "ClinicalReadings/MCUCXR_0001_0.txt", "Patient's Sex: M\nPatient's Age: 036Y\n\nnormal\n")
    png(root / "CXR_png/MCUCXR_0002_1.png", gray(2))
    text(root / "ClinicalReadings/MCUCXR_0002_1.txt",
         "Patient's Sex: F\nPatient's Age: 041Y\nPTB in the left upper field\n")
    png(root / "ManualMask/leftMask/MCUCXR_0002_1.png", (gray(3) > 128).astype(np.uint8) * 255)
    mislabelled = root / "CXR_png/MCUCXR_0003_0.png"
    png(mislabelled, gray(4))
    text(root / "ClinicalReadings/MCUCXR_0003_0.txt",
         "Patient's Sex: F\nPatient's Age: 050Y\ncavity in the right apex\n")
    unparsed = root / "CXR_png/MCUCXR_0004_7.png"
    png(unparsed, gray(5))
    unreadable = root / "CXR_png/MCUCXR_0005_1.png"
    unreadable.write_bytes(b"this is not a png at all")
    return [mislabelled, unparsed, unreadable]


def test_hand_made_montgomery_bad_files(tmp_path):
    bad = montgomery_by_hand(tmp_path)
    for path in bad:  # each bad file alone raises a DataError naming it
        others = [p for p in bad if p != path]
        moved = [p.rename(p.with_suffix(".hidden")) for p in others]
        with pytest.raises(DataError, match=path.name):
            read_montgomery(tmp_path)
        for p, m in zip(others, moved, strict=True):
            m.rename(p)
    records = read_montgomery(tmp_path, skip_bad=True)
    assert [r.name for r in records] == ["MCUCXR_0001_0", "MCUCXR_0002_1"]
    assert sorted(p for p, _ in records.skipped) == sorted(bad)
    reasons = dict(records.skipped)
    assert "disagrees" in reasons[bad[0]]
    assert "does not parse" in reasons[bad[1]]
    assert "not an image" in reasons[bad[2]]
    normal, abnormal = records
    assert normal.clinical == {"sex": "M", "age": 36, "finding": "normal"}
    assert abnormal.clinical == {"sex": "F", "age": 41, "finding": "PTB in the left upper field"}
    assert normal.lung_masks is None and normal.lesion_mask is None
    assert abnormal.lung_masks == (tmp_path / "ManualMask/leftMask/MCUCXR_0002_1.png",)


def test_truncated_png_header_and_unreadable_mask(tmp_path):
    good = cv2.imencode(".png", gray(0))[1].tobytes()
    (tmp_path / "CXR_png").mkdir()
    (tmp_path / "CXR_png/MCUCXR_0001_0.png").write_bytes(good[:20])
    with pytest.raises(DataError, match="MCUCXR_0001_0.png: truncated PNG header"):
        read_montgomery(tmp_path)
    (tmp_path / "CXR_png/MCUCXR_0001_0.png").write_bytes(good)
    (tmp_path / "ManualMask/rightMask").mkdir(parents=True)
    (tmp_path / "ManualMask/rightMask/MCUCXR_0001_0.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="rightMask/MCUCXR_0001_0.png"):
        read_montgomery(tmp_path)


def test_shenzhen_with_masks_folder(tmp_path):
    png(tmp_path / "CXR_png/CHNCXR_0001_0.png", gray(1))
    text(tmp_path / "ClinicalReadings/CHNCXR_0001_0.txt", "male 35yrs\nnormal\n")
    png(tmp_path / "mask/CHNCXR_0001_0_mask.png", (gray(2) > 100).astype(np.uint8) * 255)
    png(tmp_path / "CXR_png/CHNCXR_0002_1.png", gray(3))
    text(tmp_path / "ClinicalReadings/CHNCXR_0002_1.txt", "female 48yrs\nSTB,ATB\n")
    records = read_shenzhen(tmp_path)
    assert detect_layout(tmp_path) == "shenzhen" and read_any(tmp_path).layout == "shenzhen"
    assert [(r.name, r.label) for r in records] == [("CHNCXR_0001_0", 0), ("CHNCXR_0002_1", 1)]
    assert records[0].clinical == {"sex": "M", "age": 35, "finding": "normal"}
    assert records[1].clinical == {"sex": "F", "age": 48, "finding": "STB,ATB"}
    assert records[0].lung_masks == (tmp_path / "mask/CHNCXR_0001_0_mask.png",)
    assert records[1].lung_masks is None
    with pytest.raises(DataError, match="MCUCXR_0001_0|CHNCXR_0001_0"):
        read_montgomery(tmp_path)  # Shenzhen names do not parse as Montgomery ones


def test_montgomery_with_one_mask_file_for_both_lungs(tmp_path):
    """Redistributed Montgomery copies ship one mask per image (both lungs) in masks/: the reader takes it,
    and the NLM leftMask/rightMask pair wins when both exist."""
    png(tmp_path / "CXR_png/MCUCXR_0001_0.png", gray(1))
    png(tmp_path / "CXR_png/MCUCXR_0002_1.png", gray(2))
    png(tmp_path / "masks/MCUCXR_0001_0.png", (gray(3) > 100).astype(np.uint8) * 255)
    png(tmp_path / "masks/MCUCXR_0002_1.png", (gray(4) > 100).astype(np.uint8) * 255)
    png(tmp_path / "ManualMask/leftMask/MCUCXR_0002_1.png", (gray(5) > 100).astype(np.uint8) * 255)
    records = read_montgomery(tmp_path)
    assert records[0].lung_masks == (tmp_path / "masks/MCUCXR_0001_0.png",)
    assert records[1].lung_masks == (tmp_path / "ManualMask/leftMask/MCUCXR_0002_1.png",)
    m = load_mask(records[0].lung_masks, (16, 20))
    assert np.array_equal(m, (gray(3) > 100).astype(np.uint8))


def test_folder_per_class(tmp_path):
    for cls, n in (("normal", 2), ("abnormal", 3)):
        for i in range(n):
            png(tmp_path / cls / f"img{i}.png", gray(i))
    (tmp_path / "normal" / "notes.txt").write_text("ignored")
    records = read_folder_per_class(tmp_path)
    assert records.class_names == ["abnormal", "normal"]  # sorted; label = index
    assert [(r.name, r.label) for r in records] == [("abnormal/img0", 0), ("abnormal/img1", 0),
                                                    ("abnormal/img2", 0), ("normal/img0", 1),
                                                    ("normal/img1", 1)]
    assert detect_layout(tmp_path) == "folder_per_class"
    (tmp_path / "normal" / "img9.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="img9.png"):
        read_any(tmp_path)
    assert [p.name for p, _ in read_any(tmp_path, skip_bad=True).skipped] == ["img9.png"]


def test_unknown_layout(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="cannot tell the layout"):
        read_any(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        read_any(tmp_path / "missing")


def test_parse_clinical_variants():
    assert parse_clinical("Patient's Sex: F\nPatient's Age: 007Y\nright pleural effusion") == \
        {"sex": "F", "age": 7, "finding": "right pleural effusion"}
    assert parse_clinical("female 22yrs\n\nnormal") == {"sex": "F", "age": 22, "finding": "normal"}
    assert parse_clinical("") == {"sex": None, "age": None, "finding": ""}


def test_load_image_converts_colour_and_16_bit(tmp_path):
    x16 = np.array([[1000, 2000], [3000, 5000]], np.uint16)
    png(tmp_path / "a.png", x16)
    # min-max scaling by hand: (v - 1000) * 255 / 4000
    assert load_image(tmp_path / "a.png").tolist() == [[0, 64], [128, 255]]
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 2] = 200  # pure red in OpenCV's BGR order
    png(tmp_path / "b.png", bgr)
    assert load_image(tmp_path / "b.png").tolist() == [[60, 60], [60, 60]]  # 0.299 * 200 = 59.8
    with pytest.raises(DataError, match="differs"):
        load_mask([tmp_path / "a.png"], (3, 3))
    png(tmp_path / "m1.png", np.array([[255, 0], [0, 0]], np.uint8))
    png(tmp_path / "m2.png", np.array([[0, 0], [0, 255]], np.uint8))
    assert load_mask([tmp_path / "m1.png", tmp_path / "m2.png"], (2, 2)).tolist() == [[1, 0], [0, 1]]
