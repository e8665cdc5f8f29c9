"""Classification metrics, written out (no scikit-learn): confusion matrix, accuracy, sensitivity,
specificity, precision, F1, ROC curve, ROC AUC and a bootstrap interval of the AUC.

Shapes: N samples, K classes; y_true, y_pred int (N,); scores float (N,) (the probability of
class 1), probs float (N, K).

Binary convention: class 1 is the positive class ("abnormal"), class 0 negative ("normal").
    TP = #(true 1, predicted 1)   FN = #(true 1, predicted 0)
    TN = #(true 0, predicted 0)   FP = #(true 0, predicted 1)
    sensitivity (recall, true-positive rate) = TP / (TP + FN)
    specificity (true-negative rate)         = TN / (TN + FP)
    precision (positive predictive value)    = TP / (TP + FP)
    F1 = 2 * precision * sensitivity / (precision + sensitivity)
A ratio whose denominator is 0 is NaN (undefined), never silently 0.

ROC AUC by ranks (the Mann-Whitney U statistic): rank all N scores ascending, ties sharing the
mean of the ranks they span; with n1 positives, n0 negatives and R1 the sum of the positives' ranks
    AUC = (R1 - n1 (n1 + 1) / 2) / (n1 n0)
which is the probability that a random positive scores above a random negative, a tie counting 1/2.
The ROC curve has one point per distinct score threshold t (predict 1 when score >= t), from
(0, 0) at t = +inf to (1, 1) at the lowest score.
The AUC's interval (bootstrap_auc_ci) is the percentile bootstrap: resample images (or whole
patients) with replacement within each class, take the AUC of each resample, read the quantiles.

Operating points. An AUC does not say what a model does at the one threshold a reader uses.
choose_threshold picks a threshold on one set of scores (in `rawcnn cv`, a fold's validation part)
by a rule, to be applied to other images:
    youden            the ROC point of largest sensitivity + specificity - 1 (the highest threshold
                      among ties)
    sensitivity=S     the highest threshold whose sensitivity is >= S (e.g. 0.9: WHO's 2014 target
                      product profile for a TB triage test asks sensitivity >= 0.90 with
                      specificity >= 0.70)
    specificity=S     the lowest threshold whose specificity is >= S
The threshold returned lies halfway between the chosen score and the next lower distinct score
(the same decisions on the scores it was chosen on; the widest margin to both neighbours).
sensitivity_at_specificity and specificity_at_sensitivity read the ROC's vertices: the best
sensitivity among thresholds with specificity >= S, and the converse. Read off the scores they are
scored on, they are descriptive (the threshold was chosen on those very images), not a held-out
operating point.
"""
import numpy as np


def _labels(y, name="y_true"):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {y.shape}")
    if y.size and not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.all(y == np.round(y)):
            raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return y.astype(np.int64)


def _pair(y_true, other, other_name):
    y_true = _labels(y_true)
    other = np.asarray(other)
    if other.shape != y_true.shape:
        raise ValueError(f"y_true of shape {y_true.shape} and {other_name} of shape {other.shape} must match")
    return y_true, other


def _ratio(num, den):
    return float(num) / float(den) if den else float("nan")


def confusion_matrix(y_true, y_pred, num_classes=2):
    """Counts cm[t, p] of samples with true class t predicted as p.

    y_true, y_pred: int (N,), values in [0, num_classes)
    Returns cm: int64 (num_classes, num_classes), rows true, columns predicted.
    """
    y_true, y_pred = _pair(y_true, y_pred, "y_pred")
    y_pred = _labels(y_pred, "y_pred")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes}): min {y.min()}, max {y.max()}")
    cm = np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2)  # (K*K,)
    return cm.reshape(num_classes, num_classes).astype(np.int64)


def accuracy(y_true, y_pred):
    """Fraction of samples with y_pred == y_true (NaN for N = 0). y_true, y_pred: int (N,)."""
    y_true, y_pred = _pair(y_true, y_pred, "y_pred")
    return _ratio(np.sum(y_true == y_pred), y_true.size)


def _binary_counts(y_true, y_pred):
    """(TP, FN, TN, FP) for class 1 positive."""
    cm = confusion_matrix(y_true, y_pred, 2)  # (2, 2)
    return int(cm[1, 1]), int(cm[1, 0]), int(cm[0, 0]), int(cm[0, 1])


def sensitivity(y_true, y_pred):
    """TP / (TP + FN): recall of class 1 (abnormal). y_true, y_pred: int (N,) in {0, 1}."""
    tp, fn, _, _ = _binary_counts(y_true, y_pred)
    return _ratio(tp, tp + fn)


