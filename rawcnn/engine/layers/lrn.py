"""LRN: local response normalisation across channels (Caffe / PyTorch convention).

Shapes: x, y, scale (N, C, H, W).
    scale[n, c] = k + alpha/size * sum_{c' in [c - size//2, c + (size-1)//2], 0 <= c' < C} x[n, c']^2
    y = x * scale^-beta
Keras/TF (alpha not divided by size) and the Krizhevsky-paper form are converted at import
(weights_import/), nowhere else. Kernels (fused, one pass each way): kernels/<tier>/lrn.py.
"""
from rawcnn.engine.layers.base import Layer


class LRN(Layer):
    kind = "LRN"

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, *, name="norm"):
        super().__init__(name)
        if int(size) < 1:
            raise ValueError(f"layer {name!r}: LRN size must be >= 1, got {size}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)
        self.x = self.y = self.scale = None

    def __repr__(self):
        return f"LRN(size={self.size}, alpha={self.alpha:g}, beta={self.beta:g}, k={self.k:g})"

    def clear(self):
        self.x = self.y = self.scale = None

    def forward(self, x, train=False):
        self.check_input(x, 4)
        y, scale = self.be.lrn.lrn_forward(x, size=self.size, alpha=self.alpha, beta=self.beta, k=self.k,
                                           out_y=self.buffer("y", x.shape, x.dtype),
                                           out_scale=self.buffer("scale", x.shape, x.dtype))
        if train:
            self.x, self.y, self.scale = x, y, scale
        return y

    def backward(self, dy, *, relu=False):
        """dx (N, C, H, W); relu=True also runs the backward of the ReLU right below, whose output x is (Net.backward
        asks for it, and that ReLU then passes dx on untouched)."""
        x, y, scale = self.need("x"), self.need("y"), self.need("scale")
        if not self.need_dx:
            return None
        return self.be.lrn.lrn_backward(dy, x, y, scale, size=self.size, alpha=self.alpha, beta=self.beta,
                                        out=self.buffer("dx", x.shape, x.dtype, avoid=dy), relu=relu)

    def flops(self, in_shape):
        C, H, W = in_shape
        return C * H * W * (2 * self.size + 4)

    def config(self):
        return {"type": self.kind, "name": self.name, "size": self.size, "alpha": self.alpha,
                "beta": self.beta, "k": self.k}
