"""The preprocessing contract that travels with a set of weights.

Shapes: N images, H, W image size, IH, IW network input size (input_size), C = 3 channels.

Pretrained weights only mean something for inputs prepared the way their trainer prepared them:
the channel order the first convolution expects, the pixel scale, the mean (and std) taken off,
and how an image is brought to the input size. A checkpoint stores this record next to the
weights (attribute `preprocessing`, JSON) so that training, evaluation and visualisation all feed
the network the same numbers.

`apply` maps uint8 images to the network's input, in this order:
    1. a grayscale image (a chest radiograph) is replicated to 3 identical channels, R = G = B;
    2. resize (and centre crop) to input_size, per `resize` / `crop` below;
    3. channels are put in `channel_order` (images arrive RGB; 'BGR' reverses them);
    4. y = (x * scale - mean) / std          mean and std are in that channel order, after scaling;
    5. NHWC -> NCHW float32.
Grayscale replication comes first so a radiograph never meets a per-channel mean on one channel only.

Presets (the numbers each weight family was trained with):
    vgg-keras          BGR, 0-255, mean (B, G, R) = (103.939, 116.779, 123.68), 224x224, direct resize
                       (Keras applications' preprocess_input(mode='caffe'))
    alexnet-bvlc       BGR, 0-255, mean (B, G, R) = (104.0, 116.7, 122.7), resize 256x256, centre crop 227
                       (BVLC/caffe models/bvlc_alexnet, per-channel mean of imagenet_mean.binaryproto)
    alexnet-heuritech  RGB, 0-255, mean (R, G, B) = (123.68, 116.779, 103.939), resize 256x256, centre
                       crop 227 (heuritech/convnets-keras preprocess_image_batch)
"""
import json
from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np

CHANNEL_ORDERS = ("RGB", "BGR")
RESIZE_POLICIES = ("direct", "resize-crop", "none")
DECODE_MODES = (None, "gray", "color")