def specificity(y_true, y_pred):
    """TN / (TN + FP): recall of class 0 (normal). y_true, y_pred: int (N,) in {0, 1}."""
    _, _, tn, fp = _binary_counts(y_true, y_pred)
    return _ratio(tn, tn + fp)


def precision(y_true, y_pred):
    """TP / (TP + FP) for class 1. y_true, y_pred: int (N,) in {0, 1}."""
    tp, _, _, fp = _binary_counts(y_true, y_pred)
    return _ratio(tp, tp + fp)


def f1_score(y_true, y_pred):
    """2 TP / (2 TP + FP + FN), the harmonic mean of precision and sensitivity, for class 1."""
    tp, fn, _, fp = _binary_counts(y_true, y_pred)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _check_scores(y_true, scores):
    y_true, scores = _pair(y_true, scores, "scores")
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (found NaN or Inf)")
    if not np.all((y_true == 0) | (y_true == 1)):
        raise ValueError(f"ROC needs binary labels 0/1, got values {np.unique(y_true).tolist()}")
    n1 = int(np.sum(y_true == 1))
    n0 = y_true.size - n1
    if n1 == 0 or n0 == 0:
        raise ValueError(f"ROC needs both classes; y_true has {n1} positives and {n0} negatives")
    return y_true, scores, n1, n0


def average_ranks(a):
    """1-based ranks of a (N,) in ascending order, tied values sharing the mean of their ranks.

    Returns ranks: float64 (N,).
    """
    a = np.asarray(a)
    order = np.argsort(a, kind="mergesort")                          # (N,)
    sorted_a = a[order]                                              # (N,)
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])   # first index of each tie group
    ends = np.r_[starts[1:], a.size]                                  # one past its last index
    mean_rank = (starts + 1 + ends) / 2.0                             # mean of ranks starts+1 .. ends
    ranks = np.empty(a.size, dtype=np.float64)                        # (N,)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(y_true, scores):
    """Area under the ROC curve by the rank formula (ties count 1/2).

    y_true: int (N,) in {0, 1}, both present; scores: float (N,), higher = more likely class 1
    Returns a float in [0, 1].
    """
    y_true, scores, n1, n0 = _check_scores(y_true, scores)
    r1 = average_ranks(scores)[y_true == 1].sum()
    return float((r1 - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def bootstrap_auc_ci(y_true, scores, groups=None, n_boot=2000, level=0.95, seed=0):
    """Percentile bootstrap interval of the AUC: (low, high) at `level`.

    Each of n_boot resamples draws, with replacement and within each class separately (so both
    classes are always present and keep their counts), whole groups when `groups` (N,) is given
    (a patient's images stay together, as the folds keep them), else single images; the AUC of
    every resample is taken by roc_auc, and the interval is their (1 - level)/2 and (1 + level)/2
    quantiles. A group's class is its most frequent label. seed: the generator's seed.
    """
    y_true, scores, _, _ = _check_scores(y_true, scores)
    if not 0 < level < 1 or int(n_boot) < 1:
        raise ValueError(f"bootstrap_auc_ci: need 0 < level < 1 and n_boot >= 1, got {level!r}, {n_boot!r}")
    g = np.arange(y_true.size) if groups is None else np.asarray(groups)
    if g.shape != y_true.shape:
        raise ValueError(f"bootstrap_auc_ci: groups {g.shape} must have the shape of y_true {y_true.shape}")
    ids, inv = np.unique(g, return_inverse=True)                      # (G,), (N,)
    members = [np.flatnonzero(inv == i) for i in range(ids.size)]    # the images of each group
    g_label = np.array([np.bincount(y_true[m], minlength=2).argmax() for m in members])  # (G,)
    by_class = [np.flatnonzero(g_label == c) for c in (0, 1)]
    rng = np.random.default_rng(seed)
    aucs = np.empty(int(n_boot))                                      # (n_boot,)
    for b in range(aucs.size):
        pick = np.concatenate([rng.choice(c, size=c.size, replace=True) for c in by_class])
        rows = np.concatenate([members[i] for i in pick])
        yb = y_true[rows]
        aucs[b] = roc_auc(yb, scores[rows]) if 0 < yb.sum() < yb.size else np.nan
    aucs = aucs[np.isfinite(aucs)]
    a = (1 - level) / 2
    return float(np.quantile(aucs, a)), float(np.quantile(aucs, 1 - a))


def roc_curve(y_true, scores):
    """ROC points, one per distinct threshold (predict 1 when score >= threshold).

    y_true: int (N,) in {0, 1}, both present; scores: float (N,)
    Returns (fpr, tpr, thresholds): float64 (T+1,) each, T distinct scores; the first point is
    (0, 0) with threshold +inf, thresholds then decrease and the last point is (1, 1).
    """
    y_true, scores, n1, n0 = _check_scores(y_true, scores)
    order = np.argsort(-scores, kind="mergesort")                   # (N,) highest score first
    s, y = scores[order], y_true[order]                              # (N,) each
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])              # last index of each distinct score
    tp = np.cumsum(y)[last]                                          # (T,) positives with score >= t
    fp = (last + 1) - tp                                             # (T,) negatives with score >= t
    tpr = np.r_[0.0, tp / n1]                                        # (T+1,)
    fpr = np.r_[0.0, fp / n0]                                        # (T+1,)
    thresholds = np.r_[np.inf, s[last]]                              # (T+1,)
    return fpr, tpr, thresholds


