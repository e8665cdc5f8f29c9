"""One self-contained HTML page about a training run: what the network learned and where it looks.

Shape legend: N images of a split, C, S, S their (uint8) planes, K classes, F channels.

Sections, in order (a section whose inputs are missing says so in one line instead):
    training curves        from the checkpoint's history (or the run's curves.png)
    evaluation             metrics and ROC on the data set's split (or the run's eval.json / eval_roc.png)
    filters                the first convolution's filters (filters.py)
    top channels           the deepest conv activation's channels ranked by mean activation inside
                           the lesion masks of the split (activations.rank_channels), and their maps
                           for one abnormal image, plus the best channel's heat map
    heat maps              per class, a few images of the split: the radiograph and each method's
                           'jet' overlay (threshold, black transparent; heatmap.py, images.py)
    dream images           one per class neuron of the logit layer (dream.py)
    localisation           the scores of score.py against the lesion masks
Every image is a PNG embedded as base64 (data: URL), so the page is one file with no links out.

What the net is fed: `to_input` when given, else the data set's own `to_input` when it has one,
else what training fed it: rawcnn.training.train.make_to_input with the checkpoint's preprocessing record
(the images cast to the net's dtype when the checkpoint has none).
"""
import base64
import html
import os
import tempfile
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from tqdm import tqdm

from rawcnn.engine.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from rawcnn.files.fileio import atomic_open
from rawcnn.files.validate import parse_json
from rawcnn.training.evaluate import evaluate
from rawcnn.training.plots import plot_curves, plot_roc
from rawcnn.training.train import make_to_input
from rawcnn.viz.activations import activation_grid, layer_activations, rank_channels
from rawcnn.viz.dream import Ascent, dream, input_scale
from rawcnn.viz.filters import filters_image
from rawcnn.viz.heatmap import METHODS, default_layer, heatmaps, logit_layer
from rawcnn.viz.images import gray_to_rgb, montage, overlay, png_bytes
from rawcnn.viz.score import COLUMNS, ScoreSettings, localisation_table

SALIENCY_THRESHOLD = 0.2  # the input-gradient map is sparse: at 0.5 little of it shows
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 8px;"
         "text-align:right}th{background:#eee}img{max-width:100%;border:1px solid #ddd}"
         "p.note{color:#777;font-style:italic}")


@dataclass(frozen=True)
class ReportOptions:
    """What write_report shows. split: the data set's split; layer: default the deepest conv activation;
    methods: the heat-map methods; per_class: images per class in the heat maps; top_k: channels ranked;
    dream_steps, dream_octaves, seed: the dream images; threshold: map values under it are transparent
    (None: 0.5, and SALIENCY_THRESHOLD for saliency); alpha: the overlays' opacity; batch_size: images
    per forward; title: the page's (default: the run folder's name)."""
    split: str = "test"
    layer: Optional[str] = None
    methods: tuple = METHODS
    per_class: int = 2
    top_k: int = 8
    dream_steps: int = 10
    dream_octaves: int = 2
    threshold: Optional[float] = None
    alpha: float = 0.5
    seed: int = 0
    batch_size: int = 16
    title: Optional[str] = None


def _img(data, alt):
    """An <img> tag with PNG bytes (or an RGB / gray float image) embedded as base64."""
    raw = data if isinstance(data, bytes) else png_bytes(data)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(raw).decode()}">'


