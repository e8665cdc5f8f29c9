"""Weight averaging in train() (`--average-epochs`): the saved params are the exponential moving average
of the weights SGD trained, recomputed here in float64 from the weights recorded after every step;
validation scores the average; checkpoints hold the trained weights too and a resume is exact; a
checkpoint whose /weights do not fit the net is refused by name. Tiny nets on 16x16 inputs.

Tolerance: the float32 average against the float64 recomputation from the same recorded weights,
max |a - b| < 1e-6 (a few dozen steps, each rounding once per operation, on weights of size ~0.1-1).
"""
import math
import os
import shutil

import h5py
import numpy as np
import pytest

from rawcnn.engine.checkpoint import load_checkpoint, read_checkpoint
from rawcnn.engine.layers import SoftmaxCrossEntropy
from rawcnn.training.train import Run, Trainer, train
from test_train import RECIPE, RUN, make_data, new_net, no_times, shift

AVG_TOL = 1e-6
N_TRAIN, BATCH = 40, 8
STEPS = math.ceil(N_TRAIN / BATCH)  # per epoch


def recorded_run(out, epochs, average_epochs, micro_batches=None):
    """Train with averaging, recording the trained weights after every step. Returns (result, [state dicts])."""
    net, seen = new_net(), []

    def record(epoch, batch, loss):
        seen.append({n: {k: v.astype(np.float64) for k, v in d.items()} for n, d in net.state_dict().items()})

    r = train(net, make_data(n_train=N_TRAIN), RECIPE.replace(epochs=epochs, average_epochs=average_epochs),
              Run(out_dir=out, log=lambda m: None, micro_batches=micro_batches, **RUN), augment=shift(),
              on_batch=record)
    return r, seen


def ema(seen, decay):
    """The average after the last recorded step, in float64: a copy of step 1's weights, then avg = d avg + (1-d) w."""
    avg = {n: {k: v.copy() for k, v in d.items()} for n, d in seen[0].items()}
    for w in seen[1:]:
        for n, d in w.items():
            for k, v in d.items():
                avg[n][k] = decay * avg[n][k] + (1 - decay) * v
    return avg


@pytest.mark.parametrize("micro_batches", [None, 2])
def test_saved_params_are_the_average_and_weights_the_trained_ones(tmp_path, micro_batches):
    epochs, horizon = 3, 1.5
    r, seen = recorded_run(tmp_path, epochs, horizon, micro_batches)
    assert r["status"] == "completed" and len(seen) == epochs * STEPS
    ck = read_checkpoint(tmp_path / "last.h5")
    want = ema(seen, 1 - 1 / (horizon * STEPS))
    for n, d in ck["params"].items():
        for k, v in d.items():
            assert np.abs(v - want[n][k]).max() < AVG_TOL, f"{n}/{k}"
            np.testing.assert_array_equal(ck["weights"][n][k], seen[-1][n][k].astype(np.float32))
            assert np.abs(v - seen[-1][n][k]).max() > 1e-4  # the average is not the last weights
    assert ck["meta"]["config"]["average_epochs"] == horizon
    assert ck["meta"]["recipe"]["average_epochs"] == horizon


def test_validation_scores_the_average(tmp_path):
    data = make_data(n_train=N_TRAIN)
    r, _ = recorded_run(tmp_path, 2, 2.0)
    net, _ = load_checkpoint(tmp_path / "last.h5")  # the params: the average
    (xv, yv) = data[1]
    crit, total = SoftmaxCrossEntropy(), 0.0
    for i in range(0, yv.size, BATCH):
        logits = net.forward(xv[i:i + BATCH], train=False)
        total += crit.forward(logits, yv[i:i + BATCH]) * logits.shape[0]
    assert abs(total / yv.size - r["history"][-1]["val_loss"]) < 1e-6
    best = read_checkpoint(tmp_path / "best.h5")
    assert best["weights"] is not None and best["epoch"] == r["best_epoch"]


def test_off_by_default_writes_no_weights(tmp_path):
    train(new_net(), make_data(), RECIPE.replace(epochs=1), Run(out_dir=tmp_path, log=lambda m: None, **RUN))
    ck = read_checkpoint(tmp_path / "last.h5")
    assert ck["weights"] is None and "average_epochs" not in ck["meta"]["config"]


def test_resume_with_averaging_is_bit_for_bit(tmp_path):
    recipe = RECIPE.replace(average_epochs=1.0)
    a, b = tmp_path / "a", tmp_path / "b"
    train(new_net(), make_data(), recipe.replace(epochs=4), Run(out_dir=a, log=lambda m: None, **RUN), augment=shift())
    train(new_net(), make_data(), recipe.replace(epochs=2), Run(out_dir=b, log=lambda m: None, **RUN), augment=shift())
    train(new_net(seed=99), make_data(), recipe.replace(epochs=4), Run(out_dir=b, resume=True, log=lambda m: None,
                                                                        **RUN), augment=shift())
    ca, cb = read_checkpoint(a / "last.h5"), read_checkpoint(b / "last.h5")
    for part in ("params", "weights", "momentum"):
        for n in ca[part]:
            for k in ca[part][n]:
                np.testing.assert_array_equal(ca[part][n][k], cb[part][n][k], err_msg=f"{part} {n}/{k}")
    assert no_times(ca["history"]) == no_times(cb["history"])


