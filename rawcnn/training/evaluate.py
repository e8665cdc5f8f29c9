"""Evaluate a trained net on a labelled set, and predict class probabilities for image files.

Shapes: N images, B batch, C, H, W the net's input, K classes; images (N, C, H, W) float (or
what `to_input` turns into that), labels (N,) int, logits and probs (B, K) / (N, K).

    probs[n] = softmax(net.forward(x[n], train=False))        forward only, in batches
    loss     = -1/N sum_n log probs[n, label_n]                 (the training loss, same kernel)
    metrics  = rawcnn.training.metrics.classification_report(labels, probs)   (class 1 = abnormal)

What the net is fed is what it was trained on: `predict` reads each image file, runs the data
set's preprocessing recorded in the checkpoint (meta data_settings: lung ROI crop when a lung mask
is given, resizes, CLAHE; rawcnn.data.preprocess) and then the checkpoint's input contract
(preprocessing: a rawcnn.data.preprocessing.Preprocessing record, e.g. the training set's mean taken
off, or an imported model's ImageNet mean in BGR order).
"""
import copy
import json
import os

import numpy as np

from kernels import to_numpy
from rawcnn.data import load_dataset
from rawcnn.data.contract import class_names_of, contract_of, file_to_input, match_classes, settings_note
from rawcnn.engine.checkpoint import CheckpointError, load_checkpoint
from rawcnn.engine.conv_algo import plan
from rawcnn.engine.layers import SoftmaxCrossEntropy
from rawcnn.files.fileio import atomic_open, check_targets
from rawcnn.files.jsonsafe import finite_or_null
from rawcnn.files.validate import InputError
from rawcnn.training.ensemble import member_paths
from rawcnn.training.metrics import classification_report
from rawcnn.training.plots import plot_roc
from rawcnn.training.train import make_to_input


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
                         f"contract: rawcnn.training.train.make_to_input, or use evaluate_checkpoint)")
    dtype = net.dtype
    to_input = to_input or (lambda x: np.asarray(x).astype(dtype, copy=False))
    if labels is None:
        return net.predict(images, int(batch_size), to_input=to_input).astype(np.float64), None
    crit = SoftmaxCrossEntropy().to(net.be)
    probs, total = [], 0.0
    with net.streaming():  # each batch's logits are read before the next forward overwrites them
        for i in range(0, len(images), int(batch_size)):
            logits = net.forward(to_input(images[i:i + batch_size]), train=False)  # (B, K)
            total += crit.forward(logits, np.asarray(labels[i:i + batch_size])) * logits.shape[0]
            probs.append(to_numpy(crit.probs))
    probs = np.concatenate(probs).astype(np.float64)  # (N, K)
    if not np.isfinite(probs).all():
        rows = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        raise ValueError(f"the net gives non-finite probabilities for {rows.size} of {len(probs)} images (first: "
                         f"image {int(rows[0])}); its weights or the inputs are out of range")
    return probs, (total / len(images) if labels is not None else None)


