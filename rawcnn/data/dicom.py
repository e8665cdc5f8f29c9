"""DICOM radiographs: is_dicom (the preamble's marker) and load_dicom (to 8-bit grey), the file untrusted.

Shape legend: H, W image height and width; R, Cl the DICOM's declared Rows and Columns.

DICOM (pydicom), to 8-bit grey, in the order the standard gives (PS3.3 C.11, PS3.4 N.2):
    1. stored values -> modality values: v = slope * stored + intercept  (Rescale Slope/Intercept)
    2. VOI: a VOI LUT Sequence when there is one (pydicom.pixels.apply_voi_lut), else the first
       window (Window Center c, Window Width w), linear as in C.11.2.1.2:
           y = ((v - (c - 0.5)) / (w - 1) + 0.5) clipped to [0, 1]
       else the full range of the modality values (min-max), as 12-16-bit data must be scaled
       to 8 bits somehow and its useful range differs by scanner;
    3. to 0-255; MONOCHROME1 (bright = low values) is inverted so that bone is bright.
    Declared sizes (Rows, Columns, Bits Allocated, Samples per Pixel, frames) are checked against
    a limit and against the pixel data's length before any array is allocated.
    The file is untrusted (load_dicom): every number used (the sizes, Rescale Slope/Intercept, Window
    Center/Width, LUT Descriptor and LUT Data of a Modality or VOI LUT) is read through one checked
    helper (_dicom_number: DataError naming the file, the attribute and what it holds unless it is a
    finite number); the Transfer Syntax UID must be one pydicom knows; the decode is bounded by
    rawcnn's memory budget (RAWCNN_MAX_BYTES), a Deflated data set's inflated size included, before
    pydicom reads or decodes it; modality and scaled values are checked finite before the cast to uint8.
"""
import math
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rawcnn.data.records import DataError
from rawcnn.files.validate import InputError, _human, check_bytes, memory_budget

MAX_PIXELS = 1 << 28  # 268 M values: far above any radiograph, far below a memory-exhausting header


def is_dicom(path):
    """True when the file has the DICOM preamble's 'DICM' marker at byte 128."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _shown(v):
    """What a DICOM attribute holds, for a message: its text or number, shortened."""
    if isinstance(v, (bytes, bytearray)):
        return f"{len(v)} bytes of binary data"
    if isinstance(v, (float, np.floating)) and not isinstance(v, bool):
        f = float(v)
        return "NaN" if math.isnan(f) else ("Inf" if f == math.inf else "-Inf" if f == -math.inf else f"{f:g}")
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    text = str(v)
    return repr(text if len(text) <= 40 else text[:40] + "...")


@dataclass(frozen=True)
class Number:
    """What a numeric DICOM attribute must hold for _dicom_number: a finite number, whole when `integer`,
    within [lo, hi] (None: unbounded); an absent or empty attribute gives `default`, or DataError when
    `required`."""
    integer: bool = False
    lo: float = None
    hi: float = None
    default: float = None
    required: bool = False


ANY_NUMBER = Number()                               # WindowCenter, WindowWidth: absent is None
REQUIRED_NUMBER = Number(required=True)             # RescaleSlope, RescaleIntercept once both are present
REQUIRED_WHOLE = Number(integer=True, required=True)  # Rows, Columns, BitsAllocated


def _dicom_number(ds, keyword, path, rule=ANY_NUMBER, index=0, where=""):
    """The numeric DICOM attribute `keyword` of ds, checked by `rule` (a Number): every number load_dicom uses
    is read here.

    index: the value taken from a multi-valued attribute (WindowCenter, LUTDescriptor); where: a prefix naming
    the sequence item the attribute is in. DataError naming the file, the attribute and what it holds unless
    the value is a finite number (whole when rule.integer) within [rule.lo, rule.hi].
    """
    name = f"{where}{keyword}" + (f" (value {index + 1})" if index else "")
    v = _dicom_value(ds, keyword, path, index, where)
    if v is None or (isinstance(v, (str, bytes, bytearray)) and not v.strip()):
        if rule.required:
            raise DataError(f"{path}: DICOM attribute {name} is missing or empty")
        return rule.default
    v = _finite_number(v, rule.integer, f"{path}: DICOM attribute {name}")
    if (rule.lo is not None and v < rule.lo) or (rule.hi is not None and v > rule.hi):
        raise DataError(f"{path}: DICOM attribute {name} holds {_shown(v)}, outside {rule.lo}..{rule.hi}")
    return v


def _dicom_value(ds, keyword, path, index, where):
    """Value `index` of the attribute `keyword` of ds as pydicom gives it (None when absent or an empty list);
    DataError when pydicom cannot convert it, or it holds fewer than index + 1 values."""
    name = f"{where}{keyword}" + (f" (value {index + 1})" if index else "")
    try:
        v = ds.get(keyword)
    except Exception as e:  # pydicom converts the element's bytes on first access
        raise DataError(f"{path}: DICOM attribute {name} cannot be read ({_one_line(e)})") from None
    if isinstance(v, Sequence) and not isinstance(v, (str, bytes, bytearray)):
        if len(v) and index >= len(v):
            raise DataError(f"{path}: DICOM attribute {where}{keyword} holds {len(v)} value(s), expected at least "
                            f"{index + 1}")
        return v[index] if len(v) else None
    if index and v is not None:
        raise DataError(f"{path}: DICOM attribute {where}{keyword} holds 1 value, expected at least {index + 1}")
    return v


def _finite_number(v, integer, what):
    """v (present, not blank) as a float, or an int when `integer`; DataError '<what> holds ...' unless it is
    a finite number, and whole when `integer`."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise DataError(f"{what} holds {_shown(v)}, not a number")
    f = float(v)
    if not math.isfinite(f):
        raise DataError(f"{what} holds {_shown(f)}, not a finite number")
    if not integer:
        return f
    if f != math.floor(f):
        raise DataError(f"{what} holds {_shown(f)}, not a whole number")
    return int(v) if isinstance(v, (int, np.integer)) else int(f)


