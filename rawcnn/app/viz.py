"""The visualisations as whole tasks, one function per `rawcnn viz ...` command (and `rawcnn report`):
each loads the checkpoint, picks the images, calls the library functions and writes files. cli.py
only parses and prints.

Shape legend: N images, C, S, S the stored (uint8) images, K classes.

Images come from a prepared data set (`data` a path or load_dataset's result, `split`, `indices`
into the split) or from image files (`images`, through the checkpoint's input contract as `predict`
runs it: rawcnn.data.contract.file_to_input, the lung ROI from the locator when training cropped one).
The net is fed what training fed it (rawcnn.training.train.make_to_input with the checkpoint's preprocessing
record).

The library-style functions take an Images (which images) and an options dataclass (HeatmapOptions,
DreamOptions, ScoreOptions; the report's is rawcnn.app.report.ReportOptions); the *_command functions
take a command's options by name, as cli.py parses them.
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from rawcnn.app.report import ReportOptions, write_report
from rawcnn.data import load_dataset
from rawcnn.data.boxes import apply_boxes, read_boxes
from rawcnn.data.contract import contract_of, file_to_input, map_to_source, source_view
from rawcnn.engine.checkpoint import load_checkpoint, read_checkpoint
from rawcnn.engine.models import validate_spec
from rawcnn.files.fileio import atomic_path, check_out_folder, inside, safe_name
from rawcnn.training.train import make_to_input
from rawcnn.viz.activations import save_activations
from rawcnn.viz.annotate import annotate
from rawcnn.viz.dream import Ascent, dream, input_scale
from rawcnn.viz.filters import save_filters
from rawcnn.viz.heatmap import METHODS, default_layer, heatmaps, logit_layer
from rawcnn.viz.images import gray_to_rgb, montage, overlay, write_png
from rawcnn.viz.score import COLUMNS, ScoreSettings, localisation_table

SOURCE = ("data_path", "split", "indices", "images")  # a command's options that pick the images (Images)
DEFAULT_REPORT = ReportOptions()  # report()'s default options (frozen: one instance serves every call)
DEFAULT_TOP = 8  # channels `viz activations` marks when --top is not given (fewer on a narrower layer)


@dataclass(frozen=True)
class Images:
    """The images to look at: `data` (a prepared set's path or load_dataset's result) and its `split`,
    all of it or `indices` into it; or image files `images`."""
    data: Any = None
    split: str = "test"
    indices: Optional[Sequence[int]] = None
    images: Sequence = ()


@dataclass(frozen=True)
class HeatmapOptions:
    """viz_heatmap's maps: `method` (channel, gradcam, saliency) at `layer` (default the deepest conv
    activation), for `class_index` (default the predicted class) or `channel` (method channel; default
    the strongest); values under `threshold` transparent, `alpha` the overlay's opacity; batch_size
    images per forward; save_raw: also the map as .npy; colorbar: a title and a colour bar with the
    threshold marked; full_res: for image files, the map over the source image at its resolution."""
    method: str = "gradcam"
    layer: Optional[str] = None
    class_index: Optional[int] = None
    channel: Optional[int] = None
    threshold: float = 0.5
    alpha: float = 0.5
    batch_size: int = 16
    save_raw: bool = False
    colorbar: bool = True
    full_res: bool = False


@dataclass(frozen=True)
class DreamOptions:
    """viz_dream's image: a class neuron of `layer` (default the logits; every class when class_index and
    channel are None) or `channel` of a 4-D layer; `ascent`: how it climbs (rawcnn.viz.dream.Ascent; its
    scale is set from the checkpoint's input contract); seed; gray: shown as the mean over the input
    channels."""
    layer: Optional[str] = None
    channel: Optional[int] = None
    class_index: Optional[int] = None
    ascent: Ascent = Ascent()
    seed: int = 0
    gray: bool = True


@dataclass(frozen=True)
class ScoreOptions:
    """viz_score's table: the `split`, the heat-map `methods`, their `layer`, class_index and channel,
    the map `threshold`, the pointing game's `tolerance` (pixels) and batch_size; `boxes`: a file of lesion
    boxes (Pascal VOC XML or a folder of them, COCO JSON, or a CSV of file,x,y,w,h in source pixels;
    rawcnn.data.boxes) that replace the lesion masks of the images it names."""
    split: str = "test"
    methods: tuple = METHODS
    layer: Optional[str] = None
    class_index: int = 1
    channel: Optional[int] = None
    threshold: float = 0.5
    tolerance: int = 0
    batch_size: int = 16
    boxes: Optional[str] = None


def _source(options):
    """(Images, the other options) from a command's options by name (SOURCE: --data, --split, --index, --image)."""
    rest = {k: v for k, v in options.items() if k not in SOURCE}
    return Images(data=options["data_path"], split=options["split"], indices=list(options["indices"]) or None,
                  images=options["images"]), rest


def open_checkpoint(checkpoint, device="cpu"):
    """(net, ck, to_input) for a checkpoint path; to_input maps uint8 (B, C, S, S) to net input."""
    net, ck = load_checkpoint(checkpoint, backend=device)
    return net, ck, make_to_input(net, ck.get("preprocessing") or None)


class _Feed:
    """The net's inputs of a selection of stored images, made a slice at a time: feed[i:j] is
    to_input(x[i:j]) (a data set's stored images already went through steps 1-2 of the contract)."""

    def __init__(self, x, to_input):
        self.x, self.to_input = x, to_input

    def __getitem__(self, s):
        return self.to_input(self.x[s])


def select_images(ck, source, to_input=None):
    """The images to look at: (pictures uint8 (N, C, S, S), names list, lesion masks (N, S, S) or None, feed).

    source: an Images: `data`'s split (all of it, or `indices` into it) or image files `images`. feed[i:j] is
    the net's input of images i..j-1: for files, each made by rawcnn.data.contract.file_to_input, the
    path `predict` and `trace` take (so the net sees the same tensor whatever command reads the
    file); the pictures are then only for drawing (brought to one size when the files differ).
    to_input: the checkpoint's step 3 (open_checkpoint).
    """
    data, split, indices, images = source.data, source.split, source.indices, source.images
    if data is not None and images:
        raise ValueError("give a data set or image files, not both")
    if images:
        contract = contract_of(ck)
        made = [file_to_input(p, contract, to_input) for p in images]  # (x (1, C, IH, IW), stored, note)
        feed = np.concatenate([m[0] for m in made])  # (N, C, IH, IW)
        xs = [m[1] for m in made]  # (C, S, S) each
        if len({x.shape for x in xs}) > 1:  # for the pictures only: the net's input size
            h, w = feed.shape[2:]
            xs = [np.atleast_3d(cv2.resize(x.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_AREA))
                  .transpose(2, 0, 1) for x in xs]  # (C, h, w) each
        return np.stack(xs), [os.path.splitext(os.path.basename(os.fspath(p)))[0] for p in images], None, feed
    if data is None:
        raise ValueError("give a prepared data set (data=) or image files (images=)")
    data = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    s = data.split(split)
    idx = np.arange(len(s.labels)) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= len(s.labels):
        raise ValueError(f"--index {[int(i) for i in idx]} does not fit split {split!r} of {len(s.labels)} images")
    masks = np.where(s.has_lesion_mask[idx, None, None], s.lesion_masks[idx], 0)  # (N, S, S)
    x = s.images[idx]
    return x, [str(n) for n in s.names[idx]], masks, _Feed(x, to_input)


def viz_filters(checkpoint, out, *, layer=None, channel=None, tile=None, ncols=None, device="cpu"):
    """`rawcnn viz filters`: the filters of Conv2d `layer` (default the first) as one PNG. Returns the path."""
    net, ck, _ = open_checkpoint(checkpoint, device)
    order = (ck.get("preprocessing") or {}).get("channel_order", "RGB")
    return save_filters(net, out, layer=layer, channel=channel, channel_order=order, tile=tile, ncols=ncols)


def channels_at(net, layer):
    """The channel count of `layer`'s output, from the shapes front to back (no forward pass)."""
    shape = tuple(net.input_shape)
    for l in net.layers:
        shape = l.output_shape(shape)
        if l.name == layer:
            return int(shape[0])
    raise ValueError(f"no layer {layer!r} in the net (layers: {', '.join(net.names())})")


def viz_activations(checkpoint, out_dir, source, *, layer=None, top_k=None, raw_format="npy", device="cpu"):
    """`rawcnn viz activations`: per image of `source` (an Images) a grid PNG of `layer`'s channels (each
    scaled to [0, 1], the top_k marked: inside the lesion mask when the image has one) and the raw array
    (.npy or .h5). layer: default the deepest conv activation; top_k: default 8, or every channel of a
    layer with fewer. Returns a list of save_activations' dicts."""
    net, ck, to_input = open_checkpoint(checkpoint, device)
    layer = layer or default_layer(net)
    x, names, masks, feed = select_images(ck, source, to_input)
    out = []
    for n, name in enumerate(names):
        m = masks[n] if masks is not None and masks[n].any() else None
        out.append(save_activations(net, feed[n:n + 1], layer, out_dir, stem=safe_name(name),
                                    raw_format=raw_format,
                                    k=top_k or min(DEFAULT_TOP, channels_at(net, layer)), mask=m))
    return out


def activations_command(checkpoint, out_dir, options, *, device="cpu"):
    """`rawcnn viz activations` after parsing: options by name (data_path, split, indices, images, layer,
    top_k, raw_format). Returns viz_activations' list."""
    source, rest = _source(options)
    return viz_activations(checkpoint, out_dir, source, device=device, **rest)


def viz_heatmap(checkpoint, out_dir, source, options=HeatmapOptions(), *, device="cpu"):
    """`rawcnn viz heatmap`: per image of `source` (an Images) <name>_<method>.png, the 'jet' map over the
    radiograph (values under options.threshold transparent), and with options.save_raw the map itself as
    <name>_<method>.npy (H, W) float32 in [0, 1]. colorbar: a title and a 'jet' colour bar with the
    threshold marked (annotate.py). full_res: for image files, the map over the source image at its own
    resolution, placed in the lung-ROI box the network saw (rawcnn.data.contract.source_view).
    Returns the list of PNG paths."""
    o, images = options, source.images
    if o.full_res and not images:
        raise ValueError("--full-res draws over the source files: give --image files, not --data")
    net, ck, to_input = open_checkpoint(checkpoint, device)
    x, names, _, feed = select_images(ck, source, to_input)
    os.makedirs(out_dir, exist_ok=True)
    paths, batch_size = [], int(o.batch_size)
    for i in range(0, len(names), batch_size):
        hm = heatmaps(net, feed[i:i + batch_size], o.method, layer=o.layer, class_index=o.class_index,
                      channel=o.channel, batch_size=batch_size)
        for j, heat in enumerate(hm.maps):
            stem = inside(out_dir, f"{names[i + j]}_{o.method}")
            if o.full_res:
                src, box = source_view(images[i + j], contract_of(ck))  # (H, W) uint8, its ROI box
                view = overlay(gray_to_rgb(src), map_to_source(heat, box, src.shape), o.threshold, o.alpha)
            else:
                view = overlay(gray_to_rgb(x[i + j, 0]), heat, o.threshold, o.alpha)
            if o.colorbar:
                what = (f"{hm.layer} channel {int(hm.channels[j])}" if hm.channels is not None
                        else f"class {int(hm.classes[j])}")
                view = annotate(view, f"{names[i + j]}: {o.method}, {what}", o.threshold)
            paths.append(write_png(stem + ".png", view))
            if o.save_raw:
                with atomic_path(stem + ".npy") as tmp, open(tmp, "wb") as fh:
                    np.save(fh, heat)
    return paths


def heatmap_command(checkpoint, out_dir, options, *, device="cpu"):
    """`rawcnn viz heatmap` after parsing: options by name (data_path, split, indices, images and
    HeatmapOptions' fields). Returns viz_heatmap's paths."""
    source, rest = _source(options)
    return viz_heatmap(checkpoint, out_dir, source, HeatmapOptions(**rest), device=device)


def viz_dream(checkpoint, out, options=DreamOptions(), *, device="cpu"):
    """`rawcnn viz dream`: a deep-dream PNG of a class neuron (default layer: the logits; every class
    when options.class_index is None) or of options.channel of a 4-D layer. Returns the path."""
    o = options
    net, _, to_input = open_checkpoint(checkpoint, device)
    scale = input_scale(to_input, net.input_shape)
    layer = o.layer or logit_layer(net)
    if o.channel is None and o.class_index is None:
        K = int(net.forward(np.zeros((1,) + tuple(net.input_shape), dtype=net.dtype), upto=layer).shape[1])
        targets = [dict(class_index=k) for k in range(K)]
    else:
        targets = [dict(channel=o.channel, class_index=o.class_index)]
    tiles, labels = [], []
    for t in tqdm(targets, desc="dream", unit="image", disable=len(targets) < 2, leave=False):
        d = dream(net, layer, ascent=dataclasses.replace(o.ascent, scale=scale), seed=o.seed, **t)
        tiles.append(d.rgb(gray=o.gray))
        labels.append(f"{layer} {'class ' + str(d.class_index) if d.channel is None else 'channel ' + str(d.channel)}")
    side = max(128, tiles[0].shape[0])
    return write_png(out, montage(tiles, labels, ncols=len(tiles), tile_size=(side, side)))


def dream_command(checkpoint, out, options, *, device="cpu"):
    """`rawcnn viz dream` after parsing: options by name (layer, channel, octaves, steps, lr, seed);
    --channel is a class of the logits layer (logit_layer's rule, the default layer) or a channel of any
    other layer. Returns viz_dream's path."""
    spec = read_checkpoint(checkpoint)["spec"]
    validate_spec(spec, checkpoint)
    layer, channel = options["layer"], options["channel"]
    is_class = layer is None or layer == logit_layer(spec)
    ascent = Ascent(octaves=options["octaves"], steps=options["steps"], lr=options["lr"])
    return viz_dream(checkpoint, out, DreamOptions(layer=layer, channel=None if is_class else channel,
                                                   class_index=channel if is_class else None, ascent=ascent,
                                                   seed=options["seed"]), device=device)


def viz_score(checkpoint, data, out, options=ScoreOptions(), *, device="cpu", progress=False):
    """`rawcnn viz score`: localisation scores of every method against the lesion masks of options.split;
    writes <out>.csv (one row per method) and <out>_images.csv. Returns localisation_table's dict, with
    'boxes_rescaled': how many images' boxes were declared in another image size and scaled to theirs."""
    o = options
    net, _, to_input = open_checkpoint(checkpoint, device)
    data = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    rescaled = 0
    if o.boxes is not None:  # lesion boxes instead of the set's lesion masks where the file names an image
        data = apply_boxes(data, read_boxes(o.boxes))
        rescaled = data.boxes_rescaled
    settings = ScoreSettings(layer=o.layer, class_index=o.class_index, channel=o.channel, threshold=o.threshold,
                             tolerance=o.tolerance, batch_size=o.batch_size)
    res = localisation_table(net, data, o.split, o.methods, settings, to_input=to_input, out=out,
                             progress=progress)
    res["boxes_rescaled"] = rescaled
    return res


def score_command(checkpoint, out, options, *, device="cpu"):
    """`rawcnn viz score` after parsing: options by name (data_path and ScoreOptions' fields; methods
    empty: all three), with a progress bar. Returns viz_score's dict."""
    rest = {k: v for k, v in options.items() if k != "data_path"}
    rest["methods"] = tuple(rest.get("methods") or METHODS)
    return viz_score(checkpoint, options["data_path"], out, ScoreOptions(**rest), device=device, progress=True)


def report(run_dir, *, data=None, checkpoint=None, out=None, options=DEFAULT_REPORT, device="cpu", progress=False):
    """`rawcnn report`: write_report with `data` a path or load_dataset's result. Returns the HTML path.
    The report's folder (RUN_DIR without `out`) may not be the filesystem root or a system folder."""
    if out is None:
        check_out_folder(os.path.join(os.fspath(run_dir), "report.html"), folder=False, flag="the report")
    data = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    return write_report(run_dir, data, checkpoint=checkpoint, out=out, options=options, backend=device,
                        progress=progress)


def format_score_table(res):
    """The localisation summary (viz score) as fixed-width text, one row per method."""
    head = ["method", "n", *COLUMNS]
    rows = [[str(r.get(k)) if not isinstance(r.get(k), float) else f"{r[k]:.3f}" for k in head]
            for r in res["summary"]]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [head] + rows]
    channel = f", channel {res['channel']}" if res.get("channel") is not None else ""
    lines.append(f"layer {res.get('layer')}" + channel)
    return "\n".join(lines)
