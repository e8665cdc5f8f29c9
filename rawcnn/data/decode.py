"""Image files to arrays, every file untrusted: the cheap header check the readers make, and the decoders.

    header_problem(path)     why a file is not a readable image (a string), or None; opens no FIFO or device
    load_image(path)         (H, W) uint8 grey; DICOM through rawcnn.data.dicom, the others decoded by OpenCV
                             behind rawcnn.data.image_check's guards
    load_image_color(path)   (H, W, 3) uint8 RGB
    load_mask(paths, shape)  (H, W) uint8 0/1, the union of mask files

Shape legend: H, W image height and width in pixels.
"""
from pathlib import Path

import cv2
import numpy as np

from rawcnn.data.dicom import is_dicom, load_dicom
from rawcnn.data.image_check import check_declared_size, decode_guarded
from rawcnn.data.records import DataError, file_problem

# first bytes of the image formats OpenCV reads (PNG, JPEG, BMP, TIFF little/big endian)
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")


def header_problem(path):
    """Why `path` is not a readable image file (a string), or None when its header looks fine."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        return problem
    if is_dicom(path):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not any(head.startswith(m) for m in MAGIC):
        return "not an image (unknown file header)"
    if head.startswith(MAGIC[0]):
        # IHDR is the first chunk: length 13, type, width, height (big-endian uint32)
        if len(head) < 33 or head[12:16] != b"IHDR":
            return "truncated PNG header"
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if width == 0 or height == 0:
            return f"PNG header gives an empty image ({width}x{height})"
    return None


def load_image(path):
    """Decode an image file as 8-bit grayscale.

    Colour is converted with OpenCV's BGR->gray weights; 16-bit images are min-max scaled to
    0..255 (their useful range varies by scanner). Returns y (H, W) uint8. Raises DataError.
    """
    path = Path(path)
    problem = header_problem(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    if is_dicom(path):
        return load_dicom(path)  # rescale, VOI window, MONOCHROME1 inverted (rawcnn.data.dicom)
    check_declared_size(path)
    x = decode_guarded(path)
    if x.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if x.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        x = cv2.cvtColor(x, code)
    if x.dtype != np.uint8:
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            bad = int(x.size - np.isfinite(x).sum())
            raise DataError(f"{path}: the image holds {bad} NaN or Inf pixel values; refusing to use it")
        x = x.astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        if not hi > lo:
            raise DataError(f"{path}: the non-8-bit image is constant ({lo:g} everywhere) "
                            f"and would decode as a blank image; refusing to use it")
        x = (x - lo) * (255.0 / max(hi - lo, 1e-12))
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)  # (H, W)
    return np.ascontiguousarray(x)


def load_mask(paths, shape):
    """Union of the mask files `paths` (nonzero = inside), checked against image `shape` (H, W).

    Returns y (H, W) uint8 with values 0/1. Raises DataError naming the file at fault.
    """
    y = np.zeros(shape, dtype=np.uint8)  # (H, W)
    for path in paths:
        m = load_image(path)
        if m.shape != tuple(shape):
            raise DataError(f"{path}: mask shape {m.shape} differs from its image's {tuple(shape)}")
        y |= (m > 0).astype(np.uint8)
    return y


def load_image_color(path):
    """Decode an image file in colour: (H, W, 3) uint8 RGB.

    Grey files (and DICOM) are replicated to R = G = B; an alpha channel is dropped; 16-bit
    colour is scaled by 255 / 65535. Raises DataError naming the file.
    """
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
