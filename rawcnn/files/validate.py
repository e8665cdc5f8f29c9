"""Checks on what untrusted files declare, before anything is read or allocated.

Files come from elsewhere (checkpoints, prepared sets, weight files, images, specs). Everything
here raises InputError (a ValueError) with one line naming the file and the attribute, dataset,
layer or field at fault:

- JSON attributes: the kind of HDF5 value (a string, not a number or an array), a size limit, a
  nesting-depth limit checked by scanning before json.loads (which would otherwise recurse), and
  the kind of the parsed value (object, list);
- datasets: that the member is a dataset (not a group), its declared shape against what is
  expected, its declared bytes against the memory budget, and OSError while reading (a flipped
  bit in a compressed chunk) turned into a message;
- finite values of weights and images: NaN / +-Inf are counted and refused, naming the layer.

The memory budget is half the machine's physical memory, or RAWCNN_MAX_BYTES when set.
"""
import json
import math
import os
import stat

import h5py
import numpy as np

MAX_JSON_CHARS = 16 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_TEXT_BYTES = 16 * 1024 * 1024  # the most a text or config file handed to rawcnn (class names, specs) may hold


class InputError(ValueError):
    """A file (or a value read from one) that rawcnn will not use; the message names it."""


def memory_budget():
    """Bytes one array read from a file may take: RAWCNN_MAX_BYTES, or half the physical memory."""
    env = os.environ.get("RAWCNN_MAX_BYTES")
    if env:
        try:
            return int(float(env))
        except ValueError:
            pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_bytes(nbytes, where, what="it"):
    """InputError when `nbytes` exceeds the memory budget."""
    budget = memory_budget()
    if nbytes > budget:
        raise InputError(f"{where}: {what} would need {_human(nbytes)}, more than the memory budget of "
                         f"{_human(budget)} (set RAWCNN_MAX_BYTES to raise it if the file is genuine)")


def _human(n):
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EB"


