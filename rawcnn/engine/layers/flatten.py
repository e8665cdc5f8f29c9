"""Flatten: (N, C, H, W) -> (N, C*H*W) in C, H, W order (NCHW memory order; a view, no copy).
Backward reshapes dy back. Keras files flatten in H, W, C order: weights_import/ permutes fc rows.
"""
from rawcnn.engine.layers.base import Layer


class Flatten(Layer):
    kind = "Flatten"

    def __init__(self, *, name="flatten"):
        super().__init__(name)
        self.x_shape = None

    def __repr__(self):
        return "Flatten()"

    def clear(self):
        self.x_shape = None

    def forward(self, x, train=False):
        self.check_input(x, x.ndim)
        if train:
            self.x_shape = tuple(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        x_shape = self.need("x_shape")
        return dy.reshape(x_shape) if self.need_dx else None

    def output_shape(self, in_shape):
        n = 1
        for s in in_shape:
            n *= s
        return (n,)
