"""Convolution filters as pictures: one tile per output channel, each scaled to [0, 1] on its own.

Shape legend: F filters, Cg input channels per group (C / groups), KH, KW the kernel size.

A filter w[f] (Cg, KH, KW) is shown
    in colour     when Cg == 3 (the first layer of a net fed RGB or BGR images; `channel_order`
                  says which, so the tile is shown in RGB),
    in gray       when Cg == 1, or, for deeper layers, as the mean over its input channels
                  (or one chosen input channel).
Scaling per filter: (w - min w) / (max w - min w), a constant filter showing as 0 (black).
Tiles are enlarged by nearest-neighbour so each weight stays a visible square.
"""
import numpy as np

from kernels import to_numpy
from rawcnn.viz.images import montage, scale01, write_png


def filter_tiles(w, channel=None, channel_order="RGB"):
    """One picture per filter. w: (F, Cg, KH, KW).

    channel: None (colour for Cg == 3, else the mean over input channels) or an input channel index.
    Returns a list of F arrays, (KH, KW, 3) RGB or (KH, KW) gray, float32 in [0, 1].
    """
    w = np.asarray(to_numpy(w), dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"filters must be (F, Cg, KH, KW), got shape {w.shape}")
    F, Cg = w.shape[:2]
    if channel is not None:
        if not 0 <= int(channel) < Cg:
            raise ValueError(f"input channel {channel} is outside the {Cg} channels of filters {w.shape}")
        return list(scale01(w[:, int(channel)], axes=(1, 2)))             # F x (KH, KW)
    if Cg == 3:
        rgb = w if channel_order == "RGB" else w[:, ::-1]
        return list(scale01(rgb, axes=(1, 2, 3)).transpose(0, 2, 3, 1))  # F x (KH, KW, 3)
    return list(scale01(w.mean(axis=1), axes=(1, 2)))                     # F x (KH, KW)


def filters_image(net, layer=None, channel=None, channel_order="RGB", max_filters=None, tile=None, ncols=None):
    """A labelled grid of the filters of Conv2d `layer` (default: the first Conv2d).

    tile: side of each tile in pixels (default about 6x the kernel, at least 24).
    Returns RGB float32 (GH, GW, 3).
    """
    if layer is None:
        convs = [l.name for l in net.layers if l.kind == "Conv2d"]
        if not convs:
            raise ValueError("the net has no Conv2d layer")
        layer = convs[0]
    conv = net[layer]
    if conv.kind != "Conv2d":
        raise ValueError(f"layer {layer!r} is a {conv.kind}, not a Conv2d; filters exist only for Conv2d")
    tiles = filter_tiles(conv.params["w"], channel, channel_order)
    if max_filters is not None:
        tiles = tiles[:int(max_filters)]
    KH, KW = tiles[0].shape[:2]
    side = tile or max(24, 6 * max(KH, KW))
    size = (int(round(side * KH / max(KH, KW))), int(round(side * KW / max(KH, KW))))
    return montage(tiles, labels=[str(f) for f in range(len(tiles))], ncols=ncols, tile_size=size)


def save_filters(net, path, layer=None, **kw):
    """Write filters_image(net, layer, **kw) as a PNG at `path`; returns the path."""
    return write_png(path, filters_image(net, layer, **kw))
