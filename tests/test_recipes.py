"""Training recipes: init parsing, LSUV, the recipe hooks (warm-up, clipping, select-by, class balance),
input contracts, stratified patient-wise folds, `rawcnn cv` end to end, and the hard synthetic set.
Tiny nets on 16x16 and 32x32 inputs."""
import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from rawcnn.data.synth import render_case
from rawcnn.engine import models
from rawcnn.engine.checkpoint import read_checkpoint
from rawcnn.engine.init import lsuv, orthonormal, parse_init
from rawcnn.training.cv import stratified_group_folds
from rawcnn.training.from_recipe import input_contract
from rawcnn.training.recipes import RECIPES, resolve
from rawcnn.training.train import Run, Trainer, train

SPEC = {"name": "tiny", "input": [1, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Conv2d", "name": "conv2", "out_channels": 8, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 16},
    {"type": "ReLU", "name": "relu3"},
    {"type": "Linear", "name": "fc2", "out_features": 2}]}
RECIPE = resolve("paper", batch_size=8, lr=0.02, patience=3, max_drops=1)  # no warm-up, clipping or balance
RUN = {"seed": 7, "progress": False, "device": "cpu", "log": lambda m: None}


def make_data(n_train=40, n_val=16, seed=0, frac1=0.5):
    """Noise images; class 1 has a brighter centre square."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    y = (rng.random(n) < frac1).astype(np.int64)
    y[:2], y[n_train:n_train + 2] = (0, 1), (0, 1)
    x = rng.standard_normal((n, 1, 16, 16)).astype(np.float32)  # (N, 1, 16, 16)
    x[y == 1, :, 4:12, 4:12] += 1.0
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def test_parse_init_and_resolve():
    assert parse_init("normal:0.01") == ("normal", 0.01) and parse_init("0.05") == ("normal", 0.05)
    assert parse_init("HE") == ("he",) and parse_init("lsuv") == ("lsuv",)
    for bad in ("xavier", "normal:-1", "normal:abc"):
        with pytest.raises(ValueError, match="--init"):
            parse_init(bad)
    st = resolve("paper", lr=0.5, select_by=None).as_dict()
    assert st["lr"] == 0.5 and st["select_by"] == "val-acc" and st["init"] == "normal:0.01"
    assert RECIPES["paper"].input_norm == "mean"
    with pytest.raises(ValueError, match="--recipe"):
        resolve("nope")
    with pytest.raises(ValueError, match="--input-norm"):
        resolve("default", input_norm="zscore")


def test_orthonormal_rows_and_columns():
    rng = np.random.default_rng(0)
    q = orthonormal(rng, 4, 9, dtype=np.float64)  # (4, 9): orthonormal rows
    np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-12)
    q = orthonormal(rng, 9, 4, dtype=np.float64)  # (9, 4): orthonormal columns
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-12)


def test_lsuv_gives_unit_variance_outputs_layer_by_layer():
    net = models.build(SPEC, seed=0, weight_std=0.01)
    x = np.random.default_rng(1).standard_normal((32, 1, 16, 16)).astype(np.float32) * 7 + 3  # badly scaled
    rows = lsuv(net, x, seed=0, tol=0.05)
    assert [r[0] for r in rows] == ["conv1", "conv2", "fc1", "fc2"]
    h = x
    for layer in net.layers:  # measured independently of lsuv's own loop
        h = layer.forward(h, train=False)
        if layer.kind in ("Conv2d", "Linear"):
            assert abs(h.var(dtype=np.float64) - 1) < 0.06, layer.name
            assert not np.any(layer.params["b"])


def test_warmup_ramps_the_learning_rate_per_step(tmp_path, monkeypatch):
    seen = []
    orig = Trainer.run_epoch

    def spy(self, bar):
        if not hasattr(self.opt, "spied"):
            step = self.opt.step

            def record():
                seen.append(self.opt.lr)
                step()
            self.opt.step, self.opt.spied = record, True
        return orig(self, bar)
    monkeypatch.setattr(Trainer, "run_epoch", spy)
    train(models.build(SPEC, seed=0, weight_std=0.1), make_data(), RECIPE.replace(epochs=2, warmup_epochs=1.0),
          Run(out_dir=tmp_path, **RUN))
    # 40 images, batch 8: 5 steps per epoch; lr 0.02 * t / 5 for t = 1..5, then 0.02
    np.testing.assert_allclose(seen, [0.004, 0.008, 0.012, 0.016, 0.02] + [0.02] * 5, rtol=1e-12)


def test_clipping_bounds_the_global_gradient_norm(tmp_path, monkeypatch):
    norms = []
    from rawcnn.engine.optim import SGD
    orig = SGD.step

    def spy(self):
        g = [dw for _, _, _, dw in self.net.parameters(trainable_only=True) if dw is not None]
        norms.append(np.sqrt(sum((d.astype(np.float64) ** 2).sum() for d in g)))
        orig(self)
    monkeypatch.setattr(SGD, "step", spy)
    train(models.build(SPEC, seed=0, weight_std=0.3), make_data(), RECIPE.replace(epochs=1, clip_norm=0.05),
          Run(out_dir=tmp_path, **RUN))
    assert len(norms) == 5 and max(norms) <= 0.05 * (1 + 1e-5)


def test_select_by_val_loss_keeps_the_lowest_loss_epoch(tmp_path, monkeypatch):
    script = iter([(0.9, 0.5), (0.5, 0.5), (0.7, 0.9), (0.6, 0.6)])  # (val_loss, val_acc)
    monkeypatch.setattr(Trainer, "validate", lambda self: next(script))
    r = train(models.build(SPEC, seed=0, weight_std=0.1), make_data(), RECIPE.replace(epochs=4, select_by="val-loss"),
              Run(out_dir=tmp_path, **RUN))
    assert r["best_epoch"] == 2 and read_checkpoint(tmp_path / "best.h5")["epoch"] == 2


def test_select_by_val_auc_records_a_real_auc(tmp_path):
    from sklearn.metrics import roc_auc_score

    from rawcnn.training.evaluate import forward_probs
    data = make_data()
    r = train(models.build(SPEC, seed=0, weight_std=0.1), data, RECIPE.replace(epochs=3, select_by="val-auc"),
              Run(out_dir=tmp_path, **RUN))
    aucs = [h["val_auc"] for h in r["history"]]
    assert r["best_epoch"] == 1 + int(np.argmax(aucs))
    from rawcnn.engine.checkpoint import load_checkpoint
    net, _ = load_checkpoint(tmp_path / "last.h5")
    p, _ = forward_probs(net, data[1][0])
    assert aucs[-1] == pytest.approx(roc_auc_score(data[1][1], p[:, 1]), abs=1e-9)


def test_balanced_sampling_and_class_weights(tmp_path, monkeypatch):
    data = make_data(n_train=60, frac1=0.15)
    y = data[0][1]
    batches = []
    orig = Trainer.run_epoch

    def spy(self, bar):
        out = orig(self, bar)
        batches.append(self.ys.copy())
        return out
    monkeypatch.setattr(Trainer, "run_epoch", spy)
    train(models.build(SPEC, seed=0, weight_std=0.1), data, RECIPE.replace(epochs=6, balance="sample"),
          Run(out_dir=tmp_path / "s", **RUN))
    drawn = np.concatenate(batches)
    assert y.mean() < 0.25 and 0.4 < drawn.mean() < 0.6  # minority drawn about half the time
    # class weights: each row's gradient scaled by N / (K * N_k), normalised over the batch
    tr = Trainer(models.build(SPEC, seed=0, weight_std=0.1), data,
                 RECIPE.replace(lr=0.01, momentum=0.9, weight_decay=0.0, patience=2, max_drops=1, balance="weight"),
                 Run(out_dir=tmp_path / "w", seed=0, log=print, progress=False))
    n1 = int(y.sum())
    w = np.array([y.size / (2 * (y.size - n1)), y.size / (2 * n1)])
    yb = np.array([0, 0, 0, 1])
    d = np.ones((4, 2), np.float32)
    expect = (w[yb] * 4 / w[yb].sum())[:, None] * d
    np.testing.assert_allclose(tr.hooks.dlogits(d, yb), expect, rtol=1e-6)


def test_input_contracts_by_hand():
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 8, 8)).astype(np.uint8)
    m, s = x.astype(np.float64).mean(), x.astype(np.float64).std()
    pp = input_contract("standardise", x, 8)
    out = pp.apply(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(out, (x.astype(np.float64) - m) / s, rtol=1e-4, atol=1e-4)
    out = input_contract("none", x, 8).apply(x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(out, x.astype(np.float32))
    out = input_contract("mean", x, 8).apply(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(out, x - x.astype(np.float64).mean(axis=(0, 2, 3))[None, :, None, None],
                               rtol=1e-4, atol=1e-3)


def test_folds_are_stratified_and_keep_patients_together():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(37, int), np.ones(23, int)]
    fold = stratified_group_folds(y, None, 5, rng)
    for c in (0, 1):
        counts = np.bincount(fold[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1, counts
    groups = np.repeat(np.arange(30), 2)  # two images per patient
    yg = np.repeat(np.r_[np.zeros(18, int), np.ones(12, int)], 2)
    fold = stratified_group_folds(yg, groups, 5, rng)
    for g in range(30):
        assert np.unique(fold[groups == g]).size == 1
    for c in (0, 1):
        counts = np.bincount(fold[yg == c], minlength=5)
        assert counts.max() - counts.min() <= 2, counts


def _tiny_set(tmp_path, spec, n, seed, difficulty=None):
    """A synthetic set of n radiographs prepared at 32 px (tmp_path/set.h5) and spec as tmp_path/tiny.json."""
    run = CliRunner()
    extra = ["--difficulty", difficulty] if difficulty else []
    r = run.invoke(main, ["data", "synth", "--n", n, "--size", 96, "--seed", seed, *extra, "--out",
                          str(tmp_path / "syn")])
    assert r.exit_code == 0, r.output
    r = run.invoke(main, ["data", "prepare", str(tmp_path / "syn"), "--out", str(tmp_path / "set.h5"),
                          "--input-size", 32, "--base-size", 0])
    assert r.exit_code == 0, r.output
    (tmp_path / "tiny.json").write_text(json.dumps(spec))
    return run


def test_cv_command_end_to_end(tmp_path, tiny_conv_pool_spec):
    from sklearn.metrics import roc_auc_score
    run = _tiny_set(tmp_path, tiny_conv_pool_spec, 30, 2, difficulty="hard")
    args = ["cv", "--data", str(tmp_path / "set.h5"), "--folds", 3, "--model", str(tmp_path / "tiny.json"),
            "--out", str(tmp_path / "cv"), "--epochs", 2, "--batch-size", 8, "--seed", 1]
    r = run.invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    assert "pooled out-of-fold (30 images)" in r.output and "per-fold AUC" in r.output
    with open(tmp_path / "cv" / "oof.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and len({row["name"] for row in rows}) == 30
    assert sorted({row["fold"] for row in rows}) == ["1", "2", "3"]
    rep = json.loads((tmp_path / "cv" / "cv.json").read_text())
    y = np.array([int(row["label"]) for row in rows])
    p = np.array([float(row["p_abnormal"]) for row in rows])
    assert rep["pooled"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-5)
    assert rep["pooled"]["accuracy"] == pytest.approx(np.mean((p >= 0.5) == y), abs=1e-9)
    lo, hi = rep["pooled"]["auc_ci95"]  # the pooled AUC's bootstrap interval, printed with it
    assert 0 <= lo <= rep["pooled"]["auc"] <= hi <= 1 and hi > lo
    assert f"95 % bootstrap interval {lo:.3f}-{hi:.3f}" in r.output
    assert (tmp_path / "cv" / "cv_roc.png").read_bytes()[:4] == b"\x89PNG"
    ck = read_checkpoint(tmp_path / "cv" / "fold_1" / "last.h5")
    assert ck["preprocessing"]["name"] == "standardise" and ck["meta"]["config"]["select_by"] == "val-loss"
    r = run.invoke(main, [str(a) for a in args])  # never replaces a finished cross-validation
    assert r.exit_code != 0 and "cv.json" in r.output
    _check_operating_points(tmp_path / "cv", tmp_path / "set.h5", rows, rep, seed=1, k=3, rule="youden")


def _check_operating_points(cv_dir, set_path, rows, rep, seed, k, rule):
    """Each fold's threshold is the rule's on its validation part (rebuilt here from the seed), the pooled metrics
    at those thresholds are recomputed from oof.csv, and the ROC reads agree with scikit-learn's ROC."""
    from sklearn.metrics import roc_curve as sk_roc

    from rawcnn.data import load_dataset
    from rawcnn.engine.checkpoint import load_checkpoint
    from rawcnn.training.cv import patients_of
    from rawcnn.training.evaluate import forward_probs
    from rawcnn.training.metrics import choose_threshold
    from rawcnn.training.train import make_to_input
    y = np.array([int(row["label"]) for row in rows])
    p = np.array([float(row["p_abnormal"]) for row in rows])
    t = np.array([float(row["threshold"]) for row in rows])
    fold = np.array([int(row["fold"]) for row in rows])
    for f in range(1, k + 1):
        assert np.unique(t[fold == f]).size == 1
        assert rep["folds"][f - 1]["threshold"] == pytest.approx(t[fold == f][0], abs=1e-6)
    pred = p >= t
    at = rep["pooled"]["at_threshold"]
    assert at["accuracy"] == pytest.approx(np.mean(pred == y), abs=1e-9)
    assert at["sensitivity"] == pytest.approx(pred[y == 1].mean(), abs=1e-9)
    assert at["specificity"] == pytest.approx((~pred[y == 0]).mean(), abs=1e-9)
    fpr, tpr, _ = sk_roc(y, p, drop_intermediate=False)
    assert rep["pooled"]["roc_reads"]["sensitivity_at_specificity"] == pytest.approx(tpr[fpr <= 0.1 + 1e-12].max())
    assert rep["pooled"]["roc_reads"]["specificity_at_sensitivity"] == pytest.approx(1 - fpr[tpr >= 0.9 - 1e-12].min())
    # every fold's threshold, chosen again on its validation part: the folds and the inner split from the seed
    data = load_dataset(set_path)
    allp = data.split("all")
    groups = patients_of(data)
    folds = stratified_group_folds(allp.labels, groups, k, np.random.default_rng(seed))
    for f in range(k):
        rest = np.flatnonzero(folds != f)
        inner = stratified_group_folds(allp.labels[rest], None if groups is None else groups[rest], 5,
                                       np.random.default_rng([seed, f]))
        val = rest[inner == 0]
        ckpt = cv_dir / f"fold_{f + 1}" / "best.h5"
        net, ck = load_checkpoint(ckpt if ckpt.exists() else ckpt.with_name("last.h5"), backend="cpu")
        vp, _ = forward_probs(net, allp.images[val], to_input=make_to_input(net, ck["preprocessing"]))
        assert rep["folds"][f]["threshold"] == pytest.approx(choose_threshold(allp.labels[val], vp[:, 1], rule),
                                                             abs=1e-12)
        with open(cv_dir / f"fold_{f + 1}" / "val.csv") as fh:  # the validation part's probabilities, kept
            kept = list(csv.DictReader(fh))
        assert [row["name"] for row in kept] == [str(allp.names[i]) for i in val]
        assert [int(row["label"]) for row in kept] == allp.labels[val].tolist()
        np.testing.assert_allclose([float(row["p_abnormal"]) for row in kept], vp[:, 1], atol=1e-6)


