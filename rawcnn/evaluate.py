"""Evaluate a trained net on a labelled set, and predict class probabilities for image files.

Shapes: N images, B batch, C, H, W the net's input, K classes; images (N, C, H, W) float (or
what `to_input` turns into that), labels (N,) int, logits and probs (B, K) / (N, K).

    probs[n] = softmax(net.forward(x[n], train=False))        forward only, in batches
    loss     = -1/N sum_n log probs[n, label_n]                 (the training loss, same kernel)
    metrics  = rawcnn.metrics.classification_report(labels, probs)   (class 1 = abnormal)

What the net is fed is what it was trained on: `predict` reads each image file, runs the data
set's preprocessing recorded in the checkpoint (meta data_settings: lung ROI crop when a lung mask
is given, resizes, CLAHE; rawcnn.data.preprocess) and then the checkpoint's input contract
(preprocessing: a rawcnn.preprocessing.Preprocessing record, e.g. the training set's mean taken
off, or an imported model's ImageNet mean in BGR order).
"""
import json
import os

import numpy as np

from kernels import to_numpy
from .checkpoint import CheckpointError, load_checkpoint
from .layers import SoftmaxCrossEntropy
from .metrics import classification_report
from .plots import plot_roc


def forward_probs(net, images, labels=None, batch_size=32, to_input=None):
    """Class probabilities of `images`, and the mean loss when labels are given.

    images: (N, ...) array; labels: None or int (N,); to_input: None or a callable mapping a
    (B, ...) slice of images to the net's (B, C, H, W) input (default: cast to the net's dtype).
    Returns (probs float64 (N, K), loss float or None).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if labels is not None and np.shape(labels) != (len(images),):
        raise ValueError(f"labels of shape {np.shape(labels)} do not match images of shape {np.shape(images)}")
    if to_input is None and not np.issubdtype(np.asarray(images[:1]).dtype, np.floating):
        raise ValueError(f"images of dtype {np.asarray(images[:1]).dtype} need to_input (the checkpoint's input "
                         f"contract: rawcnn.train.make_to_input, or use evaluate_checkpoint)")
    dtype = net.dtype
    to_input = to_input or (lambda x: np.asarray(x).astype(dtype, copy=False))
    crit = SoftmaxCrossEntropy().to(net.be)
    sm = net.be.softmax
    probs, total = [], 0.0
    for i in range(0, len(images), int(batch_size)):
        logits = net.forward(to_input(images[i:i + batch_size]), train=False)  # (B, K)
        if labels is None:
            probs.append(to_numpy(sm.softmax_forward(logits)))
            continue
        total += crit.forward(logits, np.asarray(labels[i:i + batch_size])) * logits.shape[0]
        probs.append(to_numpy(crit.probs))
    probs = np.concatenate(probs).astype(np.float64)  # (N, K)
    if not np.isfinite(probs).all():
        rows = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        raise ValueError(f"the net gives non-finite probabilities for {rows.size} of {len(probs)} images (first: "
                         f"image {int(rows[0])}); its weights or the inputs are out of range")
    return probs, (total / len(images) if labels is not None else None)


def evaluate(net, images, labels, batch_size=32, to_input=None, threshold=0.5):
    """Loss and every metric of rawcnn.metrics on a labelled set.

    images: (N, ...) array; labels: int (N,). Returns classification_report's dict plus
    'loss' (float) and 'probabilities' (float64 (N, K) numpy array).
    """
    labels = np.asarray(labels)
    if len(images) == 0:
        raise ValueError("evaluate: no images")
    probs, loss = forward_probs(net, images, labels, batch_size, to_input)
    out = classification_report(labels, probs, threshold=threshold)
    out["loss"] = loss
    out["probabilities"] = probs
    return out


def _finite_or_null(v):
    """NaN and +-Inf (undefined metrics, the ROC's first threshold) as None, so the file is strict JSON."""
    if isinstance(v, dict):
        return {k: _finite_or_null(u) for k, u in v.items()}
    if isinstance(v, list):
        return [_finite_or_null(u) for u in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def save_report(result, out_dir, prefix="eval"):
    """Write `result` (from evaluate) as <prefix>.json and, for two classes, <prefix>_roc.png.

    Undefined values (NaN) and the ROC's +inf threshold are written as null. Returns the paths written.
    """
    from .fileio import atomic_open, check_targets
    paths = [os.path.join(out_dir, f"{prefix}.json")]
    check_targets(paths + ([os.path.join(out_dir, f"{prefix}_roc.png")] if result.get("roc") else []))
    with atomic_open(paths[0], "w") as fh:
        json.dump(_finite_or_null({k: v for k, v in result.items() if k != "probabilities"}), fh, indent=1)
    if result.get("roc"):
        paths.append(plot_roc(result["roc"]["fpr"], result["roc"]["tpr"], result["auc"],
                              os.path.join(out_dir, f"{prefix}_roc.png")))
    return paths


def _checkpoint_input(net, ck, path):
    """(data settings or None, to_input) recorded in checkpoint `ck`; CheckpointError when it has neither."""
    from .train import make_to_input
    settings = (ck.get("meta") or {}).get("data_settings")
    if ck.get("preprocessing") is None:
        raise CheckpointError(f"{path}: the checkpoint records no input preprocessing (it was trained on "
                              f"arrays, not on a prepared data set), so images cannot be fed to it the same way")
    return settings, make_to_input(net, ck["preprocessing"])


def evaluate_checkpoint(ckpt_path, data, split="test", batch_size=32, device="cpu", threshold=0.5):
    """Evaluate the checkpoint at `ckpt_path` on split `split` of a prepared data set.

    data: a path to a prepared HDF5 set or load_dataset's result. The checkpoint's input contract
    feeds the net. Returns evaluate()'s dict plus 'names' ((N,) the images' names) and 'split'.
    """
    from .data import load_dataset
    net, ck = load_checkpoint(ckpt_path, backend=device)
    _, to_input = _checkpoint_input(net, ck, ckpt_path)
    data = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    part = data.split(split)
    if len(part.labels) == 0:
        raise ValueError(f"split {split!r} of the data set is empty")
    out = evaluate(net, part.images, part.labels, batch_size=batch_size, to_input=to_input, threshold=threshold)
    out["names"], out["split"] = list(part.names), split
    return out


def predict(ckpt_path, image_paths, batch_size=32, device="cpu", lung_masks=None):
    """Class probabilities for image files, preprocessed as the checkpoint's training data was.

    image_paths: list of N image files (any format rawcnn.data.load_image reads);
    lung_masks: None, or a list of N entries, each a mask file, a tuple of mask files (their union,
    e.g. Montgomery's left and right lung) or None; without a mask the lung ROI crop is skipped.
    Returns probs: float64 (N, K), column k the probability of class k (class 1 = abnormal).
    """
    from .data import load_image, load_mask, preprocess_image
    paths = [os.fspath(p) for p in image_paths]
    if not paths:
        raise ValueError("predict: no image paths given")
    if lung_masks is not None and len(lung_masks) != len(paths):
        raise ValueError(f"lung_masks has {len(lung_masks)} entries for {len(paths)} images")
    net, ck = load_checkpoint(ckpt_path, backend=device)
    settings, to_input = _checkpoint_input(net, ck, ckpt_path)
    probs = []
    for i in range(0, len(paths), int(batch_size)):
        batch = []  # net inputs (1, C, H, W), one per image
        for j in range(i, min(i + int(batch_size), len(paths))):
            x = load_image(paths[j])  # (H, W) uint8
            if settings is not None:  # the prepared set's steps; an imported model's contract alone resizes
                m = lung_masks[j] if lung_masks is not None else None
                lung = load_mask([m] if isinstance(m, (str, os.PathLike)) else m, x.shape) if m else None
                x, _, _ = preprocess_image(x, lung, None, settings)  # (C, S, S) or (S, S)
            batch.append(to_input((x if x.ndim == 3 else x[None])[None]))
        probs.append(forward_probs(net, np.concatenate(batch), batch_size=len(batch))[0])
    return np.concatenate(probs)