def _one_line(e):
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _within_budget(nbytes, path, what):
    """rawcnn.files.validate.check_bytes, as a DataError (so that --skip-bad skips the file)."""
    try:
        check_bytes(nbytes, path, what)
    except InputError as e:
        raise DataError(str(e)) from None


def _dicom_meta(path):
    """(file meta, offset of the data set): the File Meta Information group only, as pydicom reads it."""
    from pydicom import filereader  # heavy: pydicom, needed only for DICOM files
    with open(path, "rb") as f:
        filereader.read_preamble(f, False)
        meta = filereader._read_file_meta_info(f)
        if hasattr(filereader, "_read_command_set_elements"):  # pydicom 3 reads these before inflating
            filereader._read_command_set_elements(f)
        return meta, f.tell()


def _inflated_size(path, offset, limit, piece=1 << 20):
    """Bytes the raw deflate stream from `offset` to the end of the file inflates to, inflated a piece
    (1 MB) at a time and thrown away, so that nothing larger than a piece is held; stops counting once
    past `limit`. DataError when the stream is damaged."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while not d.eof:
                data = f.read(piece)
                if not data:
                    break
                while True:
                    out = d.decompress(data, piece)
                    total += len(out)
                    if total > limit:
                        return total
                    data = d.unconsumed_tail
                    if d.eof or (not data and len(out) < piece):
                        break
    except zlib.error as e:
        raise DataError(f"{path}: the Deflated DICOM data set is damaged (zlib: {e})") from None
    return total


def _lut(item, seq, ds, path, entry_bits):
    """(first value mapped, (n,) float64 entries) of the first item of a modality or VOI LUT sequence
    (PS3.3 C.11.1, C.11.2, C.8.11.3.1.5): LUTDescriptor = (n entries, 0 meaning 65536; first value
    mapped; bits per entry, one of entry_bits), LUTData holding at least n entries (US values or OW)."""
    where = f"{seq} "
    n = _dicom_number(item, "LUTDescriptor", path, Number(integer=True, lo=0, hi=65535, required=True), where=where)
    first = _dicom_number(item, "LUTDescriptor", path, Number(integer=True, lo=-32768, hi=65535, required=True),
                          index=1, where=where)
    nbits = _dicom_number(item, "LUTDescriptor", path, REQUIRED_WHOLE, index=2, where=where)
    if nbits not in entry_bits:
        raise DataError(f"{path}: DICOM attribute {where}LUTDescriptor gives {nbits} bits per LUT entry; "
                        f"the standard allows {', '.join(map(str, entry_bits))}")
    n = n or 65536
    try:
        data = item["LUTData"].value
    except Exception as e:
        raise DataError(f"{path}: DICOM attribute {where}LUTData cannot be read ({_one_line(e)})") from None
    if isinstance(data, (bytes, bytearray)):  # OW: words in the file's byte order
        if len(data) < 2 * n:
            raise DataError(f"{path}: DICOM attribute {where}LUTData holds {len(data) // 2} entries; its "
                            f"LUTDescriptor declares {n}")
        order = "<" if ds.file_meta.TransferSyntaxUID.is_little_endian else ">"
        return first, np.frombuffer(data, dtype=f"{order}u2", count=n).astype(np.float64)  # (n,)
    values = list(data) if isinstance(data, Sequence) and not isinstance(data, str) else [data]
    if len(values) < n:
        raise DataError(f"{path}: DICOM attribute {where}LUTData holds {len(values)} entries; its LUTDescriptor "
                        f"declares {n}")
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in values[:n]):
        bad = next(x for x in values[:n] if not isinstance(x, (int, np.integer)) or isinstance(x, bool))
        raise DataError(f"{path}: DICOM attribute {where}LUTData holds {_shown(bad)}, not a whole number")
    return first, np.asarray(values[:n], dtype=np.float64)  # (n,)


def _lookup(v, first, lut):
    """v (H, W) float64 replaced in place by lut[clip(v - first, 0, n - 1)] (values below `first` map to
    the first entry, above the table to the last: PS3.3 C.11.1.1.1)."""
    v -= first
    np.clip(v, 0, len(lut) - 1, out=v)
    np.take(lut, v.astype(np.intp), out=v, mode="clip")  # indices are in range; "clip" writes v unbuffered
    return v


def load_dicom(path):
    """Decode a DICOM radiograph to (H, W) uint8 (module docstring). Raises DataError naming the file.

    Untrusted input: every number used is read through _dicom_number (a finite number of the right kind,
    or DataError naming the attribute and what it holds); the transfer syntax must be one pydicom knows;
    before anything is decoded, the bytes the decode and the float64 working copy need are checked against
    rawcnn's memory budget (rawcnn.files.validate.check_bytes: RAWCNN_MAX_BYTES or half the RAM). Deflated
    Explicit VR Little Endian files, which pydicom inflates whole while reading, are first inflated here a
    megabyte at a time and thrown away (_inflated_size): a data set inflating past the budget is refused
    before pydicom reads it. Modality values and the windowed values are checked finite before the cast
    to uint8. pydicom's own warnings about invalid values are silenced: what matters is refused here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="pydicom")
        with np.errstate(all="ignore"):  # overflow is checked (non-finite values refused), not warned about
            return _load_dicom(Path(path))