def test_resume_without_averaging_continues_from_the_trained_weights(tmp_path):
    train(new_net(), make_data(), RECIPE.replace(epochs=2, average_epochs=1.0),
          Run(out_dir=tmp_path, log=lambda m: None, **RUN))
    ck = read_checkpoint(tmp_path / "last.h5")
    logs, net = [], new_net(seed=5)
    tr = Trainer(net, make_data(), RECIPE.replace(epochs=3), Run(out_dir=tmp_path, log=logs.append, **RUN))
    tr.restore(tmp_path / "last.h5")
    for n, d in net.state_dict().items():
        for k, v in d.items():
            np.testing.assert_array_equal(v, ck["weights"][n][k])
    assert any("continues from the trained weights" in m for m in logs)
    assert any("average_epochs" in m and m.startswith("warning: resuming with") for m in logs)


def test_resume_refuses_weights_that_do_not_fit(tmp_path):
    train(new_net(), make_data(), RECIPE.replace(epochs=1, average_epochs=1.0),
          Run(out_dir=tmp_path, log=lambda m: None, **RUN))
    bad = tmp_path / "bad"
    os.makedirs(bad)
    shutil.copy(tmp_path / "last.h5", bad / "last.h5")
    with h5py.File(bad / "last.h5", "r+") as f:
        del f["weights/fc2/w"]
        f["weights/fc2/w"] = np.zeros((3, 16), np.float32)  # fc2 is (2, 16)
    with pytest.raises(ValueError, match=r"last.h5: its trained weights \(/weights\) do not fit this net.*fc2"):
        train(new_net(), make_data(), RECIPE.replace(epochs=2, average_epochs=1.0),
              Run(out_dir=bad, resume=True, log=lambda m: None, **RUN))


def test_average_epochs_is_checked():
    with pytest.raises(ValueError, match="--average-epochs must be a finite number"):
        RECIPE.replace(average_epochs=-1.0)


def test_damaged_weights_group_is_refused_by_name(tmp_path):
    from rawcnn.engine.checkpoint import CheckpointError
    train(new_net(), make_data(), RECIPE.replace(epochs=1, average_epochs=1.0),
          Run(out_dir=tmp_path, log=lambda m: None, **RUN))
    ints, link = tmp_path / "ints.h5", tmp_path / "link.h5"
    shutil.copy(tmp_path / "last.h5", ints)
    shutil.copy(tmp_path / "last.h5", link)
    with h5py.File(ints, "r+") as f:
        del f["weights/fc2/w"]
        f["weights/fc2/w"] = np.zeros((2, 16), np.int32)
    with pytest.raises(CheckpointError, match=r"ints.h5: /weights/fc2/w holds int32 values"):
        read_checkpoint(ints)
    with h5py.File(tmp_path / "other.h5", "w") as g:
        g["x"] = np.zeros((2, 16), np.float32)
    with h5py.File(link, "r+") as f:
        del f["weights/fc2/w"]
        f["weights/fc2/w"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
    with pytest.raises(CheckpointError, match=r"link.h5.*/weights/fc2/w"):
        read_checkpoint(link)


def test_resume_that_unfreezes_a_layer_starts_its_average_from_its_weights(tmp_path):
    net = new_net()
    net["conv1"].trainable = False
    train(net, make_data(), RECIPE.replace(epochs=1, average_epochs=1.0), Run(out_dir=tmp_path, log=lambda m: None,
                                                                               **RUN))
    ck = read_checkpoint(tmp_path / "last.h5")
    assert "conv1" not in ck["weights"] and "conv2" in ck["weights"]
    logs, net = [], new_net(seed=3)  # conv1 trainable now
    tr = Trainer(net, make_data(), RECIPE.replace(epochs=2, average_epochs=1.0),
                 Run(out_dir=tmp_path, log=logs.append, **RUN))
    tr.restore(tmp_path / "last.h5", given={"freeze_through"})  # the layers as this run names them
    assert any(m.startswith("warning: resuming with layers") for m in logs), logs
    np.testing.assert_array_equal(tr.average.state()["conv1"]["w"], net["conv1"].params["w"])  # frozen: not averaged
    np.testing.assert_array_equal(net["conv1"].params["w"], ck["params"]["conv1"]["w"])
    np.testing.assert_array_equal(tr.average.state()["conv2"]["w"], ck["params"]["conv2"]["w"])
    np.testing.assert_array_equal(net["conv2"].params["w"], ck["weights"]["conv2"]["w"])
