"""Checkpoints: one HDF5 file (never pickle), written to a temporary file and renamed.

Layout:
    /params/<layer>/<key>      float arrays (w, b) as the engine holds them (OIHW, (out, in))
    /momentum/<layer>/<key>    SGD velocity, when an optimizer state is saved
    /weights/<layer>/<key>     the trained weights, when /params holds their average (a run with
                               --average-epochs): the layers SGD trains, what a resume continues from
    attrs: format = "rawcnn-checkpoint", format_version, rawcnn_version, spec (JSON), epoch, lr,
           rng_state (JSON, the training generator), dropout_rng (JSON, one state per Dropout),
           history (JSON), preprocessing (JSON), meta (JSON)
A crash while writing leaves the previous checkpoint untouched: the new one appears only through
os.replace, which is atomic on one file system.
"""
import json
import os
from dataclasses import dataclass

import h5py
import h5py as _h5
import numpy as np

from kernels import to_numpy
from rawcnn import __version__
from rawcnn.data.settings_check import check_stored_settings
from rawcnn.engine.models import build
from rawcnn.files.fileio import atomic_path
from rawcnn.files.validate import (
    InputError,
    attr_json,
    attr_number,
    attr_text,
    check_bytes,
    check_finite_params,
    check_storage,
    read_dataset,
)

FORMAT = "rawcnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable rawcnn checkpoint."""


def _json(v):
    return json.dumps(v if v is not None else None)


def atomic_h5(path, write):
    """Call write(h5file) on a temporary file beside `path`, then rename it onto `path`.

    rawcnn.files.fileio.atomic_path: the temporary is named with this process's pid and a random token,
    the overwrite policy is checked, and the file and the rename are made durable (fsync).
    """
    with atomic_path(path, fsync=True) as tmp:
        with h5py.File(tmp, "w") as f:
            write(f)


def dropout_rng_states(net):
    return {l.name: l.rng.bit_generator.state for l in net.layers if hasattr(l, "rng")}


def set_dropout_rng_states(net, states):
    for l in net.layers:
        if hasattr(l, "rng") and l.name in states:
            l.rng.bit_generator.state = states[l.name]


@dataclass(frozen=True)
class TrainingState:
    """Where a training run stands, saved beside the weights so that a resume continues it: the epoch
    done, the learning rate, the optimizer's momentum {layer: {key: array}}, the generators' states
    (JSON), the per-epoch history (a list of dicts), and with weight averaging the trained weights
    {layer: {key: array}} (the net's params then hold their average)."""
    epoch: int = 0
    lr: object = None
    momentum: object = None
    rng_state: object = None
    history: object = None
    weights: object = None


def save_checkpoint(path, net, *, state=None, preprocessing=None, meta=None):
    """Write `net`, and `state` (a TrainingState; None: epoch 0 and nothing else) to `path`."""
    st = state or TrainingState()
    epoch, lr, momentum, rng_state, history = st.epoch, st.lr, st.momentum, st.rng_state, st.history

    def write(f):
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["rawcnn_version"] = __version__
        f.attrs["spec"] = json.dumps(net.spec)
        f.attrs["epoch"] = int(epoch)
        f.attrs["lr"] = float(lr) if lr is not None else float("nan")
        f.attrs["rng_state"] = _json(rng_state)
        f.attrs["dropout_rng"] = _json(dropout_rng_states(net))
        f.attrs["history"] = _json(history)
        f.attrs["preprocessing"] = _json(preprocessing)
        f.attrs["meta"] = _json(meta)
        g = f.create_group("params")
        for name, d in net.state_dict().items():
            for k, v in d.items():
                g.create_dataset(f"{name}/{k}", data=v)
        for group, arrays in (("momentum", momentum), ("weights", st.weights)):
            if arrays:
                g = f.create_group(group)
                for name, d in arrays.items():
                    for k, v in d.items():
                        g.create_dataset(f"{name}/{k}", data=to_numpy(v))
    atomic_h5(path, write)