def _load_dicom(path):
    """load_dicom's steps, in order, for a pathlib.Path: (H, W) uint8."""
    ds, held = _read_dataset(path)
    ts = _transfer_syntax(ds, path)
    rows, cols, bits = _declared_size(ds, ts, path)
    # held at once: the file's bytes (and the inflated data set), the decoder's buffer and the stored array,
    # the float64 working array, a float64-sized LUT index or temporary, a bool finite mask, the uint8 result
    _within_budget(held + 2 * rows * cols * bits // 8 + rows * cols * (8 + 8 + 1 + 1), path,
                   f"decoding its {rows}x{cols} pixels at {bits} bits")
    v = _stored_values(ds, rows, cols, path)  # (H, W) float64
    _modality_values(v, ds, path)
    _voi(v, ds, path)
    return _to_uint8(v, ds, path)


def _read_dataset(path):
    """(pydicom data set, bytes held: the file's size plus a Deflated data set's inflated size).

    The file's size is checked against the memory budget before it is read; a Deflated data set is
    inflated a piece at a time and thrown away (_inflated_size) and refused past the budget before
    pydicom inflates it whole. DataError for anything pydicom cannot read.
    """
    import pydicom  # heavy: pydicom, needed only for DICOM files
    from pydicom.uid import DeflatedExplicitVRLittleEndian  # heavy: pydicom, needed only for DICOM files
    try:
        size = path.stat().st_size
        _within_budget(size, path, "reading the DICOM file")
        meta = pydicom.filereader.read_file_meta_info(path)  # public: only a Deflated file needs the private parts
        inflated = 0
        if str(meta.get("TransferSyntaxUID", "")).strip() == DeflatedExplicitVRLittleEndian:
            inflated = _deflated_size(path, pydicom.__version__)
        return pydicom.dcmread(path), size + inflated
    except DataError:
        raise
    except Exception as e:  # pydicom raises many types (InvalidDicomError, EOFError, struct.error, ...)
        raise DataError(f"{path}: not a readable DICOM file ({_one_line(e)})") from None


