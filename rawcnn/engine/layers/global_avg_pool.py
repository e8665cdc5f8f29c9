"""GlobalAvgPool: each channel's map replaced by its mean (Lin et al., "Network In Network", 2014).

Shapes: x (N, C, H, W), y (N, C); dy (N, C), dx (N, C, H, W).
    y[n, c] = mean over h, w of x[n, c, h, w];   dx[n, c, h, w] = dy[n, c] / (H*W)
No weights; backward needs only x's shape, kept as `x_shape`. It takes the place of Flatten before
a network's first Linear, which then sees C features whatever the input size (the custom-gap model,
rawcnn/engine/models.py). Kernels: kernels/<tier>/global_avg_pool.py.
"""
from rawcnn.engine.layers.base import Layer


class GlobalAvgPool(Layer):
    kind = "GlobalAvgPool"

    def __init__(self, *, name="gap"):
        super().__init__(name)
        self.x_shape = None

    def __repr__(self):
        return "GlobalAvgPool()"

    def clear(self):
        self.x_shape = None

    def forward(self, x, train=False):
        self.check_input(x, 4)
        y = self.be.global_avg_pool.global_avg_pool_forward(x, out=self.buffer("y", x.shape[:2], x.dtype))
        if train:
            self.x_shape = tuple(x.shape)
        return y

    def backward(self, dy):
        x_shape = self.need("x_shape")
        if not self.need_dx:
            return None
        return self.be.global_avg_pool.global_avg_pool_backward(
            dy, x_shape=x_shape, out=self.buffer("dx", x_shape, dy.dtype, avoid=dy))

    def output_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"layer {self.name!r} ({self!r}) needs a (C, H, W) input, got shape {tuple(in_shape)}")
        return (in_shape[0],)

    def flops(self, in_shape):
        C, H, W = in_shape
        return C * H * W  # one addition per input value (the C divisions are not counted)
