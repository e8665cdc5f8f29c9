"""Random search: space validation (errors name the key), sampling, a 3-trial search on a tiny net, and
trials that differ only in their sampled values."""
import csv
import json

import numpy as np
import pytest

from rawcnn.engine.checkpoint import read_checkpoint
from rawcnn.training.recipes import resolve
from rawcnn.training.search import load_space, random_search, sample, validate_space
from rawcnn.training.train import Run

BACKEND = "cpu"

SPEC = {"name": "tiny", "input": [1, 12, 12], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2},
    {"type": "ReLU", "name": "relu1"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 8},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Dropout", "name": "drop1", "p": 0.5},
    {"type": "Linear", "name": "fc2", "out_features": 2}]}

SPACE = {"lr": {"log_uniform": [1e-3, 1e-1]}, "momentum": {"uniform": [0.8, 0.99]},
         "weight_decay": {"log_uniform": [1e-5, 1e-3]}, "dropout": {"uniform": [0.3, 0.6]},
         "batch_size": {"choice": [8, 16]}}


@pytest.mark.parametrize("space, match", [
    ({"learning_rate": 0.01}, "unknown key 'learning_rate'; known keys: lr, momentum"),
    ({"lr": {"log_uniform": [0, 1e-2]}}, r"'lr': each bound of 'log_uniform' must be > 0, got 0"),
    ({"lr": {"uniform": [1e-2, 1e-3]}}, r"'lr': 'uniform' needs \[lo, hi\] with lo < hi"),
    ({"momentum": {"uniform": [0.8, 1.2]}}, r"'momentum': each bound of 'uniform' must be in \[0, 1\)"),
    ({"dropout": {"gaussian": [0.5, 0.1]}}, "'dropout': give a number or one of"),
    ({"batch_size": {"choice": [16, 2.5]}}, "'batch_size': each choice must be an integer >= 1, got 2.5"),
    ({"batch_size": {"uniform": [8, 32]}}, "'batch_size': use"),
    ({"batch_size": {"choice": []}}, "'batch_size': 'choice' needs a non-empty list"),
    ({"weight_decay": -1e-4}, "'weight_decay': the fixed value must be >= 0"),
    ([1, 2], "must be a JSON object"),
])
def test_invalid_spaces_name_the_key(space, match):
    with pytest.raises(ValueError, match=match):
        validate_space(space)


def test_load_space_reads_json_text_and_files(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE))
    assert load_space(str(path)) == SPACE == load_space(json.dumps(SPACE))
    with pytest.raises(ValueError, match="not JSON"):
        load_space("{lr: 1}")


def test_samples_lie_in_their_ranges_and_repeat_with_the_seed():
    rng = np.random.default_rng(0)
    draws = [sample(SPACE, rng) for _ in range(400)]
    lr = np.array([d["lr"] for d in draws])
    assert lr.min() >= 1e-3 and lr.max() <= 1e-1
    # log-uniform on [1e-3, 1e-1]: half the draws below the geometric midpoint 1e-2 (binomial sd 10 of 200)
    assert 160 < np.sum(lr < 1e-2) < 240
    assert all(0.8 <= d["momentum"] <= 0.99 and 0.3 <= d["dropout"] <= 0.6 for d in draws)
    assert {d["batch_size"] for d in draws} == {8, 16} and all(type(d["batch_size"]) is int for d in draws)
    assert sample(SPACE, np.random.default_rng(0)) == draws[0]
    assert sample({"momentum": 0.9}, rng) == {"momentum": 0.9}


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 48)
    x = rng.standard_normal((48, 1, 12, 12)).astype(np.float32)  # (N, 1, 12, 12)
    x[y == 1, :, 3:9, 3:9] += 1.5
    return (x[:32], y[:32]), (x[32:], y[32:])


