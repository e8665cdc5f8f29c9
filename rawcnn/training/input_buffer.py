"""The trainer's input conversion written into one kept buffer while the net reuses buffers.

rawcnn.training.train.make_to_input turns a batch of stored images into the net's input: a cast for float
data, or the preprocessing contract (Preprocessing.apply) for uint8 (B, C, S, S) batches, whose
NumPy expression allocates four or five arrays of the input's size per batch. While the net
reuses its buffers (Net.reusing_buffers(), on inside train()), the functions below compute the
same values into one (B, C, IH, IW) buffer kept across batches; outside, or for a case not
handled here (images that need a resize or crop, other layouts), they return None and the caller
takes its ordinary path. The values are bit-identical to Preprocessing.apply's: the same float32
operations, element by element, in the same order, only without the temporaries and in NCHW.
"""
import numpy as np


def _buffer(store, shape, dtype):
    """A C-contiguous `shape` view of the flat array kept in store['x'], grown only when too small."""
    size, dtype = int(np.prod(shape)), np.dtype(dtype)
    buf = store.get("x")
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = store["x"] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def cast_into(net, store, x, dtype):
    """x (B, ...) cast to `dtype` in the kept buffer; None when reuse is off or x needs no cast."""
    x = np.asarray(x)
    if not getattr(net, "_reuse", False) or x.dtype == dtype:
        return None  # a view of x is already free
    out = _buffer(store, x.shape, dtype)
    np.copyto(out, x, casting="unsafe")
    return out


def contract_into(net, store, pp, x, one, dtype):
    """Preprocessing `pp` of uint8 x (B, 1|3, H, W) into the kept (B, 1|3, IH, IW) buffer, channel 0
    only when `one` (the net takes one channel); None when reuse is off or the case is not handled."""
    x = np.asarray(x)
    if (not getattr(net, "_reuse", False) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3)
            or x.shape[-1] in (1, 3) or np.dtype(dtype) != np.float32
            or pp.resize not in ("direct", "none") or tuple(pp.input_size) != tuple(x.shape[2:])):
        return None
    B, C, H, W = x.shape
    scale, mean = np.float32(pp.scale), np.asarray(pp.mean, dtype=np.float32)  # (3,)
    std = None if pp.std is None else np.asarray(pp.std, dtype=np.float32)  # (3,)
    # output channel c holds input channel src[c] (BGR reverses RGB; a grey image is R = G = B)
    src = [0, 0, 0] if C == 1 else ([2, 1, 0] if pp.channel_order == "BGR" else [0, 1, 2])
    channels = 1 if one else 3
    out = _buffer(store, (B, channels, H, W), np.float32)
    for c in range(channels):
        o = out[:, c]  # (B, H, W) view
        np.copyto(o, x[:, src[c]], casting="unsafe")  # uint8 -> float32, exact
        np.multiply(o, scale, out=o)
        np.subtract(o, mean[c], out=o)
        if std is not None:
            np.divide(o, std[c], out=o)
    return out
