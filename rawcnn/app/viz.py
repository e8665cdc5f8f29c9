"""The visualisations as whole tasks, one function per `rawcnn viz ...` command (and `rawcnn report`):
each loads the checkpoint, picks the images, calls the library functions and writes files. cli.py
only parses and prints.

Shape legend: N images, C, S, S the stored (uint8) images, K classes.

Images come from a prepared data set (`data` a path or load_dataset's result, `split`, `indices`
into the split) or from image files (`images`, through the checkpoint's input contract as `predict`
runs it: rawcnn.data.contract.file_to_input, the lung ROI from the locator when training cropped one).
The net is fed what training fed it (rawcnn.training.train.make_to_input with the checkpoint's preprocessing
record).
"""
import os

import numpy as np

from rawcnn.engine.checkpoint import load_checkpoint
from rawcnn.files.fileio import atomic_path, inside, safe_name
from rawcnn.viz.activations import save_activations
from rawcnn.viz.dream import dream, input_scale
from rawcnn.viz.filters import save_filters
from rawcnn.viz.heatmap import METHODS, heatmaps, logit_layer
from rawcnn.viz.images import gray_to_rgb, montage, overlay, write_png
from rawcnn.app.report import write_report
from rawcnn.viz.score import localisation_table


def open_checkpoint(checkpoint, device="cpu"):
    """(net, ck, to_input) for a checkpoint path; to_input maps uint8 (B, C, S, S) to net input."""
    from rawcnn.training.train import make_to_input
    net, ck = load_checkpoint(checkpoint, backend=device)
    return net, ck, make_to_input(net, ck.get("preprocessing") or None)


class _Feed:
    """The net's inputs of a selection of stored images, made a slice at a time: feed[i:j] is
    to_input(x[i:j]) (a data set's stored images already went through steps 1-2 of the contract)."""

    def __init__(self, x, to_input):
        self.x, self.to_input = x, to_input

    def __getitem__(self, s):
        return self.to_input(self.x[s])


def select_images(ck, data=None, split="test", indices=None, images=(), to_input=None):
    """The images to look at: (pictures uint8 (N, C, S, S), names list, lesion masks (N, S, S) or None, feed).

    From `data`'s split (all of it, or `indices` into it) or from image files `images`. feed[i:j] is
    the net's input of images i..j-1: for files, each made by rawcnn.data.contract.file_to_input, the
    path `predict` and `trace` take (so the net sees the same tensor whatever command reads the
    file); the pictures are then only for drawing (brought to one size when the files differ).
    to_input: the checkpoint's step 3 (open_checkpoint).
    """
    if data is not None and images:
        raise ValueError("give a data set or image files, not both")
    if images:
        from rawcnn.data.contract import contract_of, file_to_input
        contract = contract_of(ck)
        made = [file_to_input(p, contract, to_input) for p in images]  # (x (1, C, IH, IW), stored, note)
        feed = np.concatenate([m[0] for m in made])  # (N, C, IH, IW)
        xs = [m[1] for m in made]  # (C, S, S) each
        if len({x.shape for x in xs}) > 1:  # for the pictures only: the net's input size
            import cv2
            h, w = feed.shape[2:]
            xs = [np.atleast_3d(cv2.resize(x.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_AREA))
                  .transpose(2, 0, 1) for x in xs]  # (C, h, w) each
        return np.stack(xs), [os.path.splitext(os.path.basename(os.fspath(p)))[0] for p in images], None, feed
    if data is None:
        raise ValueError("give a prepared data set (data=) or image files (images=)")
    from rawcnn.data import load_dataset
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


def viz_activations(checkpoint, out_dir, *, data=None, split="test", indices=None, images=(), layer=None,
                    top_k=8, raw_format="npy", device="cpu"):
    """`rawcnn viz activations`: per image a grid PNG of `layer`'s channels (each scaled to [0, 1], the
    top_k marked: inside the lesion mask when the image has one) and the raw array (.npy or .h5).
    layer: default the deepest conv activation. Returns a list of save_activations' dicts."""
    from rawcnn.viz.heatmap import default_layer
    net, ck, to_input = open_checkpoint(checkpoint, device)
    layer = layer or default_layer(net)
    x, names, masks, feed = select_images(ck, data, split, indices, images, to_input)
    out = []
    for n, name in enumerate(names):
        m = masks[n] if masks is not None and masks[n].any() else None
        out.append(save_activations(net, feed[n:n + 1], layer, out_dir, stem=safe_name(name),
                                    raw_format=raw_format,
                                    k=top_k, mask=m))
    return out


