"""Preprocessing settings read back from a file (a prepared set's `settings`, a checkpoint's
`data_settings`), validated as if a user had typed them, before OpenCV or NumPy sees them.

Known keys are checked for type and range; keys this module does not know are passed through to
rawcnn.data.preprocess.check_settings, which decides about them.
"""
from rawcnn.files.validate import InputError, check_float, check_int

MAX_SIZE = 8192       # the largest base_size / input_size (pixels a side) a file may ask for
MAX_TILE_GRID = 256   # CLAHE tiles a side
MAX_CLIP_LIMIT = 1e4


def _bool(v, where):
    if not isinstance(v, bool):
        raise InputError(f"{where}: expected true or false, got {v!r:.60}")
    return v


def check_stored_settings(s, where):
    """Validate the settings dict `s` read from a file; returns it (None stays None). InputError names the key."""
    if s is None:
        return None
    if not isinstance(s, dict):
        raise InputError(f"{where}: expected an object of preprocessing settings, got {type(s).__name__}")
    checks = {"roi_crop": lambda v, w: _bool(v, w),
              "clahe": lambda v, w: _bool(v, w),
              "mask_outside": lambda v, w: _bool(v, w),
              "roi_margin": lambda v, w: check_float(v, w, 0.0, 1.0),
              "base_size": lambda v, w: check_int(v, w, 8, MAX_SIZE, allow_none=True),
              "input_size": lambda v, w: check_int(v, w, 8, MAX_SIZE, allow_none=True),
              "clahe_clip_limit": lambda v, w: check_float(v, w, 1e-6, MAX_CLIP_LIMIT),
              "clahe_tile_grid": lambda v, w: check_int(v, w, 1, MAX_TILE_GRID),
              "channels": lambda v, w: check_int(v, w, 1, 3)}
    for key, check in checks.items():
        if key in s:
            s[key] = check(s[key], f"{where}: setting {key!r}")
    if s.get("channels") == 2:
        raise InputError(f"{where}: setting 'channels' must be 1 or 3, got 2")
    return s
