"""What an image file declares, checked before OpenCV decodes it, and the decode itself guarded.

A few hundred bytes of PNG, JPEG, BMP or TIFF header can declare 65535 x 65535 pixels; decoding
that would allocate gigabytes or make OpenCV raise. `declared_size` reads width and height from the
header (PNG IHDR, JPEG SOFn, BMP info header, TIFF's first IFD), `check_declared_size` refuses more
than MAX_PIXELS or the memory budget, and `decode_guarded` turns every OpenCV refusal into a
DataError, so that `data prepare --skip-bad` skips it like any unreadable file.
"""
import struct
from pathlib import Path

import cv2
import numpy as np

from rawcnn.data.records import DataError
from rawcnn.files.validate import memory_budget

MAX_PIXELS = 1 << 28  # 16384 x 16384


def _png(head):
    if len(head) >= 24 and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def _bmp(head):
    if len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    return None


def _jpeg(fh):
    fh.seek(2)
    for _ in range(10000):
        b = fh.read(1)
        while b and b != b"\xff":
            b = fh.read(1)
        while b == b"\xff":
            b = fh.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        seg = fh.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = fh.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return w, h
        fh.seek(max(length - 2, 0), 1)
    return None


def _tiff(fh, head):
    end = "<" if head[:2] == b"II" else ">"
    fh.seek(4)
    raw = fh.read(4)
    if len(raw) < 4:
        return None
    fh.seek(struct.unpack(end + "I", raw)[0])
    raw = fh.read(2)
    if len(raw) < 2:
        return None
    n = struct.unpack(end + "H", raw)[0]
    w = h = None
    for _ in range(min(n, 4096)):
        e = fh.read(12)
        if len(e) < 12:
            break
        tag, typ = struct.unpack(end + "HH", e[:4])
        val = struct.unpack(end + ("H" if typ == 3 else "I"), e[8:10] if typ == 3 else e[8:12])[0]
        if tag == 256:
            w = val
        elif tag == 257:
            h = val
    return (w, h) if w is not None and h is not None else None


def declared_size(path):
    """(width, height) the file's header declares, or None when it cannot be told from the header."""
    with open(path, "rb") as fh:
        head = fh.read(32)
        if head.startswith(b"\x89PNG"):
            return _png(head)
        if head.startswith(b"BM"):
            return _bmp(head)
        if head.startswith(b"\xff\xd8"):
            return _jpeg(fh)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(fh, head)
    return None


def check_declared_size(path):
    """DataError when the header declares more pixels than MAX_PIXELS or than the memory budget allows."""
    try:
        wh = declared_size(path)
    except (OSError, struct.error) as e:
        raise DataError(f"{path}: cannot read the image header ({e})") from None
    if wh is None:
        return
    w, h = wh
    if w * h > MAX_PIXELS or w * h * 8 * 4 > memory_budget():
        raise DataError(f"{path}: the header declares {w} x {h} pixels, more than rawcnn reads "
                        f"({MAX_PIXELS} pixels); the file is damaged or not a radiograph")


def _quiet_opencv():
    """OpenCV's own log lines (TIFF errors, imdecode warnings) would follow rawcnn's one-line message."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:
        pass


def decode_guarded(path):
    """cv2.imdecode(IMREAD_UNCHANGED) of `path`; every failure (None, cv2.error, MemoryError) is a DataError."""
    path = Path(path)
    _quiet_opencv()
    try:
        x = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else "cv2.error"
        raise DataError(f"{path}: OpenCV cannot decode the image ({msg[:160]})") from None
    except (MemoryError, OSError, ValueError) as e:
        raise DataError(f"{path}: the image cannot be decoded ({type(e).__name__})") from None
    if x is None or x.size == 0:
        raise DataError(f"{path}: the image cannot be decoded (damaged or truncated)")
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] not in (1, 3, 4)):
        raise DataError(f"{path}: decoded to an array of shape {x.shape}, not a grey or colour image")
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    return x
