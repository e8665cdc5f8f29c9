"""The files hospitals and public sets ship: DICOM, colour and 16-bit images, the NIH
ChestX-ray14 layout, and a flat folder with a label CSV.

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

Readers (each returns rawcnn.data.readers.Records):
    read_nih(root, finding)     root/Data_Entry_2017.csv + images anywhere under root (the NIH
                                images_###/images/ folders or one images/ folder); label 1 = the
                                finding among 'Finding Labels', 0 = 'No Finding', other images
                                left out; Record.clinical['patient'] = 'Patient ID' (the split
                                keeps each patient in one split)
    read_label_csv(root, csv)   root/<file> listed in a CSV with columns file and label (an
                                integer or a class name), e.g. ../shared/data/nih-cxr14-samples
"""
import csv
import math
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from rawcnn.files.validate import _human, memory_budget
from rawcnn.data.readers import NLM_CLASS_NAMES, DataError, Record, Records, header_problem

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


def _dicom_number(ds, keyword, path, integer=False, lo=None, hi=None, default=None, index=0, where="",
                  required=False):
    """The numeric DICOM attribute `keyword` of ds, checked: every number load_dicom uses is read here.

    index: the value taken from a multi-valued attribute (WindowCenter, LUTDescriptor); default: what an
    absent or empty attribute gives (DataError instead when required); where: a prefix naming the
    sequence item the attribute is in. DataError naming the file, the attribute and what it holds unless
    the value is a finite number (whole when integer) within [lo, hi].
    """
    name = f"{where}{keyword}" + (f" (value {index + 1})" if index else "")
    try:
        v = ds.get(keyword)
    except Exception as e:  # pydicom converts the element's bytes on first access
        raise DataError(f"{path}: DICOM attribute {name} cannot be read ({_one_line(e)})") from None
    if isinstance(v, Sequence) and not isinstance(v, (str, bytes, bytearray)):
        if len(v) and index >= len(v):
            raise DataError(f"{path}: DICOM attribute {where}{keyword} holds {len(v)} value(s), expected at least "
                            f"{index + 1}")
        v = v[index] if len(v) else None
    elif index and v is not None:
        raise DataError(f"{path}: DICOM attribute {where}{keyword} holds 1 value, expected at least {index + 1}")
    if v is None or (isinstance(v, (str, bytes, bytearray)) and not v.strip()):
        if required:
            raise DataError(f"{path}: DICOM attribute {name} is missing or empty")
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise DataError(f"{path}: DICOM attribute {name} holds {_shown(v)}, not a number")
    f = float(v)
    if not math.isfinite(f):
        raise DataError(f"{path}: DICOM attribute {name} holds {_shown(f)}, not a finite number")
    if integer:
        if f != math.floor(f):
            raise DataError(f"{path}: DICOM attribute {name} holds {_shown(f)}, not a whole number")
        v = int(v) if isinstance(v, (int, np.integer)) else int(f)
    else:
        v = f
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise DataError(f"{path}: DICOM attribute {name} holds {_shown(v)}, outside {lo}..{hi}")
    return v


def _one_line(e):
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _within_budget(nbytes, path, what):
    """rawcnn.files.validate.check_bytes, as a DataError (so that --skip-bad skips the file)."""
    from rawcnn.files.validate import InputError, check_bytes
    try:
        check_bytes(nbytes, path, what)
    except InputError as e:
        raise DataError(str(e)) from None