def evaluate(net, images, labels, batch_size=32, to_input=None, threshold=0.5):
    """Loss and every metric of rawcnn.training.metrics on a labelled set.

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


_finite_or_null = finite_or_null  # the old private name


def save_report(result, out_dir, prefix="eval"):
    """Write `result` (from evaluate) as <prefix>.json and, for two classes, <prefix>_roc.png.

    Undefined values (NaN) and the ROC's +inf threshold are written as null. Returns the paths written.
    """
    paths = [os.path.join(out_dir, f"{prefix}.json")]
    check_targets(paths + ([os.path.join(out_dir, f"{prefix}_roc.png")] if result.get("roc") else []))
    with atomic_open(paths[0], "w") as fh:
        json.dump(finite_or_null({k: v for k, v in result.items() if k != "probabilities"}), fh, indent=1)
    if result.get("roc"):
        names = result.get("class_names") or ["class 0", "class 1"]
        paths.append(plot_roc(result["roc"]["fpr"], result["roc"]["tpr"], result["auc"],
                              os.path.join(out_dir, f"{prefix}_roc.png"),
                              title=f"ROC, positive class {names[1]!r} (vs {names[0]!r})"))
    return paths


def _checkpoint_input(net, ck, path):
    """(data settings or None, to_input) recorded in checkpoint `ck`; CheckpointError when it has neither."""
    settings = (ck.get("meta") or {}).get("data_settings")
    if ck.get("preprocessing") is None:
        raise CheckpointError(f"{path}: the checkpoint records no input preprocessing (it was trained on "
                              f"arrays, not on a prepared data set), so images cannot be fed to it the same way")
    return settings, make_to_input(net, ck["preprocessing"])


def evaluate_checkpoint(ckpt_path, data, split="test", batch_size=32, device="cpu", threshold=0.5, classes=None,
                        conv_algo="auto"):
    """Evaluate the checkpoint at `ckpt_path` on split `split` of a prepared data set.

    data: a path to a prepared HDF5 set or load_dataset's result. The checkpoint's input contract
    feeds the net. The set's class names must be the checkpoint's, in its order, or `classes`
    (the set's names in the checkpoint's output order) maps them (rawcnn.data.contract.match_classes).
    Returns evaluate()'s dict plus 'names' ((N,) the images' names), 'split', 'class_names' and
    'class_note' (a remapping done, or '').
    """
    members = open_members(ckpt_path, device, batch_size, conv_algo)  # [(net, checkpoint, to_input)]
    net, ck, to_input = members[0]
    data = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    if classes:
        data = copy.copy(data)  # labels remapped on a copy: the caller's set stays as it was
    note = match_classes(data, contract_of(ck).class_names, classes)
    part = data.split(split)
    if len(part.labels) == 0:
        raise ValueError(f"split {split!r} of the data set is empty")
    if len(members) == 1:
        out = evaluate(net, part.images, part.labels, batch_size=batch_size, to_input=to_input, threshold=threshold)
    else:  # an ensemble: its members' probabilities averaged (rawcnn.training.ensemble)
        probs = np.mean([forward_probs(n, part.images, part.labels, batch_size, t)[0] for n, _, t in members],
                        axis=0)  # (N, K), each member's as evaluate() computes them
        out = classification_report(np.asarray(part.labels), probs, threshold=threshold)
        p_true = probs[np.arange(len(probs)), np.asarray(part.labels)]  # (N,)
        out["loss"] = float(-np.mean(np.log(np.maximum(p_true, np.finfo(np.float64).tiny))))
        out["probabilities"] = probs
    out["names"], out["split"] = list(part.names), split
    out["class_names"] = class_names_of(ck, out["probabilities"].shape[1])
    out["class_note"] = "\n".join(n for n in (note, settings_note(contract_of(ck).settings, data.settings)) if n)
    return out


def predict(ckpt_path, image_paths, batch_size=32, device="cpu", lung_masks=None, log=None, conv_algo="auto"):
    """Class probabilities for image files, through the checkpoint's input contract (rawcnn.data.contract).

    image_paths: list of N image files (PNG, JPEG, 16-bit PNG, DICOM, ...);
    lung_masks: None, or a list of N entries, each a mask file, a tuple of mask files (their union,
    e.g. Montgomery's left and right lung) or None. For a checkpoint trained on lung-ROI crops an
    image without a mask is cropped by the lung-field locator (rawcnn.data.locator), and
    log(message) says so. Returns probs: float64 (N, K), column k the probability of class k.
    """
    paths = [os.fspath(p) for p in image_paths]
    if not paths:
        raise ValueError("predict: no image paths given")
    if lung_masks is not None and len(lung_masks) != len(paths):
        raise ValueError(f"lung_masks has {len(lung_masks)} entries for {len(paths)} images")
    members = open_members(ckpt_path, device, 1, conv_algo)  # one image at a time
    contract = contract_of(members[0][1])  # how a file becomes a stored image: every member's (open_members)
    per_member = [[] for _ in members]  # per member, (B, K) probabilities per batch
    for i in range(0, len(paths), int(batch_size)):
        inputs = [[] for _ in members]  # per member, (1, C, H, W) net inputs, one per image
        for j in range(i, min(i + int(batch_size), len(paths))):
            x, stored, note = file_to_input(paths[j], contract, members[0][2],
                                            lung_masks[j] if lung_masks is not None else None)  # (1, C, H, W)
            if note and log is not None:
                log(f"{paths[j]}: {note}")
            inputs[0].append(x)
            for k, (_, _, to_input) in enumerate(members[1:], start=1):  # the file decoded once; each its own step 3
                inputs[k].append(np.array(to_input(stored[None])))  # a copy: to_input may hand out a kept buffer
        for probs, (net, _, _), x in zip(per_member, members, inputs, strict=True):
            probs.append(forward_probs(net, np.concatenate(x), batch_size=len(x))[0])
    per_member = [np.concatenate(p) for p in per_member]  # (N, K) each
    return per_member[0] if len(per_member) == 1 else np.mean(per_member, axis=0)


def open_members(ckpt_path, device, batch_size, conv_algo):
    """[(net, checkpoint dict, to_input)] of a checkpoint (one) or of an ensemble file's members, each planned
    for batch_size. An ensemble's members must share the first one's class names and data settings (how an
    image file becomes a stored image); each keeps its own normalisation (its fold's training split)."""
    out = []
    for path in member_paths(ckpt_path):
        net, ck = load_checkpoint(path, backend=device)
        plan(net, batch_size, conv_algo)
        _, to_input = _checkpoint_input(net, ck, path)
        if out:
            first = out[0][1]
            mine, theirs = contract_of(ck), contract_of(first)
            for what, a, b in (("class names", mine.class_names, theirs.class_names),
                               ("data settings", mine.settings, theirs.settings),
                               ("decoding", mine.decode, theirs.decode)):
                if a != b:
                    raise InputError(f"{ckpt_path}: member {path} has other {what} than the first member "
                                     f"({a!r} against {b!r}); an ensemble's members must agree")
        out.append((net, ck, to_input))
    return out
