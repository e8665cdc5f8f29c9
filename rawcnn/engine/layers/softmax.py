"""Softmax (probabilities) and SoftmaxCrossEntropy (the fused training loss).

Shapes: logits x (N, K), probabilities y (N, K), labels (N,) int64.
    y[n, k] = exp(x[n, k] - max_k x[n]) / sum_k' exp(x[n, k'] - max_k x[n])
    Softmax backward:  dx = y * (dy - sum_k dy * y)
    loss = -1/N sum_n log y[n, label_n];  dloss/dx = (y - onehot(label)) / N
Kernels: kernels/<tier>/softmax.py, kernels/<tier>/softmax_cross_entropy.py.
"""
from rawcnn.engine.layers.base import Layer


class Softmax(Layer):
    kind = "Softmax"

    def __init__(self, *, name="prob"):
        super().__init__(name)
        self.y = None

    def __repr__(self):
        return "Softmax()"

    def clear(self):
        self.y = None

    def forward(self, x, train=False):
        self.check_input(x, 2)
        y = self.be.softmax.softmax_forward(x)
        self.y = y if train else None
        return y

    def backward(self, dy):
        return self.be.softmax.softmax_backward(dy, self.need("y")) if self.need_dx else None


class SoftmaxCrossEntropy(Layer):
    """The loss: forward(logits, labels) -> mean loss (float); backward(dloss=1.0) -> dlogits."""

    kind = "SoftmaxCrossEntropy"

    def __init__(self, *, name="loss"):
        super().__init__(name)
        self.probs = self.labels = None

    def __repr__(self):
        return "SoftmaxCrossEntropy()"

    def clear(self):
        self.probs = self.labels = None

    def forward(self, logits, labels, train=True):
        self.check_input(logits, 2)
        labels = self.be.asarray(labels, dtype="int64")
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"layer {self.name!r}: labels of shape {tuple(labels.shape)} do not match "
                             f"logits of shape {tuple(logits.shape)}")
        loss, probs = self.be.softmax_cross_entropy.softmax_cross_entropy_forward(logits, labels)
        self.probs, self.labels = probs, labels
        return loss

    def backward(self, dloss=1.0):
        return self.be.softmax_cross_entropy.softmax_cross_entropy_backward(
            self.need("probs"), self.need("labels"), dloss=dloss)