def _table(rows, columns):
    """An HTML table of dict rows; floats to 4 significant digits."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _note(text):
    return f'<p class="note">{html.escape(text)}</p>'


def _plot_png(plot, *args):
    """Run a rawcnn.training.plots function into a temporary file and return the PNG bytes."""
    with tempfile.TemporaryDirectory() as d:
        path = plot(*args, os.path.join(d, "plot.png"))
        with open(path, "rb") as fh:
            return fh.read()


def _read(path, mode="rb"):
    with open(path, mode) as fh:
        return fh.read()


def input_function(net, ck, data=None, to_input=None):
    """The callable mapping (B, C, S, S) uint8 images to net input (see the module docstring)."""
    if to_input is not None:
        return to_input
    if getattr(data, "to_input", None) is not None:
        return data.to_input
    return make_to_input(net, (ck or {}).get("preprocessing") or None)


def _curves(ck, run_dir):
    history = ck.get("history") or []
    last = os.path.join(run_dir, "last.h5")
    if os.path.exists(last):  # best.h5 holds the history up to the best epoch; last.h5 the whole run
        try:
            history = max(history, read_checkpoint(last).get("history") or [], key=len)
        except CheckpointError:
            pass
    if history:
        return _img(_plot_png(plot_curves, history), "training curves")
    path = os.path.join(run_dir, "curves.png")
    return _img(_read(path), "training curves") if os.path.exists(path) else _note("no training history")


def _evaluation(net, s, to_input, run_dir, batch_size, class_names=("normal", "abnormal")):
    if s is not None and len(s.labels):
        r = evaluate(net, s.images, s.labels, batch_size=batch_size, to_input=to_input)
        title = f"ROC, positive class {class_names[1]!r}" if len(class_names) == 2 else None
        roc = (_img(_plot_png(lambda f, t, a, p: plot_roc(f, t, a, p, title=title), r["roc"]["fpr"], r["roc"]["tpr"],
                              r["auc"]), "ROC") if r.get("roc") else "")
    elif os.path.exists(os.path.join(run_dir, "eval.json")):
        r = parse_json(_read(os.path.join(run_dir, "eval.json"), "r"), os.path.join(run_dir, "eval.json"),
                       kind=dict, allow_null=False)
        r = {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             or (k == "confusion_matrix" and isinstance(v, list) and all(isinstance(row, list) for row in v))}
        path = os.path.join(run_dir, "eval_roc.png")
        roc = _img(_read(path), "ROC") if os.path.exists(path) else ""
    else:
        return _note("no data set given and no eval.json in the run")
    keys = [k for k in ("n", "loss", "accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
            if r.get(k) is not None]
    cm = r.get("confusion_matrix")
    name = (lambda k: class_names[k] if k < len(class_names) else str(k))
    cm_html = _table([{"true \\ predicted": name(t), **{name(p): v for p, v in enumerate(row)}}
                      for t, row in enumerate(cm)],
                     ["true \\ predicted"] + [name(p) for p in range(len(cm))]) if cm else ""
    return _table([{k: r[k] for k in keys}], keys) + cm_html + roc


def _channels_section(net, s, layer, to_input, top_k, threshold, alpha, batch_size):
    """Ranking table, the maps of one abnormal image, and the best channel's overlay.

    Returns (html, the best channel)."""
    lesion = np.flatnonzero(s.has_lesion_mask & (s.lesion_masks.reshape(len(s.labels), -1).max(axis=1) > 0))
    masks = s.lesion_masks[lesion] if lesion.size else None
    use = lesion if lesion.size else np.arange(len(s.labels))
    how = "mean activation inside the lesion masks" if masks is not None else "mean activation (no lesion masks)"
    top, scores = rank_channels(net, s.images[use], layer, masks=masks, to_input=to_input,
                                batch_size=batch_size, k=None)
    top, scores = top[:top_k], scores[:top_k]
    n = int(use[0])
    a = layer_activations(net, to_input(s.images[n:n + 1]), layer)[0]        # (F, h, w)
    hm = heatmaps(net, to_input(s.images[n:n + 1]), "channel", layer=layer, channel=int(top[0]))
    view = overlay(gray_to_rgb(s.images[n, 0]), hm.maps[0], threshold, alpha)
    rows = [{"rank": i + 1, "channel": int(c), "score": float(v)}
            for i, (c, v) in enumerate(zip(top, scores, strict=True))]
    return int(top[0]), (f"<p>Layer {html.escape(layer)}, ranked by {how} of the split.</p>"
            + _table(rows, ["rank", "channel", "score"])
            + f"<p>Channels of {html.escape(layer)} for image {html.escape(str(s.names[n]))} "
              f"(each scaled to [0, 1]; * = top {len(top)}), and channel {int(top[0])} over the radiograph:</p>"
            + _img(activation_grid(a, highlight=top.tolist(), tile=48), "activations") + " "
            + _img(view, "best channel"))


def _heatmap_section(net, s, layer, channel, to_input, class_names, options):
    """Per class, up to options.per_class images: the radiograph, then each method's overlay."""
    per_class, methods, threshold, alpha = options.per_class, list(options.methods), options.threshold, options.alpha
    parts = []
    for k, cname in enumerate(class_names):
        idx = np.flatnonzero(s.labels == k)[:per_class]
        if idx.size == 0:
            parts.append(_note(f"no {cname} image in the split"))
            continue
        x = to_input(s.images[idx])
        maps = {m: heatmaps(net, x, m, layer=layer, channel=channel) for m in methods}
        tiles, labels = [], []
        for j, n in enumerate(idx):
            base = gray_to_rgb(s.images[n, 0])
            lesion = s.lesion_masks[n] if s.has_lesion_mask[n] and s.lesion_masks[n].any() else None
            tiles.append(_outline(base, lesion))
            pred = int(np.argmax(maps[methods[0]].logits[j]))
            labels.append(f"{str(s.names[n])[:12]} -> {class_names[pred] if pred < len(class_names) else pred}")
            for m in methods:
                t = SALIENCY_THRESHOLD if m == "saliency" and threshold is None else threshold
                tiles.append(_outline(overlay(base, maps[m].maps[j], 0.5 if t is None else t, alpha), lesion))
                c = int(maps[m].classes[j])
                labels.append(f"channel {int(maps[m].channels[j])}" if m == "channel"
                              else f"{m}: {class_names[c] if c < len(class_names) else c}")
        side = max(128, min(192, base.shape[0]))
        parts.append(f"<h3>{html.escape(cname)}</h3>"
                     + _img(montage(tiles, labels, ncols=1 + len(methods), tile_size=(side, side)), cname))
    shown = (f"{threshold:g}" if threshold is not None
             else f"0.5, {SALIENCY_THRESHOLD:g} for the sparse saliency maps")
    note = (f"<p>Each row: the radiograph (-> the predicted class; lesions outlined in green), then each "
            f"method's map in 'jet' over it (values under {shown} transparent; after the method's name, the "
            f"class it explains).</p>")
    return note + "".join(parts)