def _dicom_meta(path):
    """(file meta, offset of the data set): the File Meta Information group only, as pydicom reads it."""
    from pydicom import filereader
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
    n = _dicom_number(item, "LUTDescriptor", path, integer=True, lo=0, hi=65535, where=where, required=True)
    first = _dicom_number(item, "LUTDescriptor", path, integer=True, lo=-32768, hi=65535, index=1, where=where,
                          required=True)
    nbits = _dicom_number(item, "LUTDescriptor", path, integer=True, index=2, where=where, required=True)
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
    import pydicom
    from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
    try:
        size = path.stat().st_size
        _within_budget(size, path, "reading the DICOM file")
        meta = pydicom.filereader.read_file_meta_info(path)  # public: only a Deflated file needs the private parts
        inflated = 0
        if str(meta.get("TransferSyntaxUID", "")).strip() == DeflatedExplicitVRLittleEndian:
            try:
                _, offset = _dicom_meta(path)
            except AttributeError:  # a pydicom without the readers rawcnn bounds the stream with
                raise DataError(f"{path}: a Deflated DICOM, and this pydicom ({pydicom.__version__}) lacks what "
                                f"rawcnn uses to bound its inflated size before reading it; refusing it") from None
            budget = memory_budget()
            inflated = _inflated_size(path, offset, budget)
            if inflated > budget:
                raise DataError(f"{path}: its Deflated data set inflates to more than {_human(budget)}, the "
                                f"memory budget (set RAWCNN_MAX_BYTES to raise it if the file is genuine)")
        ds = pydicom.dcmread(path)
    except DataError:
        raise
    except Exception as e:  # pydicom raises many types (InvalidDicomError, EOFError, struct.error, ...)
        raise DataError(f"{path}: not a readable DICOM file ({_one_line(e)})") from None
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM without pixel data")
    ts = getattr(ds, "file_meta", None) is not None and ds.file_meta.get("TransferSyntaxUID")
    if not ts or not str(ts).strip():
        raise DataError(f"{path}: DICOM file meta has no TransferSyntaxUID; the pixel data's encoding is unknown")
    ts = UID(str(ts).strip())
    if not ts.is_transfer_syntax:
        raise DataError(f"{path}: DICOM TransferSyntaxUID {_shown(ts)} is not a known transfer syntax; the "
                        f"pixel data's encoding is unknown")
    rows = _dicom_number(ds, "Rows", path, integer=True, required=True)
    cols = _dicom_number(ds, "Columns", path, integer=True, required=True)
    bits = _dicom_number(ds, "BitsAllocated", path, integer=True, required=True)
    spp = _dicom_number(ds, "SamplesPerPixel", path, integer=True, default=1)
    frames = _dicom_number(ds, "NumberOfFrames", path, integer=True, default=1) or 1
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
    # held at once: the file's bytes (and the inflated data set), the decoder's buffer and the stored array,
    # the float64 working array, a float64-sized LUT index or temporary, a bool finite mask, the uint8 result
    _within_budget(size + inflated + 2 * rows * cols * bits // 8 + rows * cols * (8 + 8 + 1 + 1), path,
                   f"decoding its {rows}x{cols} pixels at {bits} bits")
    try:
        stored = ds.pixel_array  # (H, W)
    except Exception as e:  # pydicom raises several types for missing decoders and bad data
        raise DataError(f"{path}: DICOM pixel data cannot be decoded ({type(e).__name__}: {e})") from None
    if stored.shape != (rows, cols):
        raise DataError(f"{path}: DICOM pixel data decodes to shape {stored.shape}, not the declared {rows}x{cols}")
    v = stored.astype(np.float64)  # (H, W) stored values, then modality values (PS3.3 C.11.1)
    del stored
    modality_lut = _dicom_item(ds, "ModalityLUTSequence", path)
    if modality_lut is not None:
        _lookup(v, *_lut(modality_lut, "ModalityLUTSequence", ds, path, (8, 16)))
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope = _dicom_number(ds, "RescaleSlope", path, required=True)
        intercept = _dicom_number(ds, "RescaleIntercept", path, required=True)
        v *= slope
        v += intercept
        bad = _count_nonfinite(v)
        if bad:
            raise DataError(f"{path}: the modality values RescaleSlope x stored + RescaleIntercept = {slope:g} x "
                            f"stored + {intercept:g} overflow to +-Inf at {bad} of {v.size} pixels; the file's "
                            f"rescale is damaged")
    voi_lut = _dicom_item(ds, "VOILUTSequence", path)
    if voi_lut is not None and "LUTDescriptor" in voi_lut and "LUTData" in voi_lut:
        _lookup(v, *_lut(voi_lut, "VOILUTSequence", ds, path, (8,) + tuple(range(10, 17))))
        _min_max(v)
    else:
        c = _dicom_number(ds, "WindowCenter", path)
        w = _dicom_number(ds, "WindowWidth", path)
        if c is not None and w is not None:  # linear window, PS3.3 C.11.2.1.2.1
            w = max(w, 1.0)
            v -= c - 0.5
            v /= max(w - 1.0, 1e-12)
            v += 0.5
            np.clip(v, 0.0, 1.0, out=v)
        else:
            _min_max(v)
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


