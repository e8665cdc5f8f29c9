"""Dropout(p): inverted dropout. At train time y = x * mask, mask = 0 with probability p and
1/(1-p) otherwise, so the expected activation is unchanged and test time is the identity.
Backward: dx = dy * mask. The mask comes from the layer's own numpy Generator (seeded by the
model builder), so the same seed gives the same masks. Kernels: kernels/<tier>/dropout.py.
"""
import numpy as np

from .base import Layer


class Dropout(Layer):
    kind = "Dropout"

    def __init__(self, p=0.5, *, name="drop", rng=None):
        super().__init__(name)
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"layer {name!r}: dropout p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.mask = None

    def __repr__(self):
        return f"Dropout(p={self.p:g})"

    def clear(self):
        self.mask = None

    def forward(self, x, train=False):
        self.check_input(x, x.ndim)
        if not train or self.p == 0.0:
            self.mask = None if not train else self.be.xp.ones_like(x)
            return x
        self.mask = self.be.dropout.dropout_mask(x.shape, p=self.p, rng=self.rng, dtype=x.dtype)
        return self.be.dropout.dropout_forward(x, self.mask)

    def backward(self, dy):
        mask = self.need("mask")
        return self.be.dropout.dropout_backward(dy, mask) if self.need_dx else None

    def config(self):
        return {"type": self.kind, "name": self.name, "p": self.p}