def parse_threshold_rule(rule):
    """'youden', 'sensitivity=S' or 'specificity=S' (0 < S <= 1) -> (kind, S or None); else ValueError."""
    text = str(rule).strip().lower()
    if text == "youden":
        return "youden", None
    kind, sep, value = text.partition("=")
    if sep and kind in ("sensitivity", "specificity"):
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if 0 < v <= 1:
            return kind, v
    raise ValueError(f"threshold rule {rule!r}: use youden, sensitivity=S or specificity=S with 0 < S <= 1")


def choose_threshold(y_true, scores, rule="youden"):
    """A threshold t (predict 1 when score >= t) chosen on (y_true, scores) by `rule` (module docstring).

    y_true: int (N,) in {0, 1}, both present; scores: float (N,); rule: see parse_threshold_rule.
    Returns a float: halfway between the chosen distinct score and the next lower one (the lowest score
    itself when the rule keeps every image positive; just above the highest when it keeps none).
    """
    kind, target = parse_threshold_rule(rule)
    fpr, tpr, thr = roc_curve(y_true, scores)  # (T+1,) each; point 0 is t = +inf (nothing positive)
    tol = 1e-12  # k/n against a target typed in decimal
    if kind == "youden":
        J = (tpr - fpr)[1:]
        j = 1 + int(np.flatnonzero(J >= J.max() - tol)[0])  # the highest threshold among ties (2/3 vs 1 - 1/3)
    elif kind == "sensitivity":
        j = int(np.flatnonzero(tpr >= target - tol)[0])  # never point 0 (tpr 0 < S); the last has tpr 1
    else:
        j = int(np.flatnonzero(1 - fpr >= target - tol)[-1])  # point 0 has specificity 1: always found
    if j == 0:  # not even the highest score can be called positive
        return float(np.nextafter(thr[1], np.inf))
    return float(thr[j]) if j == thr.size - 1 else float((thr[j] + thr[j + 1]) / 2)


def sensitivity_at_specificity(y_true, scores, target):
    """The highest sensitivity among the ROC's thresholds whose specificity is >= target (descriptive)."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    return float(tpr[1 - fpr >= target - 1e-12].max())


def specificity_at_sensitivity(y_true, scores, target):
    """The highest specificity among the ROC's thresholds whose sensitivity is >= target (descriptive)."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    return float((1 - fpr)[tpr >= target - 1e-12].max())


def classification_report(y_true, probs, threshold=0.5):
    """All metrics from class probabilities.

    y_true: int (N,); probs: float (N, K). For K = 2 the prediction is class 1 when
    probs[:, 1] >= threshold; for K > 2 it is the argmax (and only accuracy and the confusion
    matrix are given). Returns a dict of floats, the confusion matrix as nested lists, and for
    K = 2 the ROC curve as lists (auc and roc are None when y_true holds one class only).
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = _labels(y_true)
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
        raise ValueError(f"probs must be (N, K) with N = len(y_true) = {y_true.shape[0]}, got {probs.shape}")
    K = probs.shape[1]
    y_pred = (probs[:, 1] >= threshold).astype(np.int64) if K == 2 else np.argmax(probs, axis=1)  # (N,)
    out = {"n": int(y_true.size), "accuracy": accuracy(y_true, y_pred),
           "confusion_matrix": confusion_matrix(y_true, y_pred, K).tolist()}
    if K == 2:
        out.update(threshold=float(threshold), sensitivity=sensitivity(y_true, y_pred),
                   specificity=specificity(y_true, y_pred), precision=precision(y_true, y_pred),
                   f1=f1_score(y_true, y_pred), auc=None, roc=None)
        if 0 < np.sum(y_true == 1) < y_true.size:
            fpr, tpr, thr = roc_curve(y_true, probs[:, 1])
            out["auc"] = roc_auc(y_true, probs[:, 1])
            out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}
    return out
