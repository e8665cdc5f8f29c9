"""DICOM (pydicom-written: MONOCHROME1/2, 12/16-bit, rescale slope/intercept, a VOI window), colour
and 16-bit PNG decoding, the NIH ChestX-ray14 CSV layout and a flat folder with a label CSV."""
import csv

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid  # noqa: E402

from rawcnn.data import DataError, Labelling, load_image, prepare  # noqa: E402
from rawcnn.data.decode import load_image_color  # noqa: E402
from rawcnn.data.label_files import read_label_csv, read_nih  # noqa: E402


def write_dicom(path, stored, bits_stored=12, photometric="MONOCHROME2", slope=None, intercept=None,
                window=None, pixels=True):
    """A minimal single-frame grey DICOM file with pydicom: stored (H, W) uint16 values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if pixels:
        ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def ramp():
    """(8, 16) uint16 stored values 0..4095 along the columns (12-bit)."""
    return np.tile(np.linspace(0, 4095, 16).round().astype(np.uint16), (8, 1))


def test_dicom_12_bit_is_scaled_to_the_full_8_bit_range(tmp_path, ramp):
    y = load_image(write_dicom(tmp_path / "a.dcm", ramp))
    assert y.dtype == np.uint8 and y.shape == (8, 16)
    assert y[0, 0] == 0 and y[0, -1] == 255
    assert np.array_equal(y[0], np.rint(ramp[0] / 4095 * 255).astype(np.uint8))


def test_dicom_monochrome1_is_inverted(tmp_path, ramp):
    m2 = load_image(write_dicom(tmp_path / "m2.dcm", ramp))
    m1 = load_image(write_dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1"))
    assert np.array_equal(m1.astype(int), 255 - m2.astype(int))


def test_dicom_rescale_and_window(tmp_path):
    stored = np.tile(np.arange(0, 2000, 125, dtype=np.uint16), (4, 1))  # (4, 16) 16-bit data, values 0..1875
    # modality value v = 2 * stored - 1000 spans -1000..2750; window c = 500, w = 1001 covers v in [0, 1000]
    y = load_image(write_dicom(tmp_path / "w.dcm", stored, bits_stored=16, slope=2, intercept=-1000,
                               window=(500, 1001)))
    v = 2.0 * stored[0] - 1000
    want = np.clip((v - 499.5) / 1000 + 0.5, 0, 1) * 255  # DICOM PS3.3 C.11.2.1.2, by hand
    assert np.array_equal(y[0], np.rint(want).astype(np.uint8))
    assert y[0, 0] == 0 and y[0, -1] == 255 and 0 < y[0, 6] < 255  # stored 750: v = 500, mid-window


def test_dicom_without_pixel_data_is_one_clear_error(tmp_path, ramp):
    p = write_dicom(tmp_path / "empty.dcm", ramp, pixels=False)
    with pytest.raises(DataError, match="empty.dcm: DICOM without pixel data"):
        load_image(p)


def test_16_bit_png_and_colour_png(tmp_path):
    x = np.tile(np.linspace(1000, 3000, 10).astype(np.uint16), (3, 1))  # (3, 10)
    cv2.imwrite(str(tmp_path / "g16.png"), x)
    y = load_image(tmp_path / "g16.png")
    assert y.dtype == np.uint8 and y[0, 0] == 0 and y[0, -1] == 255
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = load_image_color(tmp_path / "red.png")
    assert rgb.shape == (2, 2, 3) and (rgb[..., 0] == 200).all() and (rgb[..., 1:] == 0).all()


def _radiograph(seed):
    from rawcnn.data import render_case
    return render_case(np.random.default_rng(seed), 96).image


def _write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows(rows)


def test_nih_layout_patient_wise_split(tmp_path):
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    rows = [["Image Index", "Finding Labels", "Follow-up #", "Patient ID"]]
    findings = ["Effusion", "No Finding", "Effusion|Mass", "Atelectasis", "No Finding"]
    for i in range(30):
        pid, name = f"{i // 3:08d}", f"{i // 3:08d}_{i % 3:03d}.png"
        cv2.imwrite(str(tmp_path / "images_001" / "images" / name), _radiograph(i))
        rows.append([name, findings[i % 5], str(i % 3), pid])
    _write_csv(tmp_path / "Data_Entry_2017.csv", rows)
    recs = read_nih(tmp_path, "Effusion")
    assert recs.class_names == ["No Finding", "Effusion"]
    assert len(recs) == 24 and sum(r.label for r in recs) == 12  # Atelectasis-only images left out
    s = prepare(tmp_path, tmp_path / "nih.h5", {"input_size": 32, "base_size": None, "roi": "locator"},
                labelling=Labelling(finding="Effusion"), progress=False)
    assert any("patient-wise" in n for n in s.notes)
    import h5py
    with h5py.File(tmp_path / "nih.h5") as f:
        names, split = f["names"].asstr()[...], f["split"][...]
    where = {}
    for n, sp in zip(names, split, strict=True):
        where.setdefault(n.split("_")[0], set()).add(int(sp))
    assert all(len(v) == 1 for v in where.values()) and set(split) == {0, 1, 2}
    with pytest.raises(DataError, match="no image has the finding 'Hernia'"):
        read_nih(tmp_path, "Hernia")


def test_flat_folder_with_label_csv_and_dicom(tmp_path, ramp):
    cv2.imwrite(str(tmp_path / "a.png"), _radiograph(1))
    cv2.imwrite(str(tmp_path / "b.png"), _radiograph(2))
    write_dicom(tmp_path / "c.dcm", ramp)
    _write_csv(tmp_path / "labels.csv", [["file", "size", "label", "finding"], ["a.png", 96, 0, "No Finding"],
                                          ["b.png", 96, 1, "Edema"], ["c.dcm", 16, 1, "x"]])
    recs = read_label_csv(tmp_path)
    assert recs.class_names == ["normal", "abnormal"] and [r.label for r in recs] == [0, 1, 1]
    assert recs[1].clinical["finding"] == "Edema"
    assert read_label_csv(tmp_path, classes=["no finding", "finding"]).class_names == ["no finding", "finding"]
    _write_csv(tmp_path / "labels.csv", [["file", "label"], ["a.png", "2"]])
    with pytest.raises(DataError, match="labels.csv: label 2 outside 0..1"):
        read_label_csv(tmp_path, classes=["normal", "abnormal"])