@dataclass(frozen=True)
class Preprocessing:
    """How raw uint8 images become network input.

    channel_order  'RGB' or 'BGR': the order of the first convolution's input channels
    mean           3 floats, in channel_order, on the scaled pixel range
    scale          raw pixel value * scale (1.0 keeps 0-255, 1/255 gives [0, 1])
    std            3 floats in channel_order, or None (no division)
    input_size     (IH, IW) the network's input size
    resize         'direct'      resize straight to input_size
                   'resize-crop' resize to resize_size, then crop input_size from the centre
                   'none'        images must already be input_size
    resize_size    (H, W) for 'resize-crop'
    name           the preset's name, or 'custom'
    decode         how an image file is decoded before all this: 'gray' (radiograph models: one
                   grey plane, replicated) or 'color' (ImageNet models: the file's colours, RGB);
                   None in records written before the field existed (rawcnn.data.contract decides:
                   colour for an imported preset with no data settings, else grey)
    """
    channel_order: str = "RGB"
    mean: tuple = (0.0, 0.0, 0.0)
    scale: float = 1.0
    std: tuple = None
    input_size: tuple = (224, 224)
    resize: str = "direct"
    resize_size: tuple = None
    name: str = "custom"
    notes: tuple = field(default_factory=tuple)
    decode: str = None

    def __post_init__(self):
        if self.decode not in DECODE_MODES:
            raise ValueError(f"preprocessing: decode must be one of {DECODE_MODES}, got {self.decode!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"preprocessing: channel_order must be one of {CHANNEL_ORDERS}, "
                             f"got {self.channel_order!r}")
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        if self.std is not None:
            object.__setattr__(self, "std", _triple(self.std, "std"))
            if min(self.std) <= 0:
                raise ValueError(f"preprocessing: std must be positive, got {self.std}")
        object.__setattr__(self, "input_size", _size(self.input_size, "input_size"))
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"preprocessing: resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.resize == "resize-crop":
            rs = _size(self.resize_size, "resize_size")
            if rs[0] < self.input_size[0] or rs[1] < self.input_size[1]:
                raise ValueError(f"preprocessing: resize_size {rs} is smaller than input_size "
                                 f"{self.input_size}; the crop would not fit")
            object.__setattr__(self, "resize_size", rs)
        if not float(self.scale) > 0:
            raise ValueError(f"preprocessing: scale must be positive, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self):
        d = asdict(self)
        for k in ("mean", "std", "input_size", "resize_size", "notes"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d

    def to_json(self):
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, s):
        """A JSON string or an already-parsed dict (as read_checkpoint returns) -> Preprocessing."""
        d = json.loads(s) if isinstance(s, (str, bytes)) else s
        if not isinstance(d, dict):
            raise ValueError(f"preprocessing: expected an object, got {type(d).__name__}")
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ValueError(f"preprocessing: unknown field(s) {', '.join(sorted(map(str, extra)))}")
        try:
            for k in ("mean", "std", "input_size", "resize_size", "notes"):
                if d.get(k) is not None:
                    d[k] = tuple(d[k]) if isinstance(d[k], (list, tuple)) else d[k]
            pp = cls(**d)
        except (TypeError, OverflowError) as e:
            raise ValueError(f"preprocessing: a field has the wrong kind of value ({e})") from None
        _check_limits(pp)
        return pp

    def with_input_size(self, size):
        return replace(self, input_size=_size(size, "input_size"))

    def describe(self):
        """One line a person can check against the weights' documentation."""
        std = f", / std {self.std}" if self.std is not None else ""
        rng = "0-255" if self.scale == 1.0 else f"x {self.scale:g}"
        if self.resize == "resize-crop":
            how = f"resize to {self.resize_size[0]}x{self.resize_size[1]}, centre crop"
        else:
            how = {"direct": "resize to", "none": "already"}[self.resize]
        return (f"{self.name}: gray -> 3 channels, {how} {self.input_size[0]}x{self.input_size[1]}, "
                f"{self.channel_order}, {rng}, minus mean {tuple(self.mean)}{std}")

    # -- the transform -------------------------------------------------------------------------
    def apply(self, images, value_range=None):
        """Raw images -> network input.

        images: uint8 (H, W), (H, W, 1), (H, W, 3), (N, H, W), (N, H, W, 1), (N, H, W, 3), or
                (N, 1, H, W) / (N, 3, H, W) as rawcnn data sets store them; 3-channel images are RGB.
                Float images are accepted only with value_range given
                (the value that stands for white: 255.0 or 1.0).
        Returns x: float32 (N, 3, IH, IW).
        """
        x = _as_nhwc(images, value_range)  # (N, H, W, 3) float32 on the 0-255 range, RGB
        x = self._resize(x)                # (N, IH, IW, 3)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        x = x * np.float32(self.scale) - np.asarray(self.mean, dtype=np.float32)
        if self.std is not None:
            x = x / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)  # (N, 3, IH, IW)

    def _resize(self, x):
        """x (N, H, W, 3) float32 -> (N, IH, IW, 3) per the resize policy."""
        IH, IW = self.input_size
        H, W = x.shape[1:3]
        if self.resize == "none":
            if (H, W) != (IH, IW):
                raise ValueError(f"preprocessing {self.name!r}: images are {H}x{W} but resize='none' "
                                 f"needs {IH}x{IW}")
            return x
        if self.resize == "direct":
            return _resize_all(x, IH, IW)
        RH, RW = self.resize_size
        x = _resize_all(x, RH, RW)  # (N, RH, RW, 3)
        top, left = (RH - IH) // 2, (RW - IW) // 2
        return x[:, top:top + IH, left:left + IW]


def _resize_all(x, OH, OW):
    """Bilinear resize (area when shrinking) of every image; x (N, H, W, 3) -> (N, OH, OW, 3)."""
    if x.shape[1:3] == (OH, OW):
        return x
    interp = cv2.INTER_AREA if OH < x.shape[1] and OW < x.shape[2] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (OW, OH), interpolation=interp) for im in x])