def load_image_color(path):
    """Decode an image file in colour: (H, W, 3) uint8 RGB.

    Grey files (and DICOM) are replicated to R = G = B; an alpha channel is dropped; 16-bit
    colour is scaled by 255 / 65535. Raises DataError naming the file.
    """
    from rawcnn.data.image_check import check_declared_size, decode_guarded
    from rawcnn.data.readers import load_image
    path = Path(path)
    problem = header_problem(path)  # a FIFO or device is refused here, before anything opens it
    if problem:
        raise DataError(f"{path}: {problem}")
    if is_dicom(path):
        return np.repeat(load_dicom(path)[..., None], 3, axis=-1)
    check_declared_size(path)  # the grey path's guards: a header declaring 65535 x 65535 is refused
    x = decode_guarded(path)
    if x.ndim == 2 or x.shape[2] == 1:
        return np.repeat(load_image(path)[..., None], 3, axis=-1)  # (H, W, 3)
    if x.dtype == np.uint16:
        x = np.clip(np.rint(x.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise DataError(f"{path}: colour images must be 8- or 16-bit, got {x.dtype}")
    code = cv2.COLOR_BGRA2RGB if x.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return np.ascontiguousarray(cv2.cvtColor(x, code))  # (H, W, 3)


# What a CSV handed to rawcnn may hold. NIH's Data_Entry_2017.csv (112,120 rows, 12 columns) is 7.8 MB.
MAX_CSV_BYTES = 64 << 20   # the file, read within this bound (rawcnn.files.validate.read_text)
MAX_CSV_LINE = 1 << 20     # characters in one line
MAX_CSV_COLUMNS = 1024     # fields in the header or in one row
MAX_CSV_CELLS = 1 << 23    # fields kept in memory in all
MAX_CLASSES = 1000         # classes a label column may define


def _csv_lines(text, path):
    """The lines of `text` (ends kept, split at \\n, \\r\\n or \\r as open(newline='') does) for csv.reader;
    DataError at the first line longer than MAX_CSV_LINE."""
    import re
    for n, m in enumerate(re.finditer(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text), start=1):
        if m.end() - m.start() > MAX_CSV_LINE:
            raise DataError(f"{path}: line {n} holds {m.end() - m.start()} characters, more than the limit of "
                            f"{MAX_CSV_LINE}; the file is damaged or not the CSV rawcnn expects")
        yield m.group()


def _csv_table(path, need):
    """[(line number, row dict)] of a CSV file, the header being the first non-blank row; within bounds.

    The file must be a regular file of at most MAX_CSV_BYTES (UTF-8, a byte-order mark dropped); lines,
    columns and fields are bounded by MAX_CSV_LINE, MAX_CSV_COLUMNS and MAX_CSV_CELLS. Column names are
    stripped of spaces; a row shorter than the header reads '' for the columns it lacks, fields past
    the header are dropped, rows with nothing but blanks are left out. DataError naming the file (and
    the line) when a bound is passed, a needed column is missing or named twice, or csv cannot parse it.
    """
    from rawcnn.files.validate import InputError, read_text
    try:
        text = read_text(path, str(path), MAX_CSV_BYTES)
    except InputError as e:
        raise DataError(str(e)) from None
    reader = csv.reader(_csv_lines(text, path))
    header, rows, cells, line = None, [], 0, 0
    try:
        for fields in reader:
            start, line = line + 1, reader.line_num
            if len(fields) > MAX_CSV_COLUMNS:
                raise DataError(f"{path}: line {start} has {len(fields)} columns, more than the limit of "
                                f"{MAX_CSV_COLUMNS}; the file is damaged or not the CSV rawcnn expects")
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]
                missing = [c for c in need if c not in header]
                if missing:
                    found = [h[:40] for h in header[:8]] + (["..."] if len(header) > 8 else [])
                    raise DataError(f"{path}: missing column(s) {missing}; found {found}")
                twice = [c for c in need if header.count(c) > 1]
                if twice:
                    raise DataError(f"{path}: column(s) {twice} appear more than once in the header")
                continue
            cells += len(fields)
            if cells > MAX_CSV_CELLS:
                raise DataError(f"{path}: more than {MAX_CSV_CELLS} fields by line {start}; the file is larger "
                                f"than rawcnn reads")
            row = dict(zip(header, fields))
            for k in header[len(fields):]:
                row.setdefault(k, "")
            rows.append((start, row))
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: not a readable CSV file ({e})") from None
    if header is None:
        raise DataError(f"{path}: empty; expected a header line naming the columns {list(need)}")
    return rows


def _csv_rows(path, need):
    """Rows of a CSV file as dicts (read by _csv_table, within its bounds); DataError naming the file."""
    return [row for _, row in _csv_table(path, need)]


def _index_images(root):
    """{file name: path} of every file under root (the NIH images_###/images/ folders included)."""
    return {p.name: p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")}


def read_nih(root, finding="Effusion", csv_name="Data_Entry_2017.csv", skip_bad=False):
    """Read the NIH ChestX-ray14 layout (module docstring): `finding` vs 'No Finding'. Returns Records."""
    root = Path(root)
    table = root / csv_name
    if not table.is_file():
        raise DataError(f"{root}: no {csv_name}")
    rows = _csv_rows(table, ("Image Index", "Finding Labels", "Patient ID"))
    files = _index_images(root)
    records, skipped, known = [], [], set()
    for r in rows:
        for f in r["Finding Labels"].split("|"):
            known.add(f.strip())
        labels = {f.strip() for f in r["Finding Labels"].split("|")}
        label = 1 if finding in labels else 0 if labels == {"No Finding"} else None
        if label is None:
            continue
        path = files.get(r["Image Index"])
        problem = "listed in the CSV but not found under the folder" if path is None else header_problem(path)
        if problem:
            if not skip_bad:
                raise DataError(f"{path or root / r['Image Index']}: {problem}")
            skipped.append((path or root / r["Image Index"], problem))
            continue
        records.append(Record(path=path, label=label, name=Path(r["Image Index"]).stem,
                              clinical={"patient": r["Patient ID"], "finding": r["Finding Labels"]}))
    if finding not in known:
        raise DataError(f"{table}: no image has the finding {finding!r}; findings present: {sorted(known)}")
    return Records(records, ("No Finding", finding), "nih", root, skipped)


def _label_kind(v):
    """('index', int), ('name', v) or (None, why) for one label as written (stripped) in a label CSV."""
    if not v:
        return None, "empty label"
    if v.isascii() and v.isdigit():
        return "index", int(v)
    try:
        float(v)  # '0.5', '1.0', '-1', 'nan', 'inf', '1e3': numbers, but not class indices
    except ValueError:
        return "name", v
    return None, (f"label {v!r} is not a class index (a whole number 0, 1, 2, ... written in digits: '1', not "
                  f"'1.0') nor a class name")


def read_label_csv(root, csv_name="labels.csv", classes=None, skip_bad=False):
    """Read root/<file> listed in root/<csv_name> (columns file, label). Returns Records.

    label: an integer class index written in digits ('0', '1', ...), or a class name; every label of
    the file is one or the other. Integer labels take `classes` as names, or ('normal', 'abnormal')
    for 0/1 (the NLM convention: 1 = abnormal), or '0'..'K-1' for K = the largest label + 1. Name
    labels take `classes` for the order, or sorted names. At least two classes.

    Refused, naming the CSV, the line and the value (with skip_bad the row is left out and listed in
    `skipped`): an empty label or file name, a number that is not a whole number in digits ('0.5',
    '1.0', '-1', 'nan'), an index among names or a name among indices (the fewer kind is at fault),
    a file listed twice (the repeat; every row of a file listed with two labels). Refused always,
    before any file is opened: a file name that resolves (links followed) outside root, '../x.png',
    '/etc/passwd' or a link pointing out (OutsideFolderError). Then each file's header is checked,
    a FIFO or a device is refused without being opened (readers.header_problem).
    """
    from rawcnn.data.readers import inside_root
    root = Path(root)
    table = root / csv_name
    inside_root(root, table, f"{table}")
    rows = _csv_table(table, ("file", "label"))
    if not rows:
        raise DataError(f"{table}: no rows")
    bad = {}  # row index -> why it is not used

    # 1. the names: inside the folder, before anything is opened
    paths, reals = [], []
    for i, (line, r) in enumerate(rows):
        name = r["file"]
        if not name.strip() or "\0" in name:
            bad[i] = "empty file name" if not name.strip() else f"file name {name!r} holds a NUL character"
            paths.append(None)
            reals.append(None)
            continue
        paths.append(root / name)
        reals.append(inside_root(root, root / name, f"{table}: line {line}: file {name!r}"))

    # 2. the labels: all class indices or all class names
    kinds = [_label_kind(r["label"].strip()) for _, r in rows]
    for i, (kind, v) in enumerate(kinds):
        if kind is None:
            bad.setdefault(i, v)
    n_index = sum(k == "index" for i, (k, _) in enumerate(kinds) if i not in bad)
    n_name = sum(k == "name" for i, (k, _) in enumerate(kinds) if i not in bad)
    first = next((k for i, (k, _) in enumerate(kinds) if i not in bad), None)
    kind = "index" if n_index > n_name or (n_index == n_name and first == "index") else "name"
    example = next(((rows[i][0], v) for i, (k, v) in enumerate(kinds) if i not in bad and k == kind), None)
    for i, (k, v) in enumerate(kinds):
        if i not in bad and k != kind:
            other = {"index": "class indices", "name": "class names"}[kind]
            bad[i] = (f"label {str(v)!r} is a class {k}, but the other labels are {other} (e.g. {str(example[1])!r} on "
                      f"line {example[0]}); use one or the other")

    # 3. a file listed twice would be one image in two splits
    first_row = {}
    for i, real in enumerate(reals):
        if real is None or i in bad:
            continue
        if real not in first_row:
            first_row[real] = i
            continue
        j = first_row[real]
        if kinds[i][1] == kinds[j][1]:
            bad[i] = f"{rows[i][1]['file']!r} is listed again (first on line {rows[j][0]})"
        else:
            a, b = str(kinds[j][1]), str(kinds[i][1])
            bad[i] = f"{rows[i][1]['file']!r} has label {b!r} here and {a!r} on line {rows[j][0]}"
            bad.setdefault(j, f"{rows[j][1]['file']!r} has label {a!r} here and {b!r} on line {rows[i][0]}")
    if bad and not skip_bad:
        i = min(bad)
        raise DataError(f"{table}: line {rows[i][0]}: {bad[i]}")
    skipped = [(paths[i] or table, f"{table.name} line {rows[i][0]}: {bad[i]}") for i in sorted(bad)]
    keep = [i for i in range(len(rows)) if i not in bad]

    # 4. the class names
    values = [kinds[i][1] for i in keep]
    if kind == "index":
        if classes:
            names = list(classes)
        elif set(values) <= {0, 1}:
            names = list(NLM_CLASS_NAMES)
        else:
            top = max(keep, key=lambda i: kinds[i][1])
            if kinds[top][1] >= MAX_CLASSES:
                raise DataError(f"{table}: line {rows[top][0]}: label {kinds[top][1]} would make "
                                f"{kinds[top][1] + 1} classes, more than the limit of {MAX_CLASSES}")
            names = [str(i) for i in range(kinds[top][1] + 1)]
        for i in keep:
            if not 0 <= kinds[i][1] < len(names):
                raise DataError(f"{table}: label {kinds[i][1]} outside 0..{len(names) - 1} (classes {names}), "
                                f"line {rows[i][0]}")
        idx = values
    else:
        names = list(classes) if classes else sorted(set(values))
        unknown = sorted(set(values) - set(names))
        if unknown:
            i = next(i for i in keep if kinds[i][1] == unknown[0])
            raise DataError(f"{table}: label(s) {unknown[:10]} not among the classes {names[:10]} "
                            f"(e.g. line {rows[i][0]})")
        if len(names) > MAX_CLASSES:
            raise DataError(f"{table}: {len(names)} different class names, more than the limit of {MAX_CLASSES}")
        idx = [names.index(v) for v in values]
    if keep and len(names) < 2:
        raise DataError(f"{table}: only one class ({names[0]!r}); a classifier needs at least two")

    # 5. the files: a regular file with an image header (a FIFO or a device is refused unopened)
    records = []
    for i, label in zip(keep, idx):
        line, r = rows[i]
        problem = header_problem(paths[i])
        if problem:
            if not skip_bad:
                raise DataError(f"{paths[i]}: {problem} (listed on line {line} of {table})")
            skipped.append((paths[i], problem))
            continue
        records.append(Record(path=paths[i], label=label, name=Path(r["file"]).stem,
                              clinical={k: v for k, v in r.items() if k not in ("file", "label")}))
    return Records(records, names, "label_csv", root, skipped)
