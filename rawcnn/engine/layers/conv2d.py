"""Conv2d: 2-D cross-correlation with stride, zero padding and groups (im2col + GEMM).

Shapes: x (N, C, H, W), w (F, C/G, KH, KW), b (F,), y (N, F, OH, OW),
OH = (H + 2*ph - KH) // sh + 1, OW likewise.

    y[n, f, i, j] = b[f] + sum_{c in group(f), kh, kw} w[f, c, kh, kw] * x_pad[n, c, i*sh + kh, j*sw + kw]

Kernels: kernels/<tier>/conv2d.py. Backward keeps only x and rebuilds the columns.
Stride-1 layers may instead run Winograd F(4x4, 3x3) (kernels/<tier>/winograd.py; 5x5 kernels by
F(4x4, 5x5), other sizes cut into 3x3 pieces), and so may strided layers whose kernel spans three blocks of the
stride (AlexNet's conv1, by space-to-depth): the same function. `layer.algo` is the one forward and backward run;
rawcnn/engine/conv_algo.py sets it when the layer is made (`static_choice`) and when a net is planned
(`plan`, per input shape: cache, table, or a timing in 'tune' mode), never inside forward.
"""
from kernels.shapes import COLUMN_BUDGET_BYTES, ConvGeometry
from rawcnn.engine import conv_algo
from rawcnn.engine.layers.base import Layer, WeightInit, pair

DEFAULT_BUDGET = COLUMN_BUDGET_BYTES  # bytes of im2col columns per batch slice: the peak-memory
# measurement that set it is in bench/RESULTS.md, "Winograd on every core"


class Conv2d(Layer):
    kind = "Conv2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, *,
                 name="conv", init=None):
        super().__init__(name)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = pair(kernel_size, f"{name}: kernel_size")
        self.stride = pair(stride, f"{name}: stride")
        self.padding = pair(padding, f"{name}: padding")
        self.budget_bytes = DEFAULT_BUDGET  # an attribute: set it to trade memory for speed
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"layer {name!r}: in_channels {in_channels} and out_channels {out_channels} "
                             f"must both be divisible by groups {groups}")
        KH, KW = self.kernel_size
        shape = (self.out_channels, self.in_channels // self.groups, KH, KW)
        self.params = (init or WeightInit()).params(shape, self.out_channels)  # w (F, C/G, KH, KW), b (F,)
        self.x = None
        self.conv_algo = None    # the mode (None: auto; im2col, winograd, auto, tune), set by conv_algo.plan
        self.algo = conv_algo.static_choice(self)  # what forward and backward run (conv_algo.plan refines it)
        self.workspace = {}      # column / transform buffers kept across steps

    def __repr__(self):
        KH, KW = self.kernel_size
        k = f"{KH}" if KH == KW else f"{KH}x{KW}"
        s = self.stride[0] if self.stride[0] == self.stride[1] else self.stride
        p = self.padding[0] if self.padding[0] == self.padding[1] else self.padding
        g = f", g={self.groups}" if self.groups > 1 else ""
        return f"Conv2d({self.in_channels}->{self.out_channels}, k={k}, s={s}, p={p}{g})"

    def clear(self):
        self.x = None

    def forward(self, x, train=False, *, relu=False):
        """y = conv(x, w) + b (N, F, OH, OW); relu=True returns max(y, 0) instead: the ReLU right above this layer
        fused into the kernel's output pass (Net.forward asks for it, and that ReLU then passes y on untouched)."""
        self.check_input(x, 4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"layer {self.name!r} ({self!r}) expects {self.in_channels} input channels, "
                             f"got input of shape {tuple(x.shape)}")
        out = self.buffer("y", (x.shape[0],) + self.output_shape(x.shape[1:]), x.dtype)  # (N, F, OH, OW) or None
        self.x = x if train else None
        geometry = ConvGeometry(self.stride, self.padding, self.groups)
        if self.algo == "winograd":
            return self.be.winograd.conv2d_forward(x, self.params["w"], self.params["b"], geometry=geometry,
                                                   workspace=self.workspace, out=out, relu=relu)
        return self.be.conv2d.conv2d_forward(x, self.params["w"], self.params["b"], geometry=geometry,
                                             budget_bytes=self.budget_bytes, workspace=self.workspace, out=out,
                                             relu=relu)

    def backward(self, dy):
        x = self.need("x")
        op = self.be.winograd if self.algo == "winograd" else self.be.conv2d
        w = self.params["w"]
        need = ("dx",) * self.need_dx + ("dw",) * self.trainable
        dx, dw, db = op.conv2d_backward(dy, x, w, geometry=ConvGeometry(self.stride, self.padding, self.groups),
                                        budget_bytes=self.budget_bytes, need=need, workspace=self.workspace,
                                        out=self.backward_outs(x, w, dy))  # buffers or None
        if self.trainable:
            self.grads = {"w": dw, "b": db}
        return dx

    def to(self, backend):
        """Layer.to, and the algorithm this configuration gives on the new backend (a Net plans it again)."""
        super().to(backend)
        self.algo = conv_algo.static_choice(self)
        return self

    def set_algo(self, mode):
        """Set this layer's mode (one of conv_algo.ALGOS) and the algorithm it gives without an input shape."""
        self.conv_algo = conv_algo.check_mode(mode)
        self.algo = conv_algo.static_choice(self)
        return self

    def output_shape(self, in_shape):
        C, H, W = in_shape
        (KH, KW), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        OH, OW = (H + 2 * ph - KH) // sh + 1, (W + 2 * pw - KW) // sw + 1
        if C != self.in_channels or OH < 1 or OW < 1:
            raise ValueError(f"layer {self.name!r} ({self!r}) cannot take input of shape {tuple(in_shape)}")
        return (self.out_channels, OH, OW)

    def flops(self, in_shape):
        F, OH, OW = self.output_shape(in_shape)
        KH, KW = self.kernel_size
        return 2 * F * OH * OW * (self.in_channels // self.groups) * KH * KW

    def config(self):
        return {"type": self.kind, "name": self.name, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "groups": self.groups}