def _outline(rgb, mask):
    """rgb (H, W, 3) in [0, 1] with the outline of mask (H, W) drawn in green; unchanged when mask is None."""
    if mask is None:
        return rgb
    contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
    cv2.drawContours(out, contours, -1, (0.0, 1.0, 0.0), 1)
    return out


def _dream_section(net, class_names, steps, octaves, scale, seed):
    top = logit_layer(net)
    K = int(net.forward(np.zeros((1,) + tuple(net.input_shape), dtype=net.dtype), upto=top).shape[1])
    ascent = Ascent(steps=steps, octaves=octaves, scale=scale)
    tiles = [dream(net, top, class_index=k, ascent=ascent, seed=seed).rgb(gray=True) for k in range(K)]
    labels = [class_names[k] if k < len(class_names) else str(k) for k in range(K)]
    side = max(128, min(192, tiles[0].shape[0]))
    return (f"<p>Gradient ascent on the input for each class neuron of {html.escape(top)} "
            f"({octaves} octaves x {steps} steps, seed {seed}; shown as the mean over the input channels, "
            f"since radiographs reach the net as R = G = B).</p>"
            + _img(montage(tiles, labels, tile_size=(side, side), ncols=K), "dream images"))


def _find_checkpoint(run_dir, checkpoint):
    ckpt = checkpoint or next((os.path.join(run_dir, f) for f in ("best.h5", "last.h5")
                               if os.path.exists(os.path.join(run_dir, f))), None)
    if ckpt is None:
        raise ValueError(f"{run_dir}: no best.h5 or last.h5; give checkpoint=")
    return os.fspath(ckpt)