def test_cv_threshold_rule_is_checked_before_training(tmp_path):
    r = CliRunner().invoke(main, ["cv", "--data", __file__, "--out", str(tmp_path / "cv"),
                                  "--threshold-rule", "sensitivity=1.5"])
    assert r.exit_code != 0 and "threshold rule 'sensitivity=1.5'" in r.output
    assert not (tmp_path / "cv").exists()


def test_hard_synthetic_cases_have_one_lesion_and_wider_exposure():
    def cases(difficulty, abnormal):
        return [render_case(np.random.default_rng(i), 128, abnormal=abnormal, difficulty=difficulty) for i in range(12)]
    assert all(len(c.lesions) == 1 for c in cases("hard", True))
    assert max(len(c.lesions) for c in cases("standard", True)) > 1
    assert not any(c.lesions for c in cases("hard", False))

    def lung_means(difficulty):  # the exposure of each normal case: its mean lung intensity
        return [c.image[(c.right_lung | c.left_lung) > 0].mean() for c in cases(difficulty, False)]
    assert np.std(lung_means("hard")) > 1.5 * np.std(lung_means("standard"))
    with pytest.raises(ValueError, match="difficulty"):
        render_case(np.random.default_rng(0), 64, difficulty="extreme")


def test_search_and_train_take_the_recipe_flags(tmp_path, tiny_conv_pool_spec):
    run = _tiny_set(tmp_path, tiny_conv_pool_spec, 20, 4)
    r = run.invoke(main, ["search", "--space", '{"lr": {"log_uniform": [0.001, 0.01]}}', "--trials", "1",
                          "--data", str(tmp_path / "set.h5"), "--model", str(tmp_path / "tiny.json"), "--epochs", "1",
                          "--out", str(tmp_path / "s"), "--init", "lsuv", "--input-norm", "none",
                          "--select-by", "val-loss", "--balance", "weight"])
    assert r.exit_code == 0, r.output
    cfg = read_checkpoint(tmp_path / "s" / "trial_001" / "last.h5")
    assert cfg["preprocessing"]["name"] == "none"
    assert cfg["meta"]["config"]["select_by"] == "val-loss" and cfg["meta"]["config"]["balance"] == "weight"
    r = run.invoke(main, ["train", "--recipe", "paper", "--model", str(tmp_path / "tiny.json"), "--data",
                          str(tmp_path / "set.h5"), "--out", str(tmp_path / "t"), "--epochs", "1", "--lr", "0.002"])
    assert r.exit_code == 0, r.output
    ck = read_checkpoint(tmp_path / "t" / "last.h5")
    assert ck["preprocessing"]["name"] == "zero-center" and ck["lr"] == pytest.approx(0.002)
    assert ck["meta"]["config"]["select_by"] == "val-acc" and ck["meta"]["config"]["batch_size"] == 32
    r = run.invoke(main, ["train", "--data", str(tmp_path / "set.h5"), "--out", str(tmp_path / "u"),
                          "--init", "xavier"])
    assert r.exit_code != 0 and "--init" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("select_by, script, said", [
    ("val-loss", [(0.5, 0.5), (0.6, 0.9), (0.7, 0.9)], "validation loss has not improved on 0.5000 (epoch 1)"),
    ("val-acc", [(0.5, 0.75), (0.4, 0.5), (0.3, 0.5)], "validation accuracy has not improved on 0.7500 (epoch 1)"),
])
def test_plateau_messages_name_the_selection_metric(tmp_path, monkeypatch, select_by, script, said):
    script = iter(script)  # (val_loss, val_acc) per epoch
    monkeypatch.setattr(Trainer, "validate", lambda self: next(script))
    logs = []
    train(models.build(SPEC, seed=0, weight_std=0.1), make_data(), RECIPE.replace(epochs=3, select_by=select_by,
          patience=1), Run(out_dir=tmp_path, **{**RUN, "log": logs.append}))
    assert any(said in m for m in logs), logs


