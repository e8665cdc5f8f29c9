"""Checkpoints: one HDF5 file (never pickle), written to a temporary file and renamed.

Layout:
    /params/<layer>/<key>      float arrays (w, b) as the engine holds them (OIHW, (out, in))
    /momentum/<layer>/<key>    SGD velocity, when an optimizer state is saved
    attrs: format = "rawcnn-checkpoint", format_version, rawcnn_version, spec (JSON), epoch, lr,
           rng_state (JSON, the training generator), dropout_rng (JSON, one state per Dropout),
           history (JSON), preprocessing (JSON), meta (JSON)
A crash while writing leaves the previous checkpoint untouched: the new one appears only through
os.replace, which is atomic on one file system.
"""
import json
import os
import tempfile

import h5py
import numpy as np

from . import __version__
from kernels import to_numpy

FORMAT = "rawcnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable rawcnn checkpoint."""


def _json(v):
    return json.dumps(v if v is not None else None)


def atomic_h5(path, write):
    """Call write(h5file) on a temporary file beside `path`, then rename it onto `path`."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    prefix = ".tmp-" + os.path.basename(path) + "-"
    for stale in os.listdir(d):  # left by a writer that was killed (SIGKILL, power loss) mid-write
        if stale.startswith(prefix):
            try:
                os.remove(os.path.join(d, stale))
            except OSError:
                pass
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=d)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            write(f)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
        dfd = os.open(d, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def dropout_rng_states(net):
    return {l.name: l.rng.bit_generator.state for l in net.layers if hasattr(l, "rng")}


def set_dropout_rng_states(net, states):
    for l in net.layers:
        if hasattr(l, "rng") and l.name in states:
            l.rng.bit_generator.state = states[l.name]


def save_checkpoint(path, net, *, momentum=None, epoch=0, lr=None, rng_state=None, history=None,
                    preprocessing=None, meta=None):
    """Write `net` (and optionally the optimizer's momentum {layer: {key: array}}) to `path`."""
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
        if momentum:
            g = f.create_group("momentum")
            for name, d in momentum.items():
                for k, v in d.items():
                    g.create_dataset(f"{name}/{k}", data=to_numpy(v))
    atomic_h5(path, write)


def read_checkpoint(path):
    """Read a checkpoint into plain data: dict with spec, params, momentum, epoch, lr, ... ."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a rawcnn checkpoint (attribute 'format' is "
                                  f"{f.attrs.get('format')!r}); to bring in Keras or AlexNet weights use "
                                  f"`rawcnn import-weights`")
        try:
            out = {"spec": json.loads(f.attrs["spec"]), "epoch": int(f.attrs["epoch"]),
                   "lr": float(f.attrs["lr"])}
            for k in ("rng_state", "dropout_rng", "history", "preprocessing", "meta"):
                out[k] = json.loads(f.attrs.get(k, "null"))
            out["params"] = {n: {k: np.array(d[k]) for k in d} for n, d in f["params"].items()}
            out["momentum"] = ({n: {k: np.array(d[k]) for k in d} for n, d in f["momentum"].items()}
                               if "momentum" in f else None)
        except (KeyError, ValueError, OSError) as e:
            raise CheckpointError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None
    return out


def load_checkpoint(path, backend="cpu"):
    """Rebuild the Net a checkpoint holds, on `backend`. Returns (net, checkpoint dict)."""
    from .models import build
    ck = read_checkpoint(path)
    try:
        net = build(ck["spec"])
        dtype = next(iter(next(iter(ck["params"].values())).values())).dtype if ck["params"] else np.float32
        net.astype(dtype)
        net.load_state_dict(ck["params"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: weights do not fit the model it describes: {e}") from None
    if ck["dropout_rng"]:
        set_dropout_rng_states(net, ck["dropout_rng"])
    net.to(backend)
    return net, ck