def viz_heatmap(checkpoint, out_dir, *, data=None, split="test", indices=None, images=(), method="gradcam",
                layer=None, class_index=None, channel=None, threshold=0.5, alpha=0.5, batch_size=16,
                save_raw=False, device="cpu", colorbar=True, full_res=False):
    """`rawcnn viz heatmap`: per image <name>_<method>.png, the 'jet' map over the radiograph (values
    under `threshold` transparent), and with save_raw the map itself as <name>_<method>.npy (H, W)
    float32 in [0, 1]. colorbar: a title and a 'jet' colour bar with the threshold marked (annotate.py).
    full_res: for image files, the map over the source image at its own resolution, placed in the
    lung-ROI box the network saw (rawcnn.data.contract.source_view). Returns the list of PNG paths."""
    if full_res and not images:
        raise ValueError("--full-res draws over the source files: give --image files, not --data")
    net, ck, to_input = open_checkpoint(checkpoint, device)
    x, names, _, feed = select_images(ck, data, split, indices, images, to_input)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(0, len(names), int(batch_size)):
        hm = heatmaps(net, feed[i:i + batch_size], method, layer=layer, class_index=class_index,
                      channel=channel, batch_size=batch_size)
        for j, heat in enumerate(hm.maps):
            stem = inside(out_dir, f"{names[i + j]}_{method}")
            if full_res:
                from rawcnn.data.contract import contract_of, map_to_source, source_view
                src, box = source_view(images[i + j], contract_of(ck))  # (H, W) uint8, its ROI box
                view = overlay(gray_to_rgb(src), map_to_source(heat, box, src.shape), threshold, alpha)
            else:
                view = overlay(gray_to_rgb(x[i + j, 0]), heat, threshold, alpha)
            if colorbar:
                from rawcnn.viz.annotate import annotate
                what = (f"{hm.layer} channel {int(hm.channels[j])}" if hm.channels is not None
                        else f"class {int(hm.classes[j])}")
                view = annotate(view, f"{names[i + j]}: {method}, {what}", threshold)
            paths.append(write_png(stem + ".png", view))
            if save_raw:
                with atomic_path(stem + ".npy") as tmp, open(tmp, "wb") as fh:
                    np.save(fh, heat)
    return paths


def viz_dream(checkpoint, out, *, layer=None, channel=None, class_index=None, octaves=3, octave_scale=1.4,
              steps=20, lr=0.05, l2=1e-3, blur_sigma=0.5, jitter=None, seed=0, gray=True, device="cpu"):
    """`rawcnn viz dream`: a deep-dream PNG of a class neuron (default layer: the logits; every class
    when class_index is None) or of `channel` of a 4-D layer. Returns the path."""
    net, _, to_input = open_checkpoint(checkpoint, device)
    scale = input_scale(to_input, net.input_shape)
    layer = layer or logit_layer(net)
    if channel is None and class_index is None:
        K = int(net.forward(np.zeros((1,) + tuple(net.input_shape), dtype=net.dtype), upto=layer).shape[1])
        targets = [dict(class_index=k) for k in range(K)]
    else:
        targets = [dict(channel=channel, class_index=class_index)]
    tiles, labels = [], []
    from tqdm import tqdm
    for t in tqdm(targets, desc="dream", unit="image", disable=len(targets) < 2, leave=False):
        d = dream(net, layer, octaves=octaves, octave_scale=octave_scale, steps=steps, lr=lr, l2=l2,
                  blur_sigma=blur_sigma, jitter=jitter, scale=scale, seed=seed, **t)
        tiles.append(d.rgb(gray=gray))
        labels.append(f"{layer} {'class ' + str(d.class_index) if d.channel is None else 'channel ' + str(d.channel)}")
    side = max(128, tiles[0].shape[0])
    return write_png(out, montage(tiles, labels, ncols=len(tiles), tile_size=(side, side)))


def dream_command(checkpoint, out, *, layer=None, channel=None, octaves=3, steps=20, lr=0.05, seed=0, device="cpu"):
    """`rawcnn viz dream`: --channel is a class of the logits layer (logit_layer's rule, the default
    layer) or a channel of any other layer. Returns viz_dream's path."""
    from rawcnn.engine.checkpoint import read_checkpoint
    from rawcnn.engine.models import validate_spec
    spec = read_checkpoint(checkpoint)["spec"]
    validate_spec(spec, checkpoint)
    is_class = layer is None or layer == logit_layer(spec)
    return viz_dream(checkpoint, out, layer=layer, channel=None if is_class else channel,
                     class_index=channel if is_class else None, octaves=octaves, steps=steps, lr=lr, seed=seed,
                     device=device)


def viz_score(checkpoint, data, out, *, split="test", methods=METHODS, layer=None, class_index=1, channel=None,
              threshold=0.5, tolerance=0, batch_size=16, device="cpu", progress=False):
    """`rawcnn viz score`: localisation scores of every method against the lesion masks of `split`;
    writes <out>.csv (one row per method) and <out>_images.csv. Returns localisation_table's dict."""
    from rawcnn.data import load_dataset
    net, _, to_input = open_checkpoint(checkpoint, device)
    data = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    return localisation_table(net, data, split, methods, layer=layer, class_index=class_index, channel=channel,
                              threshold=threshold, tolerance=tolerance, batch_size=batch_size, to_input=to_input,
                              out=out, progress=progress)


def report(run_dir, *, data=None, checkpoint=None, out=None, split="test", device="cpu", **kw):
    """`rawcnn report`: write_report with `data` a path or load_dataset's result. Returns the HTML path.
    The report's folder (RUN_DIR without `out`) may not be the filesystem root or a system folder."""
    from rawcnn.data import load_dataset
    from rawcnn.files.fileio import check_out_folder
    if out is None:
        check_out_folder(os.path.join(os.fspath(run_dir), "report.html"), folder=False, flag="the report")
    data = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    return write_report(run_dir, data, checkpoint=checkpoint, out=out, split=split, backend=device, **kw)


def format_score_table(res):
    """The localisation summary (viz score) as fixed-width text, one row per method."""
    from rawcnn.viz.score import COLUMNS
    head = ["method", "n", *COLUMNS]
    rows = [[str(r.get(k)) if not isinstance(r.get(k), float) else f"{r[k]:.3f}" for k in head]
            for r in res["summary"]]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head] + rows]
    channel = f", channel {res['channel']}" if res.get("channel") is not None else ""
    lines.append(f"layer {res.get('layer')}" + channel)
    return "\n".join(lines)