def _deflated_size(path, version):
    """Bytes a Deflated file's data set inflates to, counted before pydicom reads it; DataError past the
    memory budget, or when this pydicom (`version`) lacks the readers that find where the stream starts."""
    try:
        _, offset = _dicom_meta(path)
    except AttributeError:  # a pydicom without the readers rawcnn bounds the stream with
        raise DataError(f"{path}: a Deflated DICOM, and this pydicom ({version}) lacks what "
                        f"rawcnn uses to bound its inflated size before reading it; refusing it") from None
    budget = memory_budget()
    inflated = _inflated_size(path, offset, budget)
    if inflated > budget:
        raise DataError(f"{path}: its Deflated data set inflates to more than {_human(budget)}, the "
                        f"memory budget (set RAWCNN_MAX_BYTES to raise it if the file is genuine)")
    return inflated


def _transfer_syntax(ds, path):
    """The data set's Transfer Syntax UID (pydicom UID); DataError when there is no pixel data, or the UID
    is absent or not a transfer syntax pydicom knows (the pixel data's encoding would be unknown)."""
    from pydicom.uid import UID  # heavy: pydicom, needed only for DICOM files
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM without pixel data")
    ts = getattr(ds, "file_meta", None) is not None and ds.file_meta.get("TransferSyntaxUID")
    if not ts or not str(ts).strip():
        raise DataError(f"{path}: DICOM file meta has no TransferSyntaxUID; the pixel data's encoding is unknown")
    ts = UID(str(ts).strip())
    if not ts.is_transfer_syntax:
        raise DataError(f"{path}: DICOM TransferSyntaxUID {_shown(ts)} is not a known transfer syntax; the "
                        f"pixel data's encoding is unknown")
    return ts


def _declared_size(ds, ts, path):
    """(rows, cols, bits allocated) as declared, checked: a single-frame grey image of 8/16/32 bits, at most
    MAX_PIXELS pixels, whose uncompressed pixel data (transfer syntax ts) is long enough. DataError else."""
    rows = _dicom_number(ds, "Rows", path, REQUIRED_WHOLE)
    cols = _dicom_number(ds, "Columns", path, REQUIRED_WHOLE)
    bits = _dicom_number(ds, "BitsAllocated", path, REQUIRED_WHOLE)
    spp = _dicom_number(ds, "SamplesPerPixel", path, Number(integer=True, default=1))
    frames = _dicom_number(ds, "NumberOfFrames", path, Number(integer=True, default=1)) or 1
    if rows < 1 or cols < 1 or bits not in (8, 16, 32) or spp != 1:
        raise DataError(f"{path}: DICOM declares {rows}x{cols}, {bits} bits allocated, {spp} sample(s) per pixel; "
                        f"rawcnn reads grey (1 sample) 8/16/32-bit images")
    if frames != 1:
        raise DataError(f"{path}: DICOM has {frames} frames; rawcnn reads single-frame radiographs")
    if rows * cols > MAX_PIXELS:
        raise DataError(f"{path}: DICOM declares {rows}x{cols} pixels, more than the limit of {MAX_PIXELS}")
    if not ts.is_compressed and len(ds.PixelData) < rows * cols * bits // 8:
        raise DataError(f"{path}: DICOM pixel data holds {len(ds.PixelData)} bytes, {rows}x{cols} at {bits} bits "
                        f"needs {rows * cols * bits // 8}")
    return rows, cols, bits


