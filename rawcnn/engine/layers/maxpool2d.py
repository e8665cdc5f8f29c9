"""MaxPool2d: the largest value of each window; padding never wins (-inf).

Shapes: x (N, C, H, W), y and argmax (N, C, OH, OW); argmax holds the flat index h*W + w of each
window's winner inside its input plane, which is all backward needs: dx[argmax] += dy.
OH = floor((H + 2p - KH) / s) + 1 (ceil with ceil_mode, as PyTorch). Kernels: kernels/<tier>/maxpool2d.py.
"""
import math

from rawcnn.engine.layers.base import Layer, pair


def pool_out_size(size, k, s, p, ceil_mode):
    """Output length of one pooled axis (PyTorch's rule)."""
    num = size + 2 * p - k
    out = (math.ceil(num / s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


class MaxPool2d(Layer):
    kind = "MaxPool2d"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, *, name="pool"):
        super().__init__(name)
        self.kernel_size = pair(kernel_size, f"{name}: kernel_size")
        self.stride = pair(stride if stride is not None else kernel_size, f"{name}: stride")
        self.padding = pair(padding, f"{name}: padding")
        self.ceil_mode = bool(ceil_mode)
        self.argmax = self.x_shape = self.y = None

    def __repr__(self):
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        c = ", ceil" if self.ceil_mode else ""
        return f"MaxPool2d(k={k}, s={s}, p={p}{c})"

    def clear(self):
        self.argmax = self.x_shape = self.y = None

    def forward(self, x, train=False):
        self.check_input(x, 4)
        y_shape = (x.shape[0],) + self.output_shape(x.shape[1:])  # (N, C, OH, OW)
        hp = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
                  out_y=self.buffer("y", y_shape, x.dtype))
        if not train:  # no backward follows: y alone, by the kernel that keeps no argmax (faster on the cpu)
            return self.be.maxpool2d.maxpool2d_forward(x, with_argmax=False, **hp)[0]
        y, argmax = self.be.maxpool2d.maxpool2d_forward(x, out_argmax=self.buffer("argmax", y_shape, "int64"), **hp)
        # y too (a reference, no copy): a ReLU below fused into the backward reads the window maxima
        self.argmax, self.x_shape, self.y = argmax, tuple(x.shape), y
        return y

    def backward(self, dy, *, relu=False):
        """dx (N, C, H, W); relu=True also runs the backward of the ReLU right below, whose output x is (Net.backward
        asks for it, and that ReLU then passes dx on untouched)."""
        argmax = self.need("argmax")
        if not self.need_dx:
            return None
        return self.be.maxpool2d.maxpool2d_backward(dy, argmax, x_shape=self.x_shape,
                                                    out=self.buffer("dx", self.x_shape, dy.dtype, avoid=dy),
                                                    relu=relu, y=self.y if relu else None)

    def output_shape(self, in_shape):
        C, H, W = in_shape
        OH = pool_out_size(H, self.kernel_size[0], self.stride[0], self.padding[0], self.ceil_mode)
        OW = pool_out_size(W, self.kernel_size[1], self.stride[1], self.padding[1], self.ceil_mode)
        if OH < 1 or OW < 1:
            raise ValueError(f"layer {self.name!r} ({self!r}) cannot take input of shape {tuple(in_shape)}")
        return (C, OH, OW)

    def flops(self, in_shape):
        C, OH, OW = self.output_shape(in_shape)
        return C * OH * OW * self.kernel_size[0] * self.kernel_size[1]

    def config(self):
        return {"type": self.kind, "name": self.name, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding), "ceil_mode": self.ceil_mode}