def _as_nhwc(images, value_range):
    """uint8 or float images of any accepted shape -> (N, H, W, 3) float32 on 0-255, gray replicated."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        x = a.astype(np.float32)
    elif a.dtype.kind == "f":
        if value_range is None:
            raise ValueError(f"preprocessing: float images ({a.dtype}, shape {a.shape}) need value_range "
                             f"(the value of white, 255.0 or 1.0); uint8 images need none")
        x = a.astype(np.float32) * np.float32(255.0 / float(value_range))
    else:
        raise ValueError(f"preprocessing: images must be uint8 (or float with value_range), got {a.dtype}")
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)        # (N, 1|3, H, W) as rawcnn data sets store them -> NHWC
    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] not in (1, 3)):
        x = x[None] if x.ndim == 2 else x  # (N, H, W)
        x = x[..., None]                   # (N, H, W, 1)
    elif x.ndim == 3:
        x = x[None]                        # one (H, W, 1|3) image -> (1, H, W, 1|3)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"preprocessing: images must be (H, W), (H, W, 1|3), (N, H, W), (N, H, W, 1|3) or "
                         f"(N, 1|3, H, W), got shape {a.shape}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)       # (N, H, W, 3): a radiograph becomes R = G = B
    return x


def _triple(v, what):
    t = tuple(float(a) for a in v)
    if len(t) != 3:
        raise ValueError(f"preprocessing: {what} must hold 3 numbers (one per channel), got {v!r}")
    return t


MAX_INPUT_SIDE = 8192


def _check_limits(pp):
    """ValueError when a record read from a file asks for non-finite numbers or absurd sizes."""
    nums = list(pp.mean) + list(pp.std or ()) + [pp.scale]
    if not all(np.isfinite(v) for v in nums):
        raise ValueError(f"preprocessing: mean, std and scale must be finite, got {pp.mean}, {pp.std}, {pp.scale}")
    for what, size in (("input_size", pp.input_size), ("resize_size", pp.resize_size)):
        if size is not None and max(size) > MAX_INPUT_SIDE:
            raise ValueError(f"preprocessing: {what} {size} is larger than {MAX_INPUT_SIDE} pixels a side")


def _size(v, what):
    if v is None:
        raise ValueError(f"preprocessing: {what} is required")
    t = (int(v), int(v)) if np.ndim(v) == 0 else tuple(int(a) for a in v)
    if len(t) != 2 or min(t) < 1:
        raise ValueError(f"preprocessing: {what} must be (H, W) positive integers, got {v!r}")
    return t


PRESETS = {
    "vgg-keras": Preprocessing(
        channel_order="BGR", mean=(103.939, 116.779, 123.68), scale=1.0, input_size=(224, 224),
        resize="direct", name="vgg-keras", decode="color",
        notes=("Keras applications preprocess_input(mode='caffe'): RGB -> BGR, minus the ImageNet mean",)),
    "alexnet-bvlc": Preprocessing(
        channel_order="BGR", mean=(104.0, 116.7, 122.7), scale=1.0, input_size=(227, 227),
        resize="resize-crop", resize_size=(256, 256), name="alexnet-bvlc", decode="color",
        notes=("BVLC Caffe AlexNet: BGR, 0-255, per-channel mean of imagenet_mean.binaryproto",)),
    "alexnet-heuritech": Preprocessing(
        channel_order="RGB", mean=(123.68, 116.779, 103.939), scale=1.0, input_size=(227, 227),
        resize="resize-crop", resize_size=(256, 256), name="alexnet-heuritech", decode="color",
        notes=("heuritech convnets-keras preprocess_image_batch: RGB, 0-255, minus the ImageNet mean",)),
}


def preset(name):
    """The Preprocessing preset called `name` (see the module docstring)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preprocessing preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