def test_search_ranks_trials_and_saves_the_best(tmp_path):
    logs = []
    rows = random_search(SPACE, 3, make_data(), resolve("paper", epochs=2),
                         Run(out_dir=tmp_path, seed=1, progress=False, log=logs.append, device=BACKEND), model=SPEC)
    accs = [r["best_val_acc"] for r in rows]
    assert len(rows) == 3 and accs == sorted(accs, reverse=True) and [r["rank"] for r in rows] == [1, 2, 3]
    # the trials' configurations are the seed's first three draws, in trial order
    rng = np.random.default_rng(1)
    expect = [sample(SPACE, rng) for _ in range(3)]
    for row in rows:
        assert {k: row[k] for k in SPACE} == expect[row["trial"] - 1]
        ck = read_checkpoint(tmp_path / f"trial_{row['trial']:03d}" / "last.h5")
        assert ck["epoch"] == 2 and ck["lr"] == row["lr"]  # a constant learning rate within a trial
        drop = [e for e in ck["spec"]["layers"] if e["type"] == "Dropout"][0]
        assert drop["p"] == row["dropout"]
        hist = ck["history"]
        assert row["best_val_acc"] == max(h["val_acc"] for h in hist)
    with open(tmp_path / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [int(t["trial"]) for t in table] == [r["trial"] for r in rows]
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["trial"] == rows[0]["trial"] and best["config"] == {k: rows[0][k] for k in SPACE}
    assert sum(m.startswith("trial ") for m in logs) == 3


def test_dropout_needs_a_dropout_layer(tmp_path):
    spec = {**SPEC, "layers": [e for e in SPEC["layers"] if e["type"] != "Dropout"]}
    with pytest.raises(ValueError, match="'dropout': model 'tiny' has no Dropout layer"):
        random_search({"dropout": 0.5}, 1, make_data(), resolve("paper", epochs=5),
                      Run(out_dir=tmp_path, progress=False, log=lambda m: None, device=BACKEND), model=spec)


def test_trials_with_the_same_values_train_identically_even_with_augmentation(tmp_path):
    # a space of fixed values: both trials must end with the same weights (same init, shuffling,
    # dropout and augmentation streams)
    from rawcnn.data import Augmenter
    space = {"lr": 0.02, "momentum": 0.9, "batch_size": 8}
    rows = random_search(space, 2, make_data(), resolve("paper", epochs=1),
                         Run(out_dir=tmp_path, seed=3, progress=False, log=lambda m: None, device=BACKEND), model=SPEC,
                         augment=Augmenter(0.1, 10.0, rng=0))
    a, b = (read_checkpoint(tmp_path / f"trial_{t:03d}" / "last.h5") for t in (1, 2))
    for name in a["params"]:
        for key in a["params"][name]:
            np.testing.assert_array_equal(a["params"][name][key], b["params"][name][key])
    assert rows[0]["best_val_acc"] == rows[1]["best_val_acc"]


@pytest.mark.parametrize("select_by", ["val-auc", "val-loss"])
def test_search_ranks_by_the_recipes_selection_metric(tmp_path, select_by):
    st = resolve("default", init="he", select_by=select_by, augment=False, warmup_epochs=0.0, clip_norm=0.0, epochs=2)
    rows = random_search(SPACE, 3, make_data(), st,
                         Run(out_dir=tmp_path, seed=2, progress=False, log=lambda m: None, device=BACKEND), model=SPEC)
    key = "val_auc" if select_by == "val-auc" else "val_loss"
    pick = max if select_by == "val-auc" else min
    for row in rows:  # each trial's score is its history's best value of the metric, read from disk
        hist = read_checkpoint(tmp_path / f"trial_{row['trial']:03d}" / "last.h5")["history"]
        assert row["select_by"] == select_by and row["best_score"] == pytest.approx(pick(h[key] for h in hist))
    scores = [r["best_score"] for r in rows]
    assert scores == sorted(scores, reverse=select_by == "val-auc")
    assert json.loads((tmp_path / "best.json").read_text())["trial"] == rows[0]["trial"]


def test_values_the_space_leaves_out_come_from_the_recipe_given(tmp_path):
    # an explicit --lr / --momentum / --weight-decay / --batch-size must reach every trial that does not sample it
    recipe = resolve("default", init="he", augment=False, warmup_epochs=0.0, clip_norm=0.0, epochs=1,
                     lr=0.0123, momentum=0.77, weight_decay=3e-4, batch_size=4)
    random_search({"dropout": 0.4}, 1, make_data(), recipe,
                  Run(out_dir=tmp_path, seed=0, progress=False, log=lambda m: None, device=BACKEND), model=SPEC)
    ck = read_checkpoint(tmp_path / "trial_001" / "last.h5")
    used = ck["meta"]["recipe"]
    assert ck["lr"] == pytest.approx(0.0123) and used["lr"] == pytest.approx(0.0123)
    assert (used["momentum"], used["weight_decay"], used["batch_size"]) == (0.77, 3e-4, 4)
    assert ck["meta"]["config"]["momentum"] == 0.77 and ck["meta"]["config"]["batch_size"] == 4