def test_plateau_messages_say_auc_when_it_selects(tmp_path, monkeypatch):
    aucs = iter([0.6111, 0.5, 0.55])  # the 0.6111: not k/21, so no accuracy

    def validate(self):
        self.val_auc = next(aucs)
        return 0.5, 0.5
    monkeypatch.setattr(Trainer, "validate", validate)
    logs = []
    train(models.build(SPEC, seed=0, weight_std=0.1), make_data(), RECIPE.replace(epochs=3, select_by="val-auc",
          patience=1), Run(out_dir=tmp_path, **{**RUN, "log": logs.append}))
    stalls = [m for m in logs if "has not improved" in m]
    assert stalls and all("validation AUC has not improved on 0.6111 (epoch 1)" in m for m in stalls), logs


# one lucky epoch (2) against a steady run: the means of the last 3 epochs keep epoch 6, the plain
# metric would keep epoch 2. AUC 0.5, 0.9, 0.5, 0.8, 0.8, 0.8 -> means 0.5, 0.7, 0.633, 0.733, 0.7, 0.8;
# loss 0.9, 0.3, 1.5, 0.6, 0.55, 0.5 -> means 0.9, 0.6, 0.9, 0.8, 0.883, 0.55
@pytest.mark.parametrize("select_by, values, message", [
    ("val-auc-smooth", [0.5, 0.9, 0.5, 0.8, 0.8, 0.8], "by validation AUC (mean of the last 3 epochs) 0.8000"),
    ("val-loss-smooth", [0.9, 0.3, 1.5, 0.6, 0.55, 0.5], "by validation loss (mean of the last 3 epochs) 0.5500")])
