"""Dropout(p): inverted dropout. At train time y = x * mask, mask = 0 with probability p and
1/(1-p) otherwise, so the expected activation is unchanged and test time is the identity.
Backward: dx = dy * mask. The mask comes from the layer's own numpy Generator (seeded by the
model builder), so the same seed gives the same masks. Kernels: kernels/<tier>/dropout.py.
With `rows` set (data-parallel training, rawcnn.training.distributed) the whole batch's mask is drawn and
the rows this process holds are kept, so the masks do not depend on the number of processes.
"""
import numpy as np

from rawcnn.engine.layers.base import Layer


class Dropout(Layer):
    kind = "Dropout"

    def __init__(self, p=0.5, *, name="drop", rng=None):
        super().__init__(name)
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"layer {name!r}: dropout p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.mask = None
        self.rows = None  # (lo, hi, n): x holds rows lo:hi of a batch of n (rawcnn.training.distributed)

    def __repr__(self):
        return f"Dropout(p={self.p:g})"

    def clear(self):
        self.mask = None

    def forward(self, x, train=False):
        self.check_input(x, x.ndim)
        if not train or self.p == 0.0:
            ones = self.buffer("mask", x.shape, x.dtype) if train else None
            if ones is not None:
                ones.fill(1)
            self.mask = None if not train else (self.be.xp.ones_like(x) if ones is None else ones)
            return x
        out = self.buffer("mask", x.shape, x.dtype)
        work = None if self.be.tier == "cuda" else "float64"  # the cpu tiers' uniform draws
        if self.rows is None:
            self.mask = self.be.dropout.dropout_mask(x.shape, p=self.p, rng=self.rng, dtype=x.dtype, out=out,
                                                     work=work and self.buffer("uniform", x.shape, work))
        else:  # the whole batch's mask, as one process draws it, and this rank's rows of it
            lo, hi, n = self.rows
            shape = (n,) + x.shape[1:]
            mask = self.be.dropout.dropout_mask(shape, p=self.p, rng=self.rng, dtype=x.dtype,
                                                out=self.buffer("mask_batch", shape, x.dtype),
                                                work=work and self.buffer("uniform", shape, work))
            if out is None:
                self.mask = self.be.xp.ascontiguousarray(mask[lo:hi])
            else:
                out[...] = mask[lo:hi]
                self.mask = out
        return self.be.dropout.dropout_forward(x, self.mask, out=self.buffer("y", x.shape, x.dtype))

    def backward(self, dy):
        mask = self.need("mask")
        if not self.need_dx:
            return None
        return self.be.dropout.dropout_backward(dy, mask, out=self.buffer("dx", dy.shape, dy.dtype, avoid=dy))

    def config(self):
        return {"type": self.kind, "name": self.name, "p": self.p}