def _write_page(out, title, head, sections):
    """The HTML page from (heading, html) sections, written to a temporary file and renamed."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{c}\n" for h, c in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{head}\n{body}</body></html>\n")
    with atomic_open(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    return out


def write_report(run_dir, data=None, *, checkpoint=None, out=None, options=ReportOptions(), to_input=None,
                 backend="cpu", progress=False):
    """Write report.html for the run in `run_dir` and return its path.

    data: a PreparedData (rawcnn.data.dataset.load_dataset) or None (then only curves, eval.json,
    filters and dream images); checkpoint: default run_dir/best.h5, else run_dir/last.h5;
    out: the HTML path (default run_dir/report.html); options: a ReportOptions (what the sections
    show); to_input: see the module docstring; progress: a tqdm bar over the sections.
    """
    o = options
    split, threshold, batch_size = o.split, o.threshold, o.batch_size
    run_dir = os.fspath(run_dir)
    ckpt = _find_checkpoint(run_dir, checkpoint)
    net, ck = load_checkpoint(ckpt, backend)
    layer = o.layer or default_layer(net)
    to_input = input_function(net, ck, data, to_input)
    s = data.split(split) if data is not None else None
    has_images = s is not None and len(s.labels) > 0
    class_names = list(getattr(data, "class_names", None) or ["normal", "abnormal"])
    order = (ck.get("preprocessing") or {}).get("channel_order", "RGB")
    bar = tqdm(total=4 + 2 * has_images, desc="report", unit="section", disable=not progress, leave=False)
    sec = [("Training curves", _curves(ck, run_dir)),
           (f"Evaluation ({split})", _evaluation(net, s, to_input, run_dir, batch_size, class_names)),
           ("Filters", _img(filters_image(net, channel_order=order), "filters"))]
    bar.update(1)
    if has_images:
        best, part = _channels_section(net, s, layer, to_input, o.top_k, 0.5 if threshold is None else threshold,
                                       o.alpha, batch_size)
        sec.append(("Top channels", part))
        bar.update(1)
        sec.append(("Heat maps", _heatmap_section(net, s, layer, best, to_input, class_names, o)))
        bar.update(1)
    scale = input_scale(to_input, net.input_shape)
    sec.append(("Dream images", _dream_section(net, class_names, o.dream_steps, o.dream_octaves, scale, o.seed)))
    bar.update(1)
    lesions = has_images and s.has_lesion_mask.any() and s.lesion_masks.any()
    if lesions or (has_images and s.has_lung_mask.any() and s.lung_masks.any()):
        settings = ScoreSettings(layer=layer, threshold=0.5 if threshold is None else threshold,
                                 batch_size=batch_size)
        t = localisation_table(net, data, split, o.methods, settings, to_input=to_input)
        against = "lesion masks" if lesions else "lung masks (no lesion masks: lung, border and corner shares)"
        sec.append(("Localisation", f"<p>Against the {against} of {len(t['images']) // len(o.methods)} images; "
                                    f"'channel' uses channel {t['channel']} chosen on the train split.</p>"
                    + _table(t["summary"], ["method", "n", "layer", *COLUMNS])))
    else:
        sec.append(("Localisation", _note("no lesion or lung masks in the split")))
    bar.update(1)
    head = (f"<p>Checkpoint {html.escape(os.path.basename(ckpt))}, epoch {ck.get('epoch')}, model "
            f"{html.escape(str((ck.get('spec') or {}).get('name', '?')))}"
            + (f", data {html.escape(os.path.basename(str(data.path)))}" if data is not None else "") + ".</p>")
    title = o.title or f"rawcnn report: {os.path.basename(os.path.abspath(run_dir))}"
    bar.update(1)
    bar.close()
    return _write_page(os.fspath(out or os.path.join(run_dir, "report.html")), title, head, sec)
