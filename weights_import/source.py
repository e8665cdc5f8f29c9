"""What a reader hands to the converter: the file's layers with weights, in the file's order.

A SourceLayer keeps h5py datasets, not arrays: shapes are checked before anything is read, and a
VGG16 file is read one tensor at a time. Kernel and bias are told apart by order and rank, never by
their names (Keras spelled them `W`, `W_1:0`, `kernel:0`, `kernel`, `vars/0` over the years): the
first weight of rank >= 2 is the kernel, a following rank-1 weight is the bias.
"""
from dataclasses import dataclass, field


@dataclass
class SourceLayer:
    """One layer of the file.

    name     the layer's name in the file ('block1_conv1', 'vgg16/block1_conv1', 'conv_2_1')
    path     where its weights live ('/block1_conv1', '/layers/conv2d_3/vars')
    weights  [(weight name, h5py.Dataset)] in the file's weight order
    """
    name: str
    path: str
    weights: list = field(default_factory=list)

    @property
    def kind(self):
        """'conv' (a rank-4 kernel), 'dense' (rank 2), or 'other' (anything else: BatchNorm, extras)."""
        parts = self._parts()
        if parts is None:
            return "other"
        return {4: "conv", 2: "dense"}.get(len(parts[0][1].shape), "other")

    def _parts(self):
        """(kernel, bias or None) as (name, dataset) pairs, or None when the layer is not kernel[+bias]."""
        if not self.weights or len(self.weights) > 2:
            return None
        kernel, rest = self.weights[0], self.weights[1:]
        if len(kernel[1].shape) < 2:
            return None
        if rest and len(rest[0][1].shape) != 1:
            return None
        return kernel, (rest[0] if rest else None)

    @property
    def kernel(self):
        return self._parts()[0]

    @property
    def bias(self):
        return self._parts()[1]

    def shapes(self):
        return [tuple(ds.shape) for _, ds in self.weights]

    def describe(self):
        return f"{self.name} ({', '.join(f'{n} {tuple(d.shape)}' for n, d in self.weights)})"


@dataclass
class Source:
    """A whole file as read: its format, the facts found in it, and its layers.

    format        a key of FORMATS
    facts         [str]: what was found, in words (attributes, groups), for the report
    backend       the `backend` attribute (None when absent: Keras 1, Keras 3 .weights.h5)
    keras_version the `keras_version` attribute (None when absent: Keras 1)
    config        the parsed model_config / config.json, or None
    layers        [SourceLayer] with weights, in the file's layer order
    """
    path: str
    format: str
    facts: list = field(default_factory=list)
    backend: str = None
    keras_version: str = None
    config: dict = None
    layers: list = field(default_factory=list)
