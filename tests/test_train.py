"""train(): exact resume, Ctrl-C, NaN stop, the plateau schedule inside a run, the files it writes,
and checkpoints that survive a SIGKILL while being written. Tiny nets on 16x16 inputs."""
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from rawcnn.data import Augmenter, load_dataset, prepare, read_montgomery, synthesize
from rawcnn.engine import models
from rawcnn.engine.checkpoint import load_checkpoint, read_checkpoint
from rawcnn.training.evaluate import evaluate_checkpoint, predict
from rawcnn.training.recipes import resolve
from rawcnn.training.train import Run, Trainer, train

BACKEND = "cpu"

SPEC = {"name": "tiny", "input": [1, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Conv2d", "name": "conv2", "out_channels": 8, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu2"},
    {"type": "MaxPool2d", "name": "pool2", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 16},
    {"type": "ReLU", "name": "relu3"},
    {"type": "Dropout", "name": "drop1", "p": 0.5},
    {"type": "Linear", "name": "fc2", "out_features": 2}]}
RECIPE = resolve("paper", batch_size=8, lr=0.02, patience=1, max_drops=3)  # momentum 0.9, L2 5e-4, no hooks
RUN = dict(seed=7, progress=False, device=BACKEND)


def make_data(n_train=40, n_val=16, seed=0):
    """Noise images; class 1 has a brighter centre square (learnable in a few epochs)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 16, 16)).astype(np.float32)  # (N, 1, 16, 16)
    x[y == 1, :, 4:12, 4:12] += 1.0
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def shift():
    """The paper's augmentation (random rotations and translations) with its own seeded generator."""
    return Augmenter(max_translate=0.1, max_rotate_deg=10.0, rng=3)


def new_net(seed=0):
    return models.build(SPEC, seed=seed, weight_std=0.1).to(BACKEND)


def no_times(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in history]