def test_select_by_smoothed_metric_takes_the_mean_of_the_last_three_epochs(tmp_path, monkeypatch, select_by,
                                                                           values, message):
    values = iter(values)

    def validate(self):
        if select_by == "val-auc-smooth":
            self.val_auc = next(values)
            return 0.5, 0.5
        self.val_auc = 0.5
        return next(values), 0.5
    monkeypatch.setattr(Trainer, "validate", validate)
    logs = []
    r = train(models.build(SPEC, seed=0, weight_std=0.1), make_data(),
              RECIPE.replace(epochs=6, select_by=select_by, patience=10),
              Run(out_dir=tmp_path, **{**RUN, "log": logs.append}))
    assert r["best_epoch"] == 6 and read_checkpoint(tmp_path / "best.h5")["epoch"] == 6
    assert any(message in m for m in logs), logs


def test_cv_init_from_starts_every_fold_from_the_checkpoint(tmp_path, tiny_conv_pool_spec):
    spec = tiny_conv_pool_spec
    run = _tiny_set(tmp_path, spec, 24, 3)
    from rawcnn.engine.checkpoint import save_checkpoint
    src = models.build(spec, seed=11, weight_std="he")  # the 'pretrained' weights: a seed no fold uses
    save_checkpoint(tmp_path / "pre.h5", src)
    args = ["cv", "--data", str(tmp_path / "set.h5"), "--folds", 2, "--model", str(tmp_path / "tiny.json"),
            "--epochs", 1, "--batch-size", 8, "--lr", "1e-9", "--warmup-epochs", 0, "--seed", 1]
    r = run.invoke(main, [str(a) for a in args + ["--init-from", str(tmp_path / "pre.h5"), "--out",
                                                   str(tmp_path / "cv")]])
    assert r.exit_code == 0, r.output
    assert "init from" in r.output
    w0 = src.state_dict()
    for f in (1, 2):  # lr 1e-9: one epoch leaves the start's weights, which came from pre.h5
        got = read_checkpoint(tmp_path / "cv" / f"fold_{f}" / "last.h5")["params"]
        np.testing.assert_allclose(got["conv1"]["w"], w0["conv1"]["w"], atol=1e-6)
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["init_from"] == str(tmp_path / "pre.h5")
    r = run.invoke(main, [str(a) for a in args + ["--out", str(tmp_path / "cv0")]])  # without it: the seed's init
    got = read_checkpoint(tmp_path / "cv0" / "fold_1" / "last.h5")["params"]
    assert np.abs(got["conv1"]["w"] - w0["conv1"]["w"]).max() > 1e-3
    big = models.build(dict(spec, input=[3, 48, 48]), seed=0, weight_std="he")
    save_checkpoint(tmp_path / "pre48.h5", big)
    r = run.invoke(main, [str(a) for a in args + ["--init-from", str(tmp_path / "pre48.h5"), "--out",
                                                   str(tmp_path / "cv48")]])
    assert r.exit_code == 1 and "takes 3x48x48 input, the data set holds 3x32x32" in r.output, r.output


