"""Metrics against values worked out by hand (in the comments), evaluate() against an independent
NumPy computation, and, when scikit-learn is installed, against scikit-learn."""
import json

import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.training.evaluate import evaluate, save_report
from rawcnn.training.metrics import (
    accuracy,
    average_ranks,
    choose_threshold,
    classification_report,
    confusion_matrix,
    f1_score,
    parse_threshold_rule,
    precision,
    roc_auc,
    roc_curve,
    sensitivity,
    sensitivity_at_specificity,
    specificity,
    specificity_at_sensitivity,
)

BACKEND = "cpu"

# index:       0  1  2  3  4  5  6  7
Y_TRUE = [1, 1, 1, 0, 0, 0, 0, 1]
Y_PRED = [1, 0, 1, 0, 1, 0, 0, 1]
# TP = {0, 2, 7} = 3, FN = {1} = 1, TN = {3, 5, 6} = 3, FP = {4} = 1


def test_binary_metrics_by_hand():
    assert confusion_matrix(Y_TRUE, Y_PRED).tolist() == [[3, 1], [1, 3]]
    assert accuracy(Y_TRUE, Y_PRED) == 6 / 8
    assert sensitivity(Y_TRUE, Y_PRED) == 3 / 4
    assert specificity(Y_TRUE, Y_PRED) == 3 / 4
    assert precision(Y_TRUE, Y_PRED) == 3 / 4
    assert f1_score(Y_TRUE, Y_PRED) == 0.75


def test_unbalanced_metrics_by_hand():
    # y_true 1 0 0 0 1, y_pred 1 1 0 0 0: TP 1, FP 1, TN 2, FN 1
    y_true, y_pred = [1, 0, 0, 0, 1], [1, 1, 0, 0, 0]
    assert sensitivity(y_true, y_pred) == 1 / 2
    assert specificity(y_true, y_pred) == 2 / 3
    assert precision(y_true, y_pred) == 1 / 2
    assert f1_score(y_true, y_pred) == 2 / (2 + 1 + 1)  # 2TP / (2TP + FP + FN)
    assert accuracy(y_true, y_pred) == 3 / 5


def test_undefined_ratios_are_nan():
    # nothing predicted abnormal: precision 0/0; no abnormal case at all: sensitivity 0/0
    assert np.isnan(precision([1, 0], [0, 0]))
    assert np.isnan(sensitivity([0, 0], [0, 1]))
    assert np.isnan(f1_score([0, 0], [0, 0]))


def test_multiclass_confusion_matrix_by_hand():
    cm = confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 1, 1], num_classes=3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match=r"y_pred has labels outside \[0, 2\)"):
        confusion_matrix([0, 1], [0, 2])


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_auc_by_hand_without_ties():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3/4
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(y, s) == 0.75
    fpr, tpr, thr = roc_curve(y, s)
    # thresholds inf, .8, .4, .35, .1: (fpr, tpr) = (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    assert thr.tolist() == [np.inf, 0.8, 0.4, 0.35, 0.1]
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1]
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert np.trapezoid(tpr, fpr) == 0.75


def test_auc_with_a_tie_counts_half():
    # positives 0.5, 0.9 vs negatives 0.5, 0.2: 0.5=0.5 tie (1/2), 0.5>0.2, 0.9>0.5, 0.9>0.2 -> 3.5/4
    y, s = [0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]
    assert roc_auc(y, s) == 0.875
    fpr, tpr, thr = roc_curve(y, s)
    # the tied score is one threshold: (0,0) (0,.5) then both 0.5s at once (.5,1), then (1,1)
    assert fpr.tolist() == [0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1]
    assert np.trapezoid(tpr, fpr) == 0.875


def test_auc_needs_both_classes_and_finite_scores():
    with pytest.raises(ValueError, match="0 negatives"):
        roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0, 1], [0.2, np.nan])
    with pytest.raises(ValueError, match=r"shape \(2,\) and scores of shape \(3,\)"):
        roc_auc([0, 1], [0.2, 0.3, 0.4])


def test_auc_brute_force_pairs_on_random_scores_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)  # few distinct values: many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(pairs / (pos.size * neg.size), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(y, s), abs=1e-12)


def test_against_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 2)
    p = (s >= 0.5).astype(int)
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert sensitivity(y, p) == pytest.approx(skm.recall_score(y, p))
    assert precision(y, p) == pytest.approx(skm.precision_score(y, p))
    assert f1_score(y, p) == pytest.approx(skm.f1_score(y, p))
    np.testing.assert_array_equal(confusion_matrix(y, p), skm.confusion_matrix(y, p))


