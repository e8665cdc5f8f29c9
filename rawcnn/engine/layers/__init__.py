"""rawcnn layers: each with a hand-written forward and backward (see base.py for the contract)."""
from rawcnn.engine.layers.base import Layer, WeightInit
from rawcnn.engine.layers.conv2d import Conv2d
from rawcnn.engine.layers.dropout import Dropout
from rawcnn.engine.layers.flatten import Flatten
from rawcnn.engine.layers.global_avg_pool import GlobalAvgPool
from rawcnn.engine.layers.linear import Linear
from rawcnn.engine.layers.lrn import LRN
from rawcnn.engine.layers.maxpool2d import MaxPool2d
from rawcnn.engine.layers.relu import ReLU
from rawcnn.engine.layers.softmax import Softmax, SoftmaxCrossEntropy

LAYER_TYPES = {c.kind: c for c in (Conv2d, ReLU, LRN, MaxPool2d, GlobalAvgPool, Flatten, Linear, Dropout,
                                    Softmax)}

__all__ = ["Layer", "WeightInit", "Conv2d", "ReLU", "LRN", "MaxPool2d", "GlobalAvgPool", "Flatten", "Linear",
           "Dropout", "Softmax", "SoftmaxCrossEntropy", "LAYER_TYPES"]
