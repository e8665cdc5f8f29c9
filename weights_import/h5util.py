"""Reading HDF5 the way weight files were really written, with every failure turned into one clear error.

Keras wrote its string attributes in several ways over the years: fixed-length byte strings
(numpy 'S' arrays), variable-length str (h5py >= 3 and Keras 3), a scalar bytes or str, an empty
list stored as a float64 array of shape (0,) (h5py's reading of `attrs[k] = []`), or an HDF5 null
dataspace (h5py.Empty). Long lists are split into chunks `name0`, `name1`, ... (Keras >= 2.1,
HDF5_OBJECT_HEADER_LIMIT). The helpers here read all of them as Python lists of str.
"""
import copy
import io
import os
import zipfile
import zlib

import h5py
import numpy as np

from rawcnn.files.validate import InputError, check_bytes, check_storage

from .errors import WeightsImportError

# config.json of a .keras zip is the model's layer list as text (a VGG16's is tens of KB), never weights:
# it gets this budget of its own rather than the memory budget for arrays.
MAX_CONFIG_BYTES = 16 << 20
CHUNK = 1 << 20


def open_weights(path):
    """Open a weight file for reading.

    Returns (h5py.File, zip_config): zip_config is the text of config.json when `path` is a Keras 3
    `.keras` zip (whose model.weights.h5 is opened from memory), else None. Before anything else is
    read, every link in the file is checked (rawcnn.files.validate.check_storage): an external or soft
    link, or a virtual dataset, is refused without opening what it points to.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsImportError(f"{path}: no such file")
    if os.path.isdir(path):
        raise WeightsImportError(f"{path}: is a directory, not a weight file")
    if h5py.is_hdf5(path):
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise WeightsImportError(f"{path}: cannot open it as HDF5 ({_short(e)}); the file is probably "
                                     f"truncated or damaged (download it again)") from None
        return _checked(f, path), None
    if zipfile.is_zipfile(path):
        return _open_keras_zip(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK\x03\x04"):
        raise WeightsImportError(f"{path}: a damaged zip file (it starts like a zip but its central directory "
                                 f"is missing: truncated?); a .keras file must be a complete zip (download it "
                                 f"again)")
    raise WeightsImportError(f"{path}: not an HDF5 file (it starts with {head!r}; HDF5 files start with "
                             f"b'\\x89HDF\\r\\n\\x1a\\n'); give a Keras .h5 / .weights.h5 / .keras file or "
                             f"a rawcnn checkpoint")


def _checked(f, where):
    """f after check_storage walked its links; closed and a WeightsImportError when one is refused."""
    try:
        check_storage(f, where)
    except InputError as e:
        f.close()
        raise WeightsImportError(str(e)) from None
    return f


def _read_member(z, name, path, limit=None):
    """The bytes of zip member `name`, streamed in chunks and never more than it declares.

    limit: a byte count (config.json), or None for the memory budget (rawcnn.files.validate.check_bytes).
    The declared size is checked first; then the member is inflated CHUNK bytes at a time and
    refused as soon as it yields more than its header declares (a hostile header can declare a
    few bytes in front of gigabytes) or, at its end, less. zipfile itself cuts a stream at the
    declared size and then fails on the CRC ("damaged"); it is given room for two more chunks so
    that a longer stream is seen here and named (one that ends within those two chunks still
    fails on zipfile's CRC check, which stays on).
    """
    info = z.getinfo(name)
    declared, what = info.file_size, f"member {name} of the .keras zip"

    def within(n):
        if limit is None:
            check_bytes(n, path, what)
        elif n > limit:
            raise WeightsImportError(f"{path}: {what} is larger than {limit >> 20} MB, the limit for a Keras model "
                                     f"config (text: a VGG16's is tens of KB); the file is damaged or hostile")
    within(declared)
    roomy = copy.copy(info)
    roomy.file_size = declared + 2 * CHUNK
    chunks, n = [], 0
    with z.open(roomy) as fh:
        while chunk := fh.read(CHUNK):
            n += len(chunk)
            if n > declared:
                raise WeightsImportError(f"{path}: {what} inflates to more than the {declared} bytes its header "
                                         f"declares; the zip is damaged or hostile")
            within(n)
            chunks.append(chunk)
    if n != declared:
        raise WeightsImportError(f"{path}: {what} holds {n} bytes where its header declares {declared}; the zip "
                                 f"is damaged")
    return b"".join(chunks)


def _open_keras_zip(path):
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "model.weights.h5" not in names:
                raise WeightsImportError(f"{path}: a zip file without model.weights.h5, so not a Keras 3 "
                                         f".keras file (it holds {', '.join(names[:6]) or 'nothing'})")
            config = None
            if "config.json" in names:
                config = _read_member(z, "config.json", path, MAX_CONFIG_BYTES).decode("utf-8", "replace")
            data = _read_member(z, "model.weights.h5", path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, KeyError, EOFError, RuntimeError,
            NotImplementedError, ValueError, zlib.error) as e:
        if isinstance(e, WeightsImportError):
            raise
        if type(e).__name__ == "InputError":
            raise WeightsImportError(str(e)) from None
        raise WeightsImportError(f"{path}: damaged zip file ({_short(e)})") from None
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except OSError as e:
        raise WeightsImportError(f"{path}: model.weights.h5 inside the .keras zip is not readable HDF5 "
                                 f"({_short(e)})") from None
    return _checked(f, path), config


def _short(e):
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def get_attr(obj, name, where):
    """obj.attrs[name] or None when absent; an unreadable attribute is a WeightsImportError."""
    try:
        if name not in obj.attrs:
            return None
        return obj.attrs[name]
    except (OSError, TypeError, ValueError, KeyError) as e:
        raise WeightsImportError(f"{where}: cannot read attribute {name!r} of {obj.name!r} ({_short(e)})") from None


def as_strings(v, what):
    """A string-list attribute value in any of Keras' spellings -> list of str."""
    if v is None or isinstance(v, h5py.Empty):
        return []
    if isinstance(v, (bytes, np.bytes_)):
        return [bytes(v).decode("utf-8")]
    if isinstance(v, str):
        return [v]
    a = np.asarray(v)
    if a.size == 0:
        return []  # Keras' empty list: a float64 array of shape (0,)
    if a.dtype.kind not in "SUO":
        raise WeightsImportError(f"{what}: expected a list of names, got a {a.dtype} array of shape {a.shape}")
    return [x.decode("utf-8") if isinstance(x, (bytes, np.bytes_)) else str(x) for x in a.ravel()]


def attr_string(obj, name, where):
    """A scalar string attribute (bytes or str) -> str, or None when absent."""
    v = get_attr(obj, name, where)
    if v is None:
        return None
    s = as_strings(v, f"{where}: attribute {name!r} of {obj.name!r}")
    return s[0] if len(s) == 1 else None


def attr_strings(obj, name, where):
    """A string-list attribute, joining the chunks name0, name1, ... -> list of str; None when absent."""
    what = f"{where}: attribute {name!r} of {obj.name!r}"
    v = get_attr(obj, name, where)
    if v is not None:
        return as_strings(v, what)
    if get_attr(obj, f"{name}0", where) is None:
        return None
    out, i = [], 0
    while (chunk := get_attr(obj, f"{name}{i}", where)) is not None:
        out += as_strings(chunk, what)
        i += 1
    return out


def read_array(ds, where):
    """A weight dataset -> float32 numpy array (bfloat16 bit patterns widened); errors name `where`.

    Data stored outside the file (external storage, a virtual dataset) is refused before the read.
    """
    try:
        check_storage(ds, where)
        check_bytes(int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize, where,
                    f"dataset {ds.name!r} of shape {ds.shape}")
    except InputError as e:
        raise WeightsImportError(str(e)) from None
    except (TypeError, ValueError, OSError) as e:
        raise WeightsImportError(f"{where}: cannot read the header of dataset {ds.name!r} ({_short(e)})") from None
    try:
        a = ds[()]
        tag = ds.attrs.get("dtype")
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise WeightsImportError(f"{where}: cannot read dataset {ds.name!r} ({_short(e)}); the file is "
                                 f"probably truncated or damaged") from None
    a = np.asarray(a)
    tag = tag.decode() if isinstance(tag, bytes) else tag
    if tag == "bfloat16" and a.dtype in (np.uint16, np.int16):
        return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if a.dtype.kind != "f":
        raise WeightsImportError(f"{where}: dataset {ds.name!r} holds {a.dtype} values, not floating-point "
                                 f"weights")
    return a.astype(np.float32, copy=False)
