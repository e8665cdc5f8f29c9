"""Linear (fully connected): y = x @ w.T + b.

Shapes: x (N, D), w (K, D), b (K,), y (N, K).
Backward: dx = dy @ w, dw = dy.T @ x, db = sum_n dy. Kernels: kernels/<tier>/linear.py.
"""
from rawcnn.engine.layers.base import Layer, WeightInit


class Linear(Layer):
    kind = "Linear"

    def __init__(self, in_features, out_features, *, name="fc", init=None):
        super().__init__(name)
        self.in_features, self.out_features = int(in_features), int(out_features)
        shape = (self.out_features, self.in_features)
        self.params = (init or WeightInit()).params(shape, self.out_features)  # w (K, D), b (K,)
        self.x = None

    def __repr__(self):
        return f"Linear({self.in_features}->{self.out_features})"

    def clear(self):
        self.x = None

    def forward(self, x, train=False):
        self.check_input(x, 2)
        if x.shape[1] != self.in_features:
            raise ValueError(f"layer {self.name!r} ({self!r}) expects {self.in_features} input features, "
                             f"got input of shape {tuple(x.shape)}")
        self.x = x if train else None
        return self.be.linear.linear_forward(x, self.params["w"], self.params["b"],
                                             out=self.buffer("y", (x.shape[0], self.out_features), x.dtype))

    def backward(self, dy):
        x = self.need("x")
        w = self.params["w"]
        need = ("dx",) * self.need_dx + ("dw",) * self.trainable
        dx, dw, db = self.be.linear.linear_backward(dy, x, w, need=need, out=self.backward_outs(x, w, dy))
        if self.trainable:
            self.grads = {"w": dw, "b": db}
        return dx

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise ValueError(f"layer {self.name!r} ({self!r}) cannot take input of shape {tuple(in_shape)}")
        return (self.out_features,)

    def flops(self, in_shape):
        return 2 * self.in_features * self.out_features

    def config(self):
        return {"type": self.kind, "name": self.name, "out_features": self.out_features}