def _stored_values(ds, rows, cols, path):
    """The decoded pixel data as (H, W) float64 stored values; DataError when pydicom cannot decode it or
    it decodes to another shape than the declared rows x cols."""
    try:
        stored = ds.pixel_array  # (H, W)
    except Exception as e:  # pydicom raises several types for missing decoders and bad data
        raise DataError(f"{path}: DICOM pixel data cannot be decoded ({type(e).__name__}: {e})") from None
    if stored.shape != (rows, cols):
        raise DataError(f"{path}: DICOM pixel data decodes to shape {stored.shape}, not the declared {rows}x{cols}")
    return stored.astype(np.float64)  # (H, W)


def _modality_values(v, ds, path):
    """v (H, W) float64 stored values -> modality values in place (PS3.3 C.11.1): the Modality LUT when
    there is one, else RescaleSlope x v + RescaleIntercept when both are given; DataError when the
    rescale overflows to +-Inf."""
    modality_lut = _dicom_item(ds, "ModalityLUTSequence", path)
    if modality_lut is not None:
        _lookup(v, *_lut(modality_lut, "ModalityLUTSequence", ds, path, (8, 16)))
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope = _dicom_number(ds, "RescaleSlope", path, REQUIRED_NUMBER)
        intercept = _dicom_number(ds, "RescaleIntercept", path, REQUIRED_NUMBER)
        v *= slope
        v += intercept
        bad = _count_nonfinite(v)
        if bad:
            raise DataError(f"{path}: the modality values RescaleSlope x stored + RescaleIntercept = {slope:g} x "
                            f"stored + {intercept:g} overflow to +-Inf at {bad} of {v.size} pixels; the file's "
                            f"rescale is damaged")
    return v


def _voi(v, ds, path):
    """v (H, W) float64 modality values -> [0, 1] in place (module docstring, step 2): the VOI LUT when
    there is one, else the first window (linear, PS3.3 C.11.2.1.2.1), else min-max."""
    voi_lut = _dicom_item(ds, "VOILUTSequence", path)
    if voi_lut is not None and "LUTDescriptor" in voi_lut and "LUTData" in voi_lut:
        _lookup(v, *_lut(voi_lut, "VOILUTSequence", ds, path, (8,) + tuple(range(10, 17))))
        return _min_max(v)
    c = _dicom_number(ds, "WindowCenter", path)
    w = _dicom_number(ds, "WindowWidth", path)
    if c is None or w is None:
        return _min_max(v)
    w = max(w, 1.0)
    v -= c - 0.5
    v /= max(w - 1.0, 1e-12)
    v += 0.5
    np.clip(v, 0.0, 1.0, out=v)
    return v


def _to_uint8(v, ds, path):
    """v (H, W) float64 on [0, 1] -> (H, W) uint8, MONOCHROME1 inverted so that bone is bright; DataError
    when a value is not finite (modality values too wide for float64)."""
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        np.subtract(1.0, v, out=v)
    bad = _count_nonfinite(v)
    if bad:
        raise DataError(f"{path}: the scaled pixel values are not finite at {bad} of {v.size} pixels (the modality "
                        f"values' range is too wide for float64); refusing to cast them to 8 bits")
    v *= 255.0
    np.rint(v, out=v)
    np.clip(v, 0, 255, out=v)
    return v.astype(np.uint8)  # (H, W)


def _dicom_item(ds, keyword, path):
    """The first item of the sequence `keyword`, or None when absent or empty; DataError when unreadable."""
    try:
        seq = ds.get(keyword)
        return seq[0] if seq else None
    except Exception as e:
        raise DataError(f"{path}: DICOM attribute {keyword} cannot be read ({_one_line(e)})") from None


def _min_max(v):
    """v (H, W) float64 scaled in place to [0, 1] by its own range: 12-16-bit data must become 8 bits somehow."""
    lo, hi = float(v.min()), float(v.max())
    v -= lo
    v /= max(hi - lo, 1e-12)
    return v


def _count_nonfinite(v):
    return 0 if np.isfinite(v).all() else int(v.size - np.count_nonzero(np.isfinite(v)))
