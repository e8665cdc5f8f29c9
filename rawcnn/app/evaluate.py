"""`rawcnn evaluate`: the metrics of a checkpoint on a split of a prepared set (rawcnn.training.evaluate)."""
import json

import numpy as np

from rawcnn.files.jsonsafe import finite_or_null
from rawcnn.training.evaluate import evaluate_checkpoint, save_report


def evaluate_command(checkpoint, data_path, options, *, device="cpu", note=print):
    """evaluate_checkpoint, its class note through `note`, and with --out the eval.json and ROC PNG
    (save_report). options: the command's options by name: split, threshold, out, classes (a
    comma-separated string or None), conv_algo. Returns (result dict, written paths)."""
    o = options
    res = evaluate_checkpoint(checkpoint, data_path, split=o["split"], device=device, threshold=o["threshold"],
                              classes=o["classes"].split(",") if o["classes"] else None, conv_algo=o["conv_algo"])
    if res.get("class_note"):
        note(res["class_note"])
    return res, (save_report(res, o["out"]) if o["out"] else [])


def format_result(res, checkpoint, split, data_path, as_json=False):
    """What `rawcnn evaluate` prints: the metrics as JSON (NaN as null), or a title line and format_metrics."""
    if as_json:
        return json.dumps(finite_or_null({k: v for k, v in res.items()
                                          if k not in ("roc", "probabilities", "names", "class_note")}))
    return f"{checkpoint} on the {split} split of {data_path}\n" + format_metrics(res)


def format_metrics(result):
    """A few lines of text for evaluate()'s dict."""
    keys = ("n", "accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}" if np.isfinite(v) else "undefined (no case of the class it needs)"
        return str(v)
    lines = [f"{k:12s} {fmt(result.get(k))}" for k in keys if k in result]
    cm = result.get("confusion_matrix")
    if cm is not None:
        cm = np.asarray(cm)
        names = result.get("class_names") or [f"class {k}" for k in range(len(cm))]
        w = max(6, *(len(n) for n in names))
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        lines.append(" " * (w + 2) + " ".join(f"{n:>{w}s}" for n in names))
        lines += [f"  {names[k]:>{w}s}" + "".join(f" {int(v):{w}d}" for v in row) for k, row in enumerate(cm)]
    return "\n".join(lines)