def read_checkpoint(path):
    """Read a checkpoint into plain data: dict with spec, params, momentum, epoch, lr, ... .

    Every attribute and dataset is checked for its kind and declared size before it is read
    (rawcnn.files.validate); a damaged or hostile file raises CheckpointError naming what is wrong. Data
    kept outside the file (external storage, an external or soft link, a virtual dataset) is refused
    without opening the other file (validate.check_storage).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # OSError, and others on damaged superblocks
        raise CheckpointError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0] if str(e) else e!r}); "
                              f"the file is truncated, damaged or not a checkpoint") from None
    try:
        with f:
            return _read_checkpoint(f, path)
    except InputError as e:
        raise CheckpointError(str(e)) from None
    except (KeyError, ValueError, TypeError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _read_group_arrays(f, key, path):
    """{layer: {key: array}} of group `key`, every member checked before it is read."""
    g = f.get(key)
    if not isinstance(g, _h5.Group):
        raise InputError(f"{path}: {key!r} should be a group of layers, got "
                         f"{'nothing' if g is None else type(g).__name__.lower()}")
    out, total = {}, 0
    for n, d in g.items():
        if not isinstance(d, _h5.Group):
            raise InputError(f"{path}: /{key}/{n} should be a group (one per layer), got a {type(d).__name__.lower()}")
        out[n] = {}
        for k, ds in d.items():
            where = f"/{key}/{n}/{k}"
            if not isinstance(ds, _h5.Dataset):
                raise InputError(f"{path}: {where} should be a dataset, got a {type(ds).__name__.lower()}")
            if ds.dtype.kind != "f":
                raise InputError(f"{path}: {where} holds {ds.dtype} values, not floating-point weights")
            total += int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize if ds.shape else 0
            check_bytes(total, path, f"the arrays of /{key} up to {where}")
            out[n][k] = np.asarray(read_dataset(ds, path, where))
    return out


def _read_checkpoint(f, path):
    fmt = f.attrs.get("format") if "format" in f.attrs else None
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    if not isinstance(fmt, str) or fmt != FORMAT:
        raise CheckpointError(f"{path}: not a rawcnn checkpoint (attribute 'format' is "
                              f"{str(fmt)[:60]!r}); to bring in Keras or AlexNet weights use "
                              f"`rawcnn import-weights`")
    check_storage(f, path)  # no link is followed below; each dataset's storage is checked before it is read
    attr_text(f, "spec", path, required=True)
    out = {"spec": attr_json(f, "spec", path, kind=dict, required=True),
           "epoch": attr_number(f, "epoch", path, integer=True),
           "lr": attr_number(f, "lr", path)}
    if out["epoch"] < 0:
        raise InputError(f"{path}: attribute 'epoch' is negative ({out['epoch']})")
    if out["spec"] is None:
        raise InputError(f"{path}: attribute 'spec' is null; expected the model's JSON spec")
    kinds = {"rng_state": dict, "dropout_rng": dict, "history": list, "preprocessing": dict, "meta": dict}
    for k, kind in kinds.items():
        out[k] = attr_json(f, k, path, kind=kind)
    settings = (out["meta"] or {}).get("data_settings")
    if settings is not None:
        check_stored_settings(settings, f"{path}: attribute 'meta', data_settings")
    for i, row in enumerate(out["history"] or []):
        if not isinstance(row, dict):
            raise InputError(f"{path}: attribute 'history' entry {i} should be an object, got {type(row).__name__}")
        for key in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            v = row.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) \
                    or (key == "epoch" and not (np.isfinite(v) and v == int(v))):
                raise InputError(f"{path}: attribute 'history' entry {i}: {key!r} should be a number, got "
                                 f"{json.dumps(v)[:40]}")
    out["params"] = _read_group_arrays(f, "params", path)
    out["momentum"] = _read_group_arrays(f, "momentum", path) if "momentum" in f else None
    out["weights"] = _read_group_arrays(f, "weights", path) if "weights" in f else None
    return out


def load_checkpoint(path, backend="cpu"):
    """Rebuild the Net a checkpoint holds, on `backend`. Returns (net, checkpoint dict)."""
    ck = read_checkpoint(path)
    try:
        check_finite_params(ck["params"], path)
    except InputError as e:
        raise CheckpointError(str(e)) from None
    try:
        net = build(ck["spec"])
        dtypes = [v.dtype for d in ck["params"].values() for v in d.values()]
        dtype = dtypes[0] if dtypes and dtypes[0] in (np.float32, np.float64) else np.float32
        net.astype(dtype)
        net.load_state_dict(ck["params"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: weights do not fit the model it describes: {e}") from None
    if ck["dropout_rng"]:
        try:
            set_dropout_rng_states(net, ck["dropout_rng"])
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: attribute 'dropout_rng' is not a generator state ({e})") from None
    net.to(backend)
    return net, ck