def test_report_threshold():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    r = classification_report([0, 1, 1, 1], probs, threshold=0.5)
    # predicted 0 1 0 1: TP 2, FN 1, TN 1, FP 0
    assert r["confusion_matrix"] == [[1, 0], [1, 2]]
    assert r["sensitivity"] == 2 / 3 and r["specificity"] == 1.0 and r["precision"] == 1.0
    assert r["auc"] == 1.0  # every positive scores above the negative
    r = classification_report([0, 1, 1, 1], probs, threshold=0.25)
    assert r["sensitivity"] == 1.0 and r["confusion_matrix"] == [[1, 0], [0, 3]]


def test_evaluate_matches_numpy_on_a_linear_net(tmp_path):
    spec = {"name": "lin", "input": [1, 2, 2], "layers": [
        {"type": "Flatten", "name": "flatten"}, {"type": "Linear", "name": "fc", "out_features": 2}]}
    net = models.build(spec, seed=0, dtype=np.float64, weight_std=1.0).to(BACKEND)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((11, 1, 2, 2))
    y = np.r_[np.zeros(5, int), np.ones(6, int)]
    # independent: logits = x W^T + b, softmax, mean cross-entropy
    w, b = net["fc"].params["w"], net["fc"].params["b"]
    z = x.reshape(11, 4) @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = evaluate(net, x, y, batch_size=4)
    np.testing.assert_allclose(r["probabilities"], p, rtol=1e-12)
    assert r["loss"] == pytest.approx(-np.log(p[np.arange(11), y]).mean(), rel=1e-12)
    pred = (p[:, 1] >= 0.5).astype(int)
    assert r["accuracy"] == np.mean(pred == y)
    pos, neg = p[y == 1, 1], p[y == 0, 1]
    assert r["auc"] == pytest.approx(np.mean(pos[:, None] > neg[None, :]), abs=1e-12)
    paths = save_report(r, tmp_path)
    report = json.loads(open(paths[0]).read())
    assert report["roc"]["thresholds"][0] is None and report["accuracy"] == r["accuracy"]
    assert open(paths[1], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_bootstrap_auc_interval_covers_the_true_auc_about_95_percent_of_the_time():
    """Scores N(0, 1) for negatives and N(d, 1) for positives have AUC = Phi(d / sqrt(2)); over 100
    simulated sets of 40 + 40 the 95 % interval should hold it about 95 times (binomial sd ~2)."""
    from math import erf, sqrt

    from rawcnn.training.metrics import bootstrap_auc_ci
    d = 1.0
    truth = 0.5 * (1 + erf(d / sqrt(2) / sqrt(2)))  # Phi(d / sqrt 2) = 0.760
    rng = np.random.default_rng(0)
    hits, widths = 0, []
    for t in range(100):
        y = np.r_[np.zeros(40, int), np.ones(40, int)]
        s = np.r_[rng.standard_normal(40), d + rng.standard_normal(40)]
        lo, hi = bootstrap_auc_ci(y, s, n_boot=300, seed=t)
        hits += lo <= truth <= hi
        widths.append(hi - lo)
    assert 85 <= hits <= 100, hits
    assert 0.1 < np.mean(widths) < 0.3  # the AUC's sd at n = 40 + 40 is about 0.05: width ~0.2


def test_bootstrap_auc_interval_properties():
    from rawcnn.training.metrics import bootstrap_auc_ci
    y = np.array([0, 0, 0, 1, 1, 1])
    assert bootstrap_auc_ci(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])) == (1.0, 1.0)  # perfectly ranked
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = y + rng.standard_normal(200)
    a = bootstrap_auc_ci(y, s, n_boot=200, seed=3)
    assert a == bootstrap_auc_ci(y, s, n_boot=200, seed=3)  # the seed decides
    assert a != bootstrap_auc_ci(y, s, n_boot=200, seed=4)
    # whole patients resampled: two identical images per patient widen nothing when groups say so,
    # but counting them as independent narrows the interval (the reason to resample patients)
    y2, s2, g2 = np.repeat(y, 2), np.repeat(s, 2), np.repeat(np.arange(200), 2)
    by_patient = bootstrap_auc_ci(y2, s2, groups=g2, n_boot=400, seed=5)
    by_image = bootstrap_auc_ci(y2, s2, n_boot=400, seed=5)
    assert (by_patient[1] - by_patient[0]) > 1.2 * (by_image[1] - by_image[0])
    with pytest.raises(ValueError):
        bootstrap_auc_ci(y, s, level=1.5)
    with pytest.raises(ValueError):
        bootstrap_auc_ci(y, s, groups=np.arange(3))