def read_text(path, where, max_bytes=MAX_TEXT_BYTES):
    """The UTF-8 text of a text or config file a user handed rawcnn, read within a budget.

    InputError (naming `where`) for what is not a regular file (a folder, a character device such
    as /dev/zero, a FIFO: opened without blocking and refused before any read), for a file of more
    than max_bytes (at most max_bytes + 1 bytes are read), and for bytes that are not UTF-8. A
    UTF-8 byte-order mark is dropped.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(f"{where}: cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{where}: not a regular file (a folder, device or pipe); give a text file")
    with open(fd, "rb", closefd=True) as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as e:
            raise InputError(f"{where}: cannot read it ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise InputError(f"{where}: more than {_human(max_bytes)}, the limit for a text file; it is not the "
                         f"file rawcnn expects")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: not UTF-8 text (byte {e.start} is 0x{data[e.start]:02x})") from None


def json_depth_ok(text, max_depth=MAX_JSON_DEPTH):
    """True when the brackets of `text` (outside strings) nest at most max_depth deep."""
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_json(text, where, kind=None, allow_null=True):
    """json.loads with limits. kind: None (anything), dict or list: the parsed value's type."""
    if isinstance(text, (bytes, np.bytes_)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: not UTF-8 text") from None
    if not isinstance(text, str):
        raise InputError(f"{where}: expected JSON text, got {type(text).__name__}")
    if len(text) > MAX_JSON_CHARS:
        raise InputError(f"{where}: JSON of {len(text)} characters, more than the limit of {MAX_JSON_CHARS}")
    if not json_depth_ok(text):
        raise InputError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep; the file is damaged "
                         f"or hostile")
    try:
        v = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InputError(f"{where}: not JSON ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    if v is None and allow_null:
        return None
    if (kind is not None and not isinstance(v, kind)) or v is None:
        want = {dict: "a JSON object", list: "a JSON list", None: "a value"}.get(kind) or kind.__name__
        raise InputError(f"{where}: expected {want}, got {_jtype(v)}")
    return v


def _jtype(v):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


_MISSING = object()


def _read_attr(obj, key, where, required):
    """obj.attrs[key], or _MISSING when absent and not required; InputError when required and absent
    or when h5py cannot read it (it raises OSError, TypeError, KeyError on damaged attributes)."""
    try:
        if key not in obj.attrs:
            if required:
                raise InputError(f"{where}: missing attribute {key!r}")
            return _MISSING
        return obj.attrs[key]
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{where}: cannot read attribute {key!r} ({_short(e)}); the file is damaged") from None


def attr_text(obj, key, where, default=None, required=False):
    """An HDF5 attribute that must be a string (str or bytes scalar); InputError for any other kind."""
    v = _read_attr(obj, key, where, required)
    if v is _MISSING:
        return default
    if isinstance(v, np.ndarray) and v.shape == () and v.dtype.kind in "SUO":
        v = v[()]
    if isinstance(v, (bytes, np.bytes_)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: attribute {key!r} is not UTF-8 text") from None
    if isinstance(v, str):
        return v
    raise InputError(f"{where}: attribute {key!r} should be a string, got {_describe(v)}")


def attr_json(obj, key, where, kind=None, default="null", required=False, allow_null=True):
    """A JSON-string attribute parsed with parse_json's limits and kind check (null refused unless allow_null)."""
    text = attr_text(obj, key, where, default=default, required=required)
    return parse_json(text, f"{where}: attribute {key!r}", kind=kind, allow_null=allow_null)


def attr_number(obj, key, where, integer=False, required=True, default=None):
    """A scalar numeric attribute (not bool, not an array, finite for integers)."""
    v = _read_attr(obj, key, where, required)
    if v is _MISSING:
        return default
    a = np.asarray(v) if not isinstance(v, (str, bytes)) else None
    if a is None or a.shape != () or a.dtype.kind not in "iuf":
        raise InputError(f"{where}: attribute {key!r} should be a number, got {_describe(v)}")
    if integer:
        f = float(a)
        if not math.isfinite(f) or f != math.floor(f) or abs(f) > 2 ** 62:
            raise InputError(f"{where}: attribute {key!r} should be a whole number, got {f}")
        return int(f)
    return float(a)


def _describe(v):
    if isinstance(v, np.ndarray):
        return f"a {v.dtype} array of shape {v.shape}"
    return f"{type(v).__name__} {str(v)[:40]!r}"


def _short(e):
    s = str(e)
    return s.splitlines()[0][:200] if s else type(e).__name__


def dataset(f, key, where, shape=None, ndim=None, kinds=None):
    """f[key] checked to be a dataset of the expected rank / shape / dtype kind (nothing is read).

    shape: a tuple where None entries match anything; kinds: dtype kinds allowed ('f', 'iu', ...).
    """
    try:
        d = f.get(key)
    except Exception as e:
        raise InputError(f"{where}: cannot open {key!r} ({_short(e)}); the file is damaged") from None
    if d is None:
        raise InputError(f"{where}: missing dataset {key!r}")
    if not isinstance(d, h5py.Dataset):
        raise InputError(f"{where}: {key!r} should be a dataset, but it is a {type(d).__name__.lower()}")
    check_storage(d, where)
    try:
        dshape, dkind = tuple(d.shape) if d.shape is not None else None, d.dtype.kind
    except Exception as e:
        raise InputError(f"{where}: cannot read the header of {key!r} ({_short(e)})") from None
    if dshape is None:
        raise InputError(f"{where}: dataset {key!r} is empty (a null dataspace)")
    if ndim is not None and len(dshape) != ndim:
        raise InputError(f"{where}: dataset {key!r} has shape {dshape}, expected {ndim} dimensions")
    if shape is not None and (len(dshape) != len(shape) or any(s is not None and s != t
                                                               for s, t in zip(shape, dshape, strict=True))):
        want = tuple("*" if s is None else s for s in shape)
        raise InputError(f"{where}: dataset {key!r} has shape {dshape}, expected {want}")
    if kinds is not None and dkind not in kinds:
        raise InputError(f"{where}: dataset {key!r} holds {d.dtype} values, expected kind {kinds!r}")
    return d


def check_storage(ds, where):
    """InputError unless what `ds` names keeps its data inside its own file; nothing is read or followed.

    ds: an h5py Dataset, or a Group / File whose every link below is checked (walked by link, never
    following one, each group once). Refused, naming the member's path: an external link or a soft
    link (another file, or a second name, would be opened to follow it), a virtual dataset (its data
    are other datasets, maybe in other files), and for a dataset given itself, external raw storage
    (`create_dataset(..., external=[(file, offset, size)])`: HDF5 opens that file when the data are
    read). The walk leaves external storage to the check each reader makes on a dataset before
    reading it, whose `where` can name the layer; the other file is opened only by a read.
    """
    try:
        if isinstance(ds, h5py.Dataset):
            _check_dataset_storage(ds, where)
        else:
            _walk_links(ds, where)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{where}: cannot read the file's structure ({_short(e)}); the file is damaged") from None


_INSIDE = "rawcnn reads only data stored inside the file"


def _text(v):
    """A name or path from the file, as at most 200 characters of text."""
    v = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return v if len(v) <= 200 else v[:200] + "..."


def _check_dataset_storage(ds, where):
    """check_storage of one dataset: neither virtual nor stored in external raw files."""
    plist = ds.id.get_create_plist()
    if ds.is_virtual:
        src = f", from {_text(plist.get_virtual_filename(0))!r}" if plist.get_virtual_count() else ""
        raise InputError(f"{where}: cannot read dataset {ds.name!r}: it is a virtual dataset (its data "
                         f"are other datasets{src}); {_INSIDE}")
    n = plist.get_external_count()
    if n:
        more = f" and {n - 1} more" if n > 1 else ""
        raise InputError(f"{where}: cannot read dataset {ds.name!r}: its data are stored in the external "
                         f"file {_text(plist.get_external(0)[0])!r}{more}; {_INSIDE}")


def _walk_links(group, where):
    """check_storage of a group: every link below it, walked by link (never followed), each group once."""
    seen, todo = set(), [group]
    while todo:
        g = todo.pop()
        if g.id in seen:  # a group hard-linked twice (or into itself) is walked once
            continue
        seen.add(g.id)
        for name in g:
            member = f"{g.name.rstrip('/')}/{name}"
            link = g.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise InputError(f"{where}: {member!r} is an external link to {_text(link.path)!r} in the file "
                                 f"{_text(link.filename)!r}; {_INSIDE}")
            if not isinstance(link, h5py.HardLink):
                kind = (f"a soft link to {_text(link.path)!r}" if isinstance(link, h5py.SoftLink)
                        else "a user-defined link")
                raise InputError(f"{where}: {member!r} is {kind}, not data of its own; {_INSIDE}, each under "
                                 f"its own name")
            obj = g[name]
            if isinstance(obj, h5py.Group):
                todo.append(obj)
            elif isinstance(obj, h5py.Dataset) and obj.is_virtual:
                _check_dataset_storage(obj, where)


def read_dataset(d, where, key=None):
    """Read a dataset after checking its declared size against the memory budget; OSError -> InputError."""
    key = key or d.name
    check_storage(d, where)
    try:
        nbytes = int(np.prod(d.shape, dtype=np.float64) * d.dtype.itemsize)
    except Exception as e:
        raise InputError(f"{where}: cannot read the header of {key!r} ({_short(e)})") from None
    check_bytes(nbytes, where, f"dataset {key!r} of shape {d.shape}")
    try:
        return d[()]
    except MemoryError:
        raise InputError(f"{where}: dataset {key!r} of shape {d.shape} does not fit in memory") from None
    except Exception as e:
        raise InputError(f"{where}: cannot read dataset {key!r} ({_short(e)}); the file is damaged "
                         f"(a corrupted chunk?)") from None


def finite_report(arrays):
    """[(name, number of NaN, number of +-Inf)] for every array in the dict name -> array that is not finite."""
    bad = []
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind not in "fc":
            continue
        fin = np.isfinite(a)
        if not fin.all():
            nan = int(np.isnan(a).sum())
            bad.append((name, nan, int(a.size - fin.sum()) - nan))
    return bad


def check_finite_params(params, where):
    """InputError naming each layer whose weights hold NaN or +-Inf. params: {layer: {key: array}}."""
    flat = {f"{layer}/{k}": v for layer, d in params.items() for k, v in d.items()}
    bad = finite_report(flat)
    if bad:
        parts = ", ".join(f"{n} ({nan} NaN, {inf} Inf)" for n, nan, inf in bad[:4])
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        raise InputError(f"{where}: weights hold non-finite values: {parts}{more}; the file is damaged or "
                         f"came from a diverged run: use an earlier checkpoint")


def check_int(v, where, lo=None, hi=None, allow_none=False):
    """A whole number (not bool) within [lo, hi], as a user would have had to type it."""
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(v)) or float(v) != int(v):
        raise InputError(f"{where}: expected a whole number, got {v!r:.60}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"{where}: {v} is outside {lo}..{hi}")
    return v


def check_float(v, where, lo=None, hi=None, allow_none=False):
    """A finite real number (not bool) within [lo, hi]."""
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
        raise InputError(f"{where}: expected a finite number, got {v!r:.60}")
    v = float(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"{where}: {v:g} is outside [{lo}, {hi}]")
    return v