def assert_same_state(dir_a, dir_b):
    a, b = read_checkpoint(os.path.join(dir_a, "last.h5")), read_checkpoint(os.path.join(dir_b, "last.h5"))
    assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"]
    for part in ("params", "momentum"):
        for name in a[part]:
            for key in a[part][name]:
                np.testing.assert_array_equal(a[part][name][key], b[part][name][key], err_msg=f"{part} {name}/{key}")
    assert a["rng_state"] == b["rng_state"] and a["dropout_rng"] == b["dropout_rng"]
    assert no_times(a["history"]) == no_times(b["history"])
    assert a["meta"]["schedule"] == b["meta"]["schedule"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 4-epoch run (the reference the resumed runs must equal)."""
    out = tmp_path_factory.mktemp("straight")
    r = train(new_net(), make_data(), RECIPE.replace(epochs=4), Run(out_dir=out, log=lambda m: None, **RUN),
              augment=shift())
    assert r["status"] == "completed" and r["epoch"] == 4
    return out, r


def test_resume_after_epoch_2_is_bit_for_bit(straight, tmp_path):
    out, _ = straight
    r = train(new_net(), make_data(), RECIPE.replace(epochs=2), Run(out_dir=tmp_path, log=lambda m: None, **RUN),
              augment=shift())
    assert r["epoch"] == 2
    # a net with other initial weights: everything must come from last.h5
    logs = []
    r = train(new_net(seed=123), make_data(), RECIPE.replace(epochs=4),
              Run(out_dir=tmp_path, resume=True, log=logs.append, **RUN), augment=shift())
    assert r["status"] == "completed" and any("resuming from" in m and "after epoch 2" in m for m in logs)
    assert_same_state(out, tmp_path)


def test_ctrl_c_keeps_a_loadable_checkpoint_and_resumes_exactly(straight, tmp_path):
    out, _ = straight

    def interrupt(epoch, batch, loss):
        if (epoch, batch) == (2, 3):
            raise KeyboardInterrupt

    logs = []
    r = train(new_net(), make_data(), RECIPE.replace(epochs=4), Run(out_dir=tmp_path, log=logs.append, **RUN),
              augment=shift(), on_batch=interrupt)
    assert r["status"] == "interrupted"
    assert "during epoch 2" in r["reason"] and "holds epoch 1" in r["reason"]
    assert any(r["reason"] in m for m in logs)
    net, ck = load_checkpoint(tmp_path / "last.h5", backend=BACKEND)
    assert ck["epoch"] == 1 and len(ck["history"]) == 1
    r = train(new_net(seed=5), make_data(), RECIPE.replace(epochs=4),
              Run(out_dir=tmp_path, resume=True, log=lambda m: None, **RUN), augment=shift())
    assert r["status"] == "completed"
    assert_same_state(out, tmp_path)


def test_ctrl_c_in_the_first_epoch_leaves_the_initial_weights(tmp_path):
    def interrupt(epoch, batch, loss):
        raise KeyboardInterrupt

    net = new_net()
    w0 = net["fc2"].params["w"].copy()
    r = train(net, make_data(), RECIPE.replace(epochs=3), Run(out_dir=tmp_path, log=lambda m: None, **RUN),
              on_batch=interrupt)
    assert r["status"] == "interrupted" and "holds epoch 0" in r["reason"]
    _, ck = load_checkpoint(tmp_path / "last.h5")
    assert ck["epoch"] == 0
    np.testing.assert_array_equal(ck["params"]["fc2"]["w"], w0)


def test_nan_loss_stops_naming_epoch_and_batch_and_keeps_the_last_good_checkpoint(tmp_path):
    net = new_net()

    def poison(epoch, batch, loss):
        if (epoch, batch) == (2, 1):
            net["fc2"].params["w"][0, 0] = np.nan  # the next forward gives a NaN loss

    r = train(net, make_data(), RECIPE.replace(epochs=4), Run(out_dir=tmp_path, log=lambda m: None, **RUN),
              on_batch=poison)
    assert r["status"] == "diverged"
    assert "loss became nan at epoch 2, batch 2" in r["reason"] and "holds epoch 1" in r["reason"]
    _, ck = load_checkpoint(tmp_path / "last.h5")
    assert ck["epoch"] == 1
    assert all(np.isfinite(v).all() for d in ck["params"].values() for v in d.values())
    with open(tmp_path / "history.csv") as fh:
        assert [row["epoch"] for row in csv.DictReader(fh)] == ["1"]


def test_plateau_schedule_inside_a_run(tmp_path, monkeypatch):
    # scripted validation accuracies, patience 2, one drop:
    # e1 .5 best | e2 .6 best | e3 .6 wait 1 | e4 .6 wait 2 -> lr 0.02 -> 0.002 | e5 .55 wait 1 | e6 .6 wait 2 -> stop
    script = iter([0.5, 0.6, 0.6, 0.6, 0.55, 0.6, 0.9, 0.9])
    monkeypatch.setattr(Trainer, "validate", lambda self: (0.7, next(script)))
    logs = []
    recipe = RECIPE.replace(patience=2, max_drops=1, epochs=10)
    r = train(new_net(), make_data(), recipe, Run(out_dir=tmp_path, log=logs.append, **RUN))
    assert r["status"] == "stopped" and r["epoch"] == 6 and r["best_epoch"] == 2
    np.testing.assert_allclose([h["lr"] for h in r["history"]], [0.02] * 4 + [0.002] * 2, rtol=1e-12)
    drop = [m for m in logs if m.startswith("lr drop:")]
    stop = [m for m in logs if m.startswith("stop:")]
    assert len(drop) == 1 and "0.6000 (epoch 2) for 2 epochs: lr 0.02 -> 0.002" in drop[0]
    assert len(stop) == 1 and "after the last of 1 lr drops" in stop[0]
    assert read_checkpoint(tmp_path / "best.h5")["epoch"] == 2
    assert read_checkpoint(tmp_path / "last.h5")["meta"]["status"] == "stopped"
    logs.clear()
    r = train(new_net(), make_data(), recipe, Run(out_dir=tmp_path, resume=True, log=logs.append, **RUN))
    assert r["status"] == "stopped" and "nothing to resume" in logs[0]


def test_files_and_checkpoint_contents(tmp_path):
    r = train(new_net(), make_data(), RECIPE.replace(epochs=3), Run(out_dir=tmp_path, log=lambda m: None, **RUN))
    with open(tmp_path / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert [float(row["val_acc"]) for row in rows] == [h["val_acc"] for h in r["history"]]
    assert open(tmp_path / "curves.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    best = read_checkpoint(tmp_path / "best.h5")
    accs = [h["val_acc"] for h in r["history"]]
    assert best["epoch"] == int(np.argmax(accs)) + 1 == r["best_epoch"]  # the first epoch with the top accuracy
    assert set(best["momentum"]) == {"conv1", "conv2", "fc1", "fc2"}
    assert best["preprocessing"] is None  # float arrays: fed as they are


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny prepared set: 24 synthetic radiographs, lung ROI crop, CLAHE, 16x16, one channel."""
    root = tmp_path_factory.mktemp("prepared")
    synthesize(root / "src", 24, size=64, seed=0, progress=False)
    prepare(root / "src", root / "set.h5", settings={"base_size": None, "input_size": 16, "channels": 1},
            progress=False)
    return root, load_dataset(root / "set.h5")


def test_prepared_set_gets_the_zero_center_contract_and_predict_repeats_it(prepared, tmp_path):
    root, data = prepared
    r = train(new_net(), data, RECIPE.replace(epochs=2), Run(out_dir=tmp_path, log=lambda m: None, **RUN))
    assert r["status"] == "completed"
    ck = read_checkpoint(tmp_path / "last.h5")
    mean = data.split("train").images.astype(np.float64).mean()  # grey: one mean for all channels
    assert ck["preprocessing"]["name"] == "zero-center"
    np.testing.assert_allclose(ck["preprocessing"]["mean"], [mean] * 3, rtol=1e-12)
    assert ck["meta"]["data_settings"] == data.settings and ck["meta"]["class_names"] == ["normal", "abnormal"]
    # predict() from the source files and their lung masks = the net on the stored images minus the mean
    val = data.split("val")
    records = {rec.name: rec for rec in read_montgomery(root / "src")}
    probs = predict(tmp_path / "last.h5", [records[n].path for n in val.names],
                    lung_masks=[records[n].lung_masks for n in val.names], batch_size=4)
    net, _ = load_checkpoint(tmp_path / "last.h5")
    z = net.forward(val.images.astype(np.float32) - np.float32(mean)).astype(np.float64)  # (M, 2)
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(probs, p / p.sum(1, keepdims=True), rtol=1e-5)
    ev = evaluate_checkpoint(tmp_path / "last.h5", root / "set.h5", split="val")
    np.testing.assert_allclose(ev["probabilities"], probs, rtol=1e-6)
    assert ev["names"] == list(val.names) and ev["n"] == len(val.labels)


def test_bad_input_raises_naming_shapes(tmp_path):
    (x, y), val = make_data()
    with pytest.raises(ValueError, match=r"images of shape \(40, 1, 16, 16\) and labels of shape \(39,\)"):
        train(new_net(), ((x, y[:-1]), val), RECIPE.replace(epochs=1), Run(out_dir=tmp_path, **RUN))
    with pytest.raises(ValueError, match=r"inputs of shape \(1, 16, 16\).*gives \(1, 8, 8\)"):
        train(new_net(), ((x[..., :8, :8], y), (val[0][..., :8, :8], val[1])), RECIPE.replace(epochs=1),
              Run(out_dir=tmp_path, **RUN))
    with pytest.raises(ValueError, match="nothing to resume"):
        train(new_net(), ((x, y), val), RECIPE.replace(epochs=1), Run(out_dir=tmp_path / "empty", resume=True, **RUN))


def test_checkpoint_records_the_recipe_and_a_checkpoint_without_one_resumes(tmp_path):
    recipe = RECIPE.replace(epochs=1)
    train(new_net(), make_data(), recipe, Run(out_dir=tmp_path, log=lambda m: None, **RUN))
    meta = read_checkpoint(tmp_path / "last.h5")["meta"]
    assert meta["recipe"] == recipe.as_dict() and meta["config"]["batch_size"] == recipe.batch_size
    with h5py.File(tmp_path / "last.h5", "r+") as f:  # a checkpoint written before the recipe was recorded
        del meta["recipe"]
        f.attrs["meta"] = json.dumps(meta)
    logs = []
    r = train(new_net(), make_data(), RECIPE.replace(epochs=2), Run(out_dir=tmp_path, resume=True, log=logs.append,
                                                                  **RUN))
    assert r["status"] == "completed" and not [m for m in logs if m.startswith("warning")], logs
    assert read_checkpoint(tmp_path / "last.h5")["meta"]["recipe"] == RECIPE.replace(epochs=2).as_dict()


def test_resume_refuses_other_data(tmp_path):
    train(new_net(), make_data(), RECIPE.replace(epochs=1), Run(out_dir=tmp_path, log=lambda m: None, **RUN))
    with pytest.raises(ValueError, match="trained on other data"):
        train(new_net(), make_data(seed=1), RECIPE.replace(epochs=2),
              Run(out_dir=tmp_path, resume=True, log=lambda m: None, **RUN))


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from rawcnn.engine import models
    from rawcnn.engine.checkpoint import TrainingState, save_checkpoint
    spec = {"name": "big", "input": [1, 32, 32], "layers": [
        {"type": "Flatten", "name": "flatten"}, {"type": "Linear", "name": "fc", "out_features": 512}]}
    net = models.build(spec, seed=0)
    i = 0
    while True:
        i += 1
        for layer, key, w, _ in net.parameters():
            w[...] = i  # every value tells which write it came from
        state = TrainingState(epoch=i, momentum={"fc": {"w": net["fc"].params["w"] * 0 + i}})
        save_checkpoint(sys.argv[1], net, state=state)
        if i == 1:
            print("first", flush=True)
""")


def test_sigkill_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.h5"
    rng = np.random.default_rng(0)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "first"
        time.sleep(float(rng.uniform(0.05, 0.4)))  # a random moment in the write loop
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        ck = read_checkpoint(path)
        e = ck["epoch"]
        assert e >= 1
        assert (ck["params"]["fc"]["w"] == e).all() and (ck["params"]["fc"]["b"] == e).all()
        assert (ck["momentum"]["fc"]["w"] == e).all()