# Operating points. Six images, scores descending: label 1 1 0 1 0 0 at scores .9 .8 .7 .6 .4 .2.
#   t     tp fp  sens  spec   J = sens + spec - 1
#   .9     1  0  1/3    1     1/3
#   .8     2  0  2/3    1     2/3   <- youden (first maximum); next lower score .7: t = .75
#   .7     2  1  2/3   2/3    1/3
#   .6     3  1   1    2/3    2/3   (ties J; lower threshold, not taken)
#   .4     3  2   1    1/3
#   .2     3  3   1     0
OP_Y = [1, 1, 0, 1, 0, 0]
OP_S = [0.9, 0.8, 0.7, 0.6, 0.4, 0.2]


def test_choose_threshold_by_hand():
    assert choose_threshold(OP_Y, OP_S, "youden") == pytest.approx(0.75)
    assert choose_threshold(OP_Y, OP_S, "sensitivity=0.9") == pytest.approx(0.5)  # first sens >= .9 at .6
    assert choose_threshold(OP_Y, OP_S, "sensitivity=0.6") == pytest.approx(0.75)  # 2/3 at .8
    assert choose_threshold(OP_Y, OP_S, "specificity=1") == pytest.approx(0.75)  # the lowest with spec 1: .8
    assert choose_threshold(OP_Y, OP_S, "specificity=0.5") == pytest.approx(0.5)  # spec 2/3 down to .6
    assert choose_threshold(OP_Y, OP_S, "sensitivity=1") == pytest.approx(0.5)
    assert choose_threshold([1, 0, 1], [0.9, 0.5, 0.2], "sensitivity=1") == 0.2  # all positive: the lowest score
    t = choose_threshold([0, 1], [0.8, 0.6], "specificity=1")  # the top score is a negative: none positive
    assert t > 0.8 and not np.any(np.array([0.8, 0.6]) >= t)


def test_sensitivity_and_specificity_read_off_the_roc_by_hand():
    assert sensitivity_at_specificity(OP_Y, OP_S, 0.9) == pytest.approx(2 / 3)
    assert sensitivity_at_specificity(OP_Y, OP_S, 0.6) == pytest.approx(1.0)
    assert specificity_at_sensitivity(OP_Y, OP_S, 0.9) == pytest.approx(2 / 3)
    assert specificity_at_sensitivity(OP_Y, OP_S, 0.5) == pytest.approx(1.0)


def test_parse_threshold_rule():
    assert parse_threshold_rule("youden") == ("youden", None)
    assert parse_threshold_rule(" Sensitivity=0.9 ") == ("sensitivity", 0.9)
    assert parse_threshold_rule("specificity=1") == ("specificity", 1.0)
    for bad in ("", "yuoden", "sensitivity", "sensitivity=", "sensitivity=0", "specificity=1.5", "sens=0.9",
                "sensitivity=nan", "sensitivity=abc"):
        with pytest.raises(ValueError, match="threshold rule"):
            parse_threshold_rule(bad)


def _by_counting(y, s, t):
    pred = s >= t
    return pred[y == 1].mean(), (~pred[y == 0]).mean()


@pytest.mark.parametrize("seed", range(6))
def test_operating_points_against_brute_force(seed):
    """Every distinct score as a threshold, sensitivity and specificity by counting: the rules' choice is the
    best candidate (the first in descending order among ties), and the threshold returned makes the same calls."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y = rng.integers(0, 2, n)
    y[:2] = (0, 1)
    s = np.round(rng.random(n), int(rng.integers(1, 3)))  # ties
    cands = np.unique(s)[::-1]  # descending
    counts = np.array([_by_counting(y, s, t) for t in cands])  # (T, 2): sensitivity, specificity
    for rule, pick in (("youden", lambda c: int(np.flatnonzero(c.sum(1) >= c.sum(1).max() - 1e-12)[0])),
                       ("sensitivity=0.8", lambda c: int(np.flatnonzero(c[:, 0] >= 0.8)[0])),
                       ("specificity=0.7", lambda c: int(np.flatnonzero(c[:, 1] >= 0.7)[-1]))):
        t = choose_threshold(y, s, rule)
        j = pick(counts)
        np.testing.assert_array_equal(s >= t, s >= cands[j])
        lower = cands[j + 1] if j + 1 < cands.size else None
        assert t == pytest.approx(cands[j] if lower is None else (cands[j] + lower) / 2)
    for target in (0.5, 0.9, 1.0):
        assert sensitivity_at_specificity(y, s, target) == pytest.approx(
            max([0.0] + [c[0] for c in counts if c[1] >= target - 1e-12]))
        assert specificity_at_sensitivity(y, s, target) == pytest.approx(
            max(c[1] for c in counts if c[0] >= target - 1e-12))