def test_cv_repeats_summarise_runs_with_successive_seeds(tmp_path, tiny_conv_pool_spec):
    """--repeats 2: two whole cross-validations (seeds 3 and 4) in repeat_1/, repeat_2/; the summary's figures
    recomputed here from their cv.json and oof.csv files, the seed-averaged AUC by scikit-learn."""
    from sklearn.metrics import roc_auc_score
    run = _tiny_set(tmp_path, tiny_conv_pool_spec, 24, 5)
    args = ["cv", "--data", str(tmp_path / "set.h5"), "--folds", 2, "--model", str(tmp_path / "tiny.json"),
            "--out", str(tmp_path / "cv"), "--epochs", 1, "--batch-size", 8, "--seed", 3, "--repeats", 2,
            "--save-ensemble", "--threshold-rule", "specificity=0.8"]
    r = run.invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    reps = [json.loads((tmp_path / "cv" / f"repeat_{i}" / "cv.json").read_text()) for i in (1, 2)]
    assert [rep["seed"] for rep in reps] == [3, 4] and {rep["threshold_rule"] for rep in reps} == {"specificity=0.8"}
    oofs = []
    for i in (1, 2):
        with open(tmp_path / "cv" / f"repeat_{i}" / "oof.csv") as fh:
            rows = list(csv.DictReader(fh))
        _check_operating_points(tmp_path / "cv" / f"repeat_{i}", tmp_path / "set.h5", rows, reps[i - 1], seed=2 + i,
                                k=2, rule="specificity=0.8")
        oofs.append({row["name"]: (int(row["label"]), float(row["p_abnormal"])) for row in rows})
    assert set(oofs[0]) == set(oofs[1]) and len(oofs[0]) == 24
    names = sorted(oofs[0])
    y = np.array([oofs[0][n][0] for n in names])
    p = np.array([(oofs[0][n][1] + oofs[1][n][1]) / 2 for n in names])
    s = json.loads((tmp_path / "cv" / "repeats.json").read_text())
    means = [rep["auc_mean"] for rep in reps]
    assert s["auc_mean_of_means"] == pytest.approx(np.mean(means), abs=1e-12)
    assert s["auc_sd_of_means"] == pytest.approx(np.std(means, ddof=1), abs=1e-12)
    for m in ("sensitivity", "specificity"):
        assert s["at_threshold_mean"][m] == pytest.approx(np.mean([rep["pooled"]["at_threshold"][m] for rep in reps]))
    assert s["threshold_rule"] == "specificity=0.8"
    assert "specificity=0.8 on its validation part), mean of the 2" in r.output
    assert s["seed_averaged"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-5)
    with open(tmp_path / "cv" / "oof_mean.csv") as fh:
        got = {row["name"]: float(row["p_abnormal"]) for row in csv.DictReader(fh)}
    assert np.allclose([got[n] for n in names], p, atol=1e-6)
    assert "seed-averaged out-of-fold (24 images, each averaged over 2 models" in r.output
    from sklearn.metrics import roc_curve as sk_roc
    fpr, tpr, _ = sk_roc(y, p, drop_intermediate=False)
    reads = s["seed_averaged"]["roc_reads"]
    assert reads["sensitivity_at_specificity"] == pytest.approx(tpr[fpr <= 0.1 + 1e-12].max(), abs=1e-5)
    assert reads["specificity_at_sensitivity"] == pytest.approx(1 - fpr[tpr >= 0.9 - 1e-12].min(), abs=1e-5)
    from rawcnn.training.ensemble import read_ensemble
    members = read_ensemble(tmp_path / "cv" / "ensemble.json")
    assert [m.split("/")[-3:-1] for m in members] == [["repeat_1", "fold_1"], ["repeat_1", "fold_2"],
                                                       ["repeat_2", "fold_1"], ["repeat_2", "fold_2"]]


