"""Hostile DICOM files (issue 20): attributes that are not numbers or not finite, rescales that overflow to
Inf, a bad NumberOfFrames or TransferSyntaxUID, broken VOI / modality LUTs, and RLE / Deflated files that
declare 16384 x 16384 pixels (a few MB on disk, gigabytes decoded). Each must end as one DataError naming the
file and the attribute (one 'Error:' line from `predict` and `data prepare`, the file skipped and reported
under --skip-bad), never an internal error or a NaN cast to uint8; good files decode as the standard says.

The files are written with pydicom; values pydicom refuses to write go in verbatim (RawDataElement), as a
hostile writer would put them.
"""
import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

pydicom = pytest.importorskip("pydicom")
from pydicom.datadict import dictionary_VR, tag_for_keyword  # noqa: E402
from pydicom.dataelem import RawDataElement  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402
from pydicom.filewriter import write_dataset, write_file_meta_info  # noqa: E402
from pydicom.tag import Tag  # noqa: E402
from pydicom.uid import (  # noqa: E402
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from cli import main  # noqa: E402
from rawcnn.data import DataError, load_image  # noqa: E402

RAMP = np.tile(np.linspace(0, 4095, 16).round().astype(np.uint16), (8, 1))  # (8, 16) 12-bit stored values


def _meta(tsyntax):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    if tsyntax is not None:
        meta.TransferSyntaxUID = UID(tsyntax)
    return meta


def _grey(rows, cols, bits=16, bits_stored=12, photometric="MONOCHROME2", **attrs):
    """The image attributes of a single-frame grey DICOM (no pixel data)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits_stored, bits_stored - 1, 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def write(path, stored=RAMP, tsyntax=ExplicitVRLittleEndian, raw=None, bits_stored=12, photometric="MONOCHROME2",
          **attrs):
    """A grey DICOM of stored (H, W) uint16 values (int16 with PixelRepresentation=1); attrs are set as
    pydicom sets them, raw {keyword: text} are written verbatim (e.g. RescaleSlope 'abc', which pydicom
    refuses to set). tsyntax None: no TransferSyntaxUID in the file meta; an unknown UID is written as it
    is (the data set itself stays Explicit VR Little Endian)."""
    ds = _grey(*stored.shape, bits_stored=bits_stored, photometric=photometric, **attrs)
    ds.PixelData = stored.astype("<i2" if stored.dtype.kind == "i" else "<u2").tobytes()
    for kw, text in (raw or {}).items():
        tag = Tag(tag_for_keyword(kw))
        b = text.encode("latin-1")
        b += b" " * (len(b) % 2)
        ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(b), b, 0, False, True)
    ds.file_meta = _meta(tsyntax)
    ds.preamble = b"\0" * 128  # pydicom's file format checks refuse a file meta without TransferSyntaxUID
    ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=tsyntax is not None)
    return path


def _lut_item(descriptor, data):
    """A LUT item (LUTDescriptor: entries, first value mapped, bits per entry) with LUTData as US values."""
    item = Dataset()
    item.add_new("LUTDescriptor", "US", list(descriptor))
    item.add_new("LUTData", "US", list(data))
    return item


def _one_error_line(r, *needles):
    """exit 1, one line 'Error: ...' holding every needle, no internal error and no traceback."""
    lines = [ln for ln in r.output.strip().splitlines() if not ln.lstrip("\r").startswith("prepare:")]  # progress
    assert r.exit_code == 1, r.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert "internal error" not in r.output and "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], (n, r.output)
    return lines[0]


# -- defect 1 and 9d: attributes that are not numbers -------------------------------------------------
@pytest.mark.parametrize("kw,text,extra", [
    ("RescaleSlope", "abc", {"RescaleIntercept": 0}),
    ("RescaleIntercept", "x1", {"RescaleSlope": 1}),
    ("WindowCenter", "abc", {"WindowWidth": 100}),
    ("WindowWidth", "wide", {"WindowCenter": 100}),
    ("NumberOfFrames", "abc", {}),  # 9d: was "invalid literal for int()" without the file's name
])
def test_non_numeric_attribute_names_file_attribute_and_value(tmp_path, kw, text, extra):
    p = write(tmp_path / "hostile.dcm", raw={kw: text}, **extra)
    with pytest.raises(DataError) as e:
        load_image(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and kw in msg and repr(text) in msg, msg
    assert "\n" not in msg


def test_empty_rows_is_named(tmp_path):
    p = write(tmp_path / "norows.dcm", raw={"Rows": ""})  # was TypeError: int() ... 'NoneType'
    with pytest.raises(DataError, match=r"norows\.dcm: DICOM attribute Rows is missing or empty"):
        load_image(p)


# -- defect 2: NaN / Inf attributes and overflow ------------------------------------------------------
@pytest.mark.parametrize("kw,text,extra", [
    ("RescaleSlope", "NaN", {"RescaleIntercept": 0}),
    ("RescaleIntercept", "inf", {"RescaleSlope": 1}),
    ("WindowCenter", "nan", {"WindowWidth": 100}),
    ("WindowWidth", "-inf", {"WindowCenter": 100}),
])
def test_non_finite_attribute_is_refused(tmp_path, kw, text, extra):
    p = write(tmp_path / "nonfinite.dcm", raw={kw: text}, **extra)
    with pytest.raises(DataError) as e:
        load_image(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and kw in msg and "finite" in msg, msg


def test_rescale_overflowing_to_inf_is_refused(tmp_path):
    # slope 1e308 is finite, but 1e308 * 4095 is not: every modality value but the first is +Inf
    p = write(tmp_path / "overflow.dcm", raw={"RescaleSlope": "1e308"}, RescaleIntercept=0)
    with pytest.raises(DataError) as e:
        load_image(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and "RescaleSlope" in msg and "Inf" in msg, msg


def test_min_max_scaling_overflow_is_refused(tmp_path):
    # signed 12-bit stored values -2048..2047 times slope 8e304: every modality value is finite, but their
    # range (hi - lo = 3.3e308) is not: without a check (v - lo) / (hi - lo) is NaN at the upper pixels and
    # the NaN is cast to uint8
    stored = np.tile(np.linspace(-2048, 2047, 16).round().astype(np.int16), (8, 1))
    p = write(tmp_path / "range.dcm", stored, raw={"RescaleSlope": "8e304"}, RescaleIntercept=0,
              PixelRepresentation=1)
    v = 8e304 * stored.astype(np.float64)
    assert np.isfinite(v).all() and not math.isfinite(float(v.max()) - float(v.min()))  # the premise
    with pytest.raises(DataError) as e:
        load_image(p)
    assert str(e.value).startswith(f"{p}: ") and "not finite" in str(e.value), str(e.value)


# -- VOI and modality LUTs -------------------------------------------------------------------------
def test_voi_lut_shorter_than_its_descriptor_is_named(tmp_path):
    # the descriptor declares 4096 entries, LUTData holds 16: the lookup indexed past the end (IndexError)
    p = write(tmp_path / "shortlut.dcm", VOILUTSequence=[_lut_item((4096, 0, 16), range(16))])
    with pytest.raises(DataError) as e:
        load_image(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and "LUTData" in msg and "4096" in msg, msg


def test_modality_lut_with_bad_entry_bits_is_named(tmp_path):
    # PS3.3 C.11.1.1.1: the third descriptor value is 8 or 16 (pydicom made dtype 'uint12': TypeError)
    p = write(tmp_path / "modlut.dcm", ModalityLUTSequence=[_lut_item((4096, 0, 12), range(4096))])
    with pytest.raises(DataError) as e:
        load_image(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and "LUTDescriptor" in msg and "12" in msg, msg


# -- defect 9e: the transfer syntax ----------------------------------------------------------------
@pytest.mark.parametrize("uid", ["1.2.3.999", "garbage!!", None])
def test_bad_transfer_syntax_is_named(tmp_path, uid):
    p = write(tmp_path / "ts.dcm", tsyntax=uid)
    with pytest.raises(DataError) as e:
        load_image(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and "TransferSyntaxUID" in msg, msg
    if uid:
        assert uid in msg


# -- good files still decode as the standard says --------------------------------------------------
def test_good_monochrome2_16_bit_window(tmp_path):
    stored = np.tile(np.arange(0, 64000, 4000, dtype=np.uint16), (3, 1))  # (3, 16) 16-bit values
    p = write(tmp_path / "w.dcm", stored, bits_stored=16, RescaleSlope=0.5, RescaleIntercept=-1024,
              WindowCenter=[2000, 10], WindowWidth=[8001, 1])  # the first window is the one used
    v = 0.5 * stored.astype(np.float64) - 1024  # PS3.3 C.11.1.1.2: modality value
    want = np.clip((v - (2000 - 0.5)) / (8001 - 1) + 0.5, 0, 1)  # PS3.3 C.11.2.1.2.1, linear window
    assert np.array_equal(load_image(p), np.rint(want * 255).astype(np.uint8))


def test_good_monochrome1_is_inverted_min_max(tmp_path):
    p = write(tmp_path / "m1.dcm", photometric="MONOCHROME1")
    want = 1 - RAMP / 4095.0  # no window: the modality values' full range; MONOCHROME1: low = bright
    assert np.array_equal(load_image(p), np.rint(want * 255).astype(np.uint8))


def test_good_voi_and_modality_luts(tmp_path):
    # modality LUT: 4096 entries from stored value 0, v = 2 * stored // 3; VOI LUT: 1024 entries from
    # v = 512, entry = 4 * index; then the full range of the VOI output (PS3.3 C.11.1, C.11.2, C.8.11.3.1.5)
    mod = [2 * i // 3 for i in range(4096)]
    voi = [4 * i for i in range(1024)]
    p = write(tmp_path / "luts.dcm", ModalityLUTSequence=[_lut_item((4096, 0, 16), mod)],
              VOILUTSequence=[_lut_item((1024, 512, 16), voi)])
    v = np.array(mod)[RAMP]
    out = np.array(voi, np.float64)[np.clip(v - 512, 0, 1023)]
    want = (out - out.min()) / (out.max() - out.min())
    assert np.array_equal(load_image(p), np.rint(want * 255).astype(np.uint8))


# -- defect 8c: decompression bombs ----------------------------------------------------------------
BOMB = 16384  # rows = columns = 16384: 2**28 pixels, the MAX_PIXELS limit itself


def _rle_bomb(path):
    """RLE Lossless, 8-bit, 16384 x 16384 zeros: 256 MB decoded from a 4 MB file (one segment of
    PackBits runs of 128 zeros)."""
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    frame = header + b"\x81\x00" * (BOMB * BOMB // 128)
    ds = _grey(BOMB, BOMB, bits=8, bits_stored=8)
    ds.PixelData = pydicom.encaps.encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta = _meta(RLELossless)
    ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return path


def _deflated_bomb(path):
    """Deflated Explicit VR Little Endian declaring 16384 x 16384 16-bit pixels: the data set inflates to
    512 MB from about 0.5 MB. The deflate stream repeats one compressed MB of zeros: after Z_FULL_FLUSH a
    block refers to nothing before it, so the copies form a valid stream."""
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, _grey(BOMB, BOMB))
    head = buf.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, BOMB * BOMB * 2)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    body += block * (BOMB * BOMB * 2 >> 20) + c.flush()
    meta = DicomBytesIO()
    meta.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(meta, _meta(DeflatedExplicitVRLittleEndian), enforce_standard=True)
    path.write_bytes(meta.getvalue() + body)
    return path


@pytest.mark.parametrize("make", [_rle_bomb, _deflated_bomb], ids=["rle", "deflated"])
def test_bomb_is_refused_by_the_memory_budget_before_decoding(tmp_path, monkeypatch, make):
    p = make(tmp_path / "bomb.dcm")
    assert p.stat().st_size < 8 << 20  # small on disk
    monkeypatch.setenv("RAWCNN_MAX_BYTES", str(32 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as e:
            load_image(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and "memory budget" in msg and "\n" not in msg, msg
    assert peak < 24 << 20, peak  # the declared image alone is 256 / 512 MB


def test_deflated_file_within_the_budget_still_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("RAWCNN_MAX_BYTES", str(32 << 20))
    ds = _grey(*RAMP.shape)
    ds.PixelData = RAMP.astype("<u2").tobytes()
    ds.file_meta = _meta(DeflatedExplicitVRLittleEndian)
    p = tmp_path / "deflated.dcm"
    ds.save_as(p, implicit_vr=False, little_endian=True, enforce_file_format=True)
    assert np.array_equal(load_image(p), np.rint(RAMP / 4095.0 * 255).astype(np.uint8))


def test_a_pydicom_without_its_private_readers_refuses_only_deflated_files(tmp_path, monkeypatch):
    """The Deflated bound uses two private pydicom readers; without them a Deflated file is refused by
    name and every other DICOM still reads (so a pydicom rename cannot break every DICOM)."""
    import rawcnn.data.dicom as dicom

    def gone(path):  # what _dicom_meta meets when pydicom renames a private reader
        raise AttributeError("module 'pydicom.filereader' has no attribute '_read_file_meta_info'")
    monkeypatch.setattr(dicom, "_dicom_meta", gone)
    ds = _grey(*RAMP.shape)
    ds.PixelData = RAMP.astype("<u2").tobytes()
    ds.file_meta = _meta(DeflatedExplicitVRLittleEndian)
    p = tmp_path / "deflated.dcm"
    ds.save_as(p, implicit_vr=False, little_endian=True, enforce_file_format=True)
    with pytest.raises(DataError, match="a Deflated DICOM, and this pydicom"):
        load_image(p)
    plain = tmp_path / "plain.dcm"
    write(plain)
    assert load_image(plain).shape == RAMP.shape


# -- end to end: predict and data prepare ------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_conv_pool_spec):
    """A checkpoint (untrained tiny net, 32 x 32 input) and a folder-per-class set of six good DICOMs."""
    from rawcnn.data import default_settings
    from rawcnn.data.preprocessing import Preprocessing
    from rawcnn.engine.checkpoint import save_checkpoint
    from rawcnn.engine.models import build
    d = tmp_path_factory.mktemp("hostile_dicom")
    s = default_settings(32)
    s.update(base_size=None)
    pre = Preprocessing(channel_order="RGB", mean=(100.0,) * 3, std=(50.0,) * 3, input_size=(32, 32),
                        resize="direct", name="test")
    save_checkpoint(d / "ck.h5", build(tiny_conv_pool_spec, seed=0, weight_std="he"), preprocessing=pre.to_dict(),
                    meta={"data_settings": s, "class_names": ["normal", "abnormal"]})
    rng = np.random.default_rng(0)
    for cls in ("normal", "abnormal"):
        (d / "src" / cls).mkdir(parents=True)
        for i in range(3):
            write(d / "src" / cls / f"{cls}{i}.dcm", rng.integers(0, 4096, (48, 40)).astype(np.uint16))
    return d


HOSTILE = {  # name: (write kwargs, what the error line must name)
    "slope_abc": ({"raw": {"RescaleSlope": "abc"}, "RescaleIntercept": 0}, ["RescaleSlope", "'abc'"]),
    "slope_nan": ({"raw": {"RescaleSlope": "NaN"}, "RescaleIntercept": 0}, ["RescaleSlope", "finite"]),
    "slope_1e308": ({"raw": {"RescaleSlope": "1e308"}, "RescaleIntercept": 0}, ["RescaleSlope", "Inf"]),
    "intercept_inf": ({"raw": {"RescaleIntercept": "inf"}, "RescaleSlope": 1}, ["RescaleIntercept", "finite"]),
    "center_nan": ({"raw": {"WindowCenter": "NaN"}, "WindowWidth": 400}, ["WindowCenter", "finite"]),
    "frames_abc": ({"raw": {"NumberOfFrames": "abc"}}, ["NumberOfFrames", "'abc'"]),
    "ts_unknown": ({"tsyntax": "1.2.3.999"}, ["TransferSyntaxUID", "1.2.3.999"]),
    "ts_garbage": ({"tsyntax": "garbage!!"}, ["TransferSyntaxUID", "garbage!!"]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_predict_on_a_hostile_dicom_is_one_error_line(base, tmp_path, name):
    kwargs, needles = HOSTILE[name]
    p = write(tmp_path / f"{name}.dcm", **kwargs)
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(base / "ck.h5"), str(p)])
    line = _one_error_line(r, str(p), *needles)
    if "nan" not in name:  # a NaN attribute is named as what it holds; nothing else may say nan
        assert "nan" not in line.lower()


def test_predict_on_a_good_dicom_still_works(base):
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(base / "ck.h5"),
                                  str(base / "src" / "normal" / "normal0.dcm")])
    assert r.exit_code == 0 and "abnormal" in r.output and "nan" not in r.output.lower(), r.output


@pytest.mark.parametrize("name", ["slope_abc", "slope_nan", "frames_abc", "ts_unknown"])
def test_prepare_refuses_a_hostile_dicom_and_skips_it_with_skip_bad(base, tmp_path, name):
    import shutil

    from rawcnn.data import load_dataset
    kwargs, needles = HOSTILE[name]
    src = tmp_path / "src"
    shutil.copytree(base / "src", src)
    bad = write(src / "abnormal" / "hostile.dcm", **kwargs)
    args = ["data", "prepare", str(src), "--input-size", "32", "--base-size", "0", "--classes", "normal,abnormal"]
    out = tmp_path / "set.h5"
    r = CliRunner().invoke(main, args + ["--out", str(out)])
    _one_error_line(r, str(bad), *needles)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]  # no output, no temporary left behind
    r = CliRunner().invoke(main, args + ["--out", str(out), "--skip-bad"])
    assert r.exit_code == 0, r.output
    assert f"skipped {bad}: " in r.output and needles[0] in r.output and "internal error" not in r.output
    data = load_dataset(out)
    names = sorted(n.decode() if isinstance(n, bytes) else str(n) for n in data.names)
    assert len(data) == 6 and names == sorted(
        f"{c}/{c}{i}" for c in ("normal", "abnormal") for i in range(3))


@pytest.mark.parametrize("make", [_rle_bomb, _deflated_bomb], ids=["rle", "deflated"])
def test_predict_and_prepare_refuse_a_bomb_in_one_line(base, tmp_path, monkeypatch, make):
    import shutil
    monkeypatch.setenv("RAWCNN_MAX_BYTES", str(32 << 20))
    bomb = make(tmp_path / "bomb.dcm")
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(base / "ck.h5"), str(bomb)])
    _one_error_line(r, str(bomb), "memory budget")
    src = tmp_path / "src"
    shutil.copytree(base / "src", src)
    shutil.move(bomb, src / "normal" / "bomb.dcm")
    r = CliRunner().invoke(main, ["data", "prepare", str(src), "--input-size", "32", "--base-size", "0",
                                  "--out", str(tmp_path / "set.h5"), "--skip-bad"])
    assert r.exit_code == 0 and f"skipped {src / 'normal' / 'bomb.dcm'}: " in r.output, r.output
    assert "memory budget" in r.output
