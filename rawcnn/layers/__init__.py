"""rawcnn layers: each with a hand-written forward and backward (see base.py for the contract)."""
from .base import Layer
from .conv2d import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .global_avg_pool import GlobalAvgPool
from .linear import Linear
from .lrn import LRN
from .maxpool2d import MaxPool2d
from .relu import ReLU
from .softmax import Softmax, SoftmaxCrossEntropy

LAYER_TYPES = {c.kind: c for c in (Conv2d, ReLU, LRN, MaxPool2d, GlobalAvgPool, Flatten, Linear, Dropout,
                                    Softmax)}

__all__ = ["Layer", "Conv2d", "ReLU", "LRN", "MaxPool2d", "GlobalAvgPool", "Flatten", "Linear", "Dropout", "Softmax",
           "SoftmaxCrossEntropy", "LAYER_TYPES"]