def test_bench_operating_points_reapplies_a_rule_from_val_csv_or_rebuilt_folds(tmp_path, tiny_conv_pool_spec, capsys):
    """bench/operating_points.py with the rule cv ran with gives cv.json's thresholds and pooled figures, from the
    folds' val.csv and, with val.csv gone, from folds rebuilt from the set and the seed."""
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location(
        "operating_points", pathlib.Path(__file__).parents[1] / "bench" / "operating_points.py")
    op = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(op)
    run = _tiny_set(tmp_path, tiny_conv_pool_spec, 30, 4, difficulty="hard")
    args = ["cv", "--data", str(tmp_path / "set.h5"), "--folds", 3, "--model", str(tmp_path / "tiny.json"),
            "--out", str(tmp_path / "cv"), "--epochs", 2, "--batch-size", 8, "--seed", 5,
            "--threshold-rule", "sensitivity=0.75"]
    r = run.invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "cv" / "cv.json").read_text())
    want = (" ".join(f"{f['threshold']:.3f}" for f in rep["folds"]),
            f"sensitivity {rep['pooled']['at_threshold']['sensitivity']:.3f}, "
            f"specificity {rep['pooled']['at_threshold']['specificity']:.3f}")
    capsys.readouterr()
    op.main([str(tmp_path / "cv"), "--rule", "sensitivity=0.75"])
    out = capsys.readouterr().out
    assert f"thresholds {want[0]};" in out and want[1] in out
    for f in (1, 2, 3):
        (tmp_path / "cv" / f"fold_{f}" / "val.csv").unlink()
    op.main([str(tmp_path / "cv"), "--rule", "sensitivity=0.75", "--data", str(tmp_path / "set.h5")])
    out = capsys.readouterr().out
    assert f"thresholds {want[0]};" in out and want[1] in out
    with pytest.raises(SystemExit, match="give --data"):
        op.main([str(tmp_path / "cv"), "--rule", "youden"])


def test_cv_threshold_falls_back_to_one_half_when_the_validation_part_has_one_class():
    from rawcnn.training.cv import _val_threshold
    said = []
    assert _val_threshold(np.array([0, 0, 0]), np.array([0.2, 0.7, 0.4]), "sensitivity=0.9", said.append) == 0.5
    assert said and "one class" in said[0] and "sensitivity=0.9" in said[0]
    assert _val_threshold(np.array([0, 1]), np.array([0.2, 0.7]), "youden", said.append) == pytest.approx(0.45)
    assert len(said) == 1
