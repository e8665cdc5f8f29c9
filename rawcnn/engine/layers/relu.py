"""ReLU: y = max(x, 0); backward dx = dy * (y > 0) (the derivative at 0 is taken as 0).

Shapes: x, y, dy, dx all the same, any rank. Kernels: kernels/<tier>/relu.py.
"""
from rawcnn.engine.layers.base import Layer


class ReLU(Layer):
    kind = "ReLU"

    def __init__(self, *, name="relu"):
        super().__init__(name)
        self.y = None

    def __repr__(self):
        return "ReLU()"

    def clear(self):
        self.y = None

    def forward(self, x, train=False, *, rectified=False):
        """y = max(x, 0); rectified=True: x is already that (the Conv2d below fused this ReLU, Net.forward),
        so y is x itself and no pass is made."""
        self.check_input(x, x.ndim)
        y = x if rectified else self.be.relu.relu_forward(x, out=self.buffer("y", x.shape, x.dtype))
        self.y = y if train else None
        return y

    def backward(self, dy, *, rectified=False):
        """dx = dy * (y > 0); rectified=True: dy is that already (the layer above fused this backward, Net.backward),
        so dx is dy itself and no pass is made."""
        if not self.need_dx:
            return None
        y = self.need("y")
        return dy if rectified else self.be.relu.relu_backward(dy, y, out=self.buffer("dx", dy.shape, dy.dtype,
                                                                                       avoid=dy))

    def flops(self, in_shape):
        n = 1
        for s in in_shape:
            n *= s
        return n
