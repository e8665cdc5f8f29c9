"""Data-parallel training under mpiexec (rawcnn.training.distributed): 2 ranks equal 1 process (to float rounding
by default, bit for bit with --micro-batches, also with 4 ranks), one writer, a failing rank stops the
job, resume across process counts. Tiny nets on a 16x16 prepared set.

Every test here starts `mpiexec -n 2` (tests/mpi_worker.py or the CLI) and skips, saying why, when
mpi4py or mpiexec is missing or cannot start two ranks. The one-process runs happen in this process.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from rawcnn.app.train import strip_option
from rawcnn.data import Augmenter, load_dataset
from rawcnn.engine import models
from rawcnn.engine.checkpoint import read_checkpoint
from rawcnn.engine.gradcheck import max_diff
from rawcnn.training.distributed import find_mpiexec, share
from rawcnn.training.recipes import resolve
from rawcnn.training.train import Run, train
from test_train import SPEC as TRAIN_SPEC

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "mpi_worker.py")
TOL = {"float32": 1e-5, "float64": 1e-12}  # max|a - b| / max|b| per parameter (the bounds)

SPEC = TRAIN_SPEC  # the tiny net of test_train.py
# 41 training images in batches of 8: the last batch has 1 row, so rank 1 has none there
RECIPE = resolve("paper", batch_size=8, lr=0.002, patience=1, max_drops=3)  # momentum 0.9, L2 5e-4, no hooks
RUN = dict(seed=7, progress=False, device="cpu", log=print)


def new_net(seed=0):
    return models.build(SPEC, seed=seed, weight_std=0.1)


def shift():
    return Augmenter(max_translate=0.1, max_rotate_deg=10.0, rng=3)


def write_prepared(path, n_train=41, n_val=15, seed=0):
    """A file in `rawcnn data prepare`'s format: noise, class 1 with a brighter centre square."""
    rng = np.random.default_rng(seed)
    n, S = n_train + n_val, 16
    y = rng.integers(0, 2, n)  # (n,)
    x = rng.integers(100, 130, (n, 1, S, S))  # (n, 1, S, S)
    x[y == 1, :, 4:12, 4:12] += 20
    split = rng.permutation(np.r_[np.zeros(n_train), np.ones(n_val)]).astype(np.int8)  # (n,) interleaved
    with h5py.File(path, "w") as f:
        f["images"], f["labels"], f["split"] = x.astype(np.uint8), y.astype(np.int64), split
        f["names"] = np.array([f"im{i}" for i in range(n)], dtype=h5py.string_dtype("utf-8"))
        f["lung_masks"] = f["lesion_masks"] = np.zeros((n, S, S), np.uint8)
        f["has_lung_mask"] = f["has_lesion_mask"] = np.zeros(n, np.uint8)
        f["roi_boxes"], f["source_shapes"] = np.zeros((n, 4), np.int32), np.full((n, 2), S, np.int32)
        f.attrs.update({"format": "rawcnn-prepared-1", "rawcnn_version": "test", "source": "test",
                        "settings": json.dumps({"input_size": S, "channels": 1}), "layout": "test",
                        "class_names": json.dumps(["normal", "abnormal"]), "seed": 0, "skipped": "[]",
                        "split_fractions": json.dumps([0.7, 0.3, 0.0])})


def mpiexec(args, n=2, timeout=150, env=None):
    """Run `mpiexec -n n python args...` from the repository root; returns CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": ROOT, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([find_mpiexec(), "-n", str(n), sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def mpi():
    """Skip (with the reason) unless mpi4py imports and mpiexec can start 2 ranks here."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install -e '.[mpi]')")
    if find_mpiexec() is None:
        pytest.skip("no mpiexec beside this Python or on PATH (pip install -e '.[mpi]' provides one)")
    try:
        p = mpiexec(["-c", "from mpi4py import MPI; print(f'size={MPI.COMM_WORLD.Get_size()};')"], timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("mpiexec -n 2 did not start within 60 s")
    if p.returncode != 0 or p.stdout.count("size=2;") != 2:
        pytest.skip(f"mpiexec -n 2 cannot start here: {(p.stderr or p.stdout).strip()[-300:]}")


@pytest.fixture(scope="module")
def runs(mpi, tmp_path_factory):
    """One 2-rank launch per dtype (float32 also resumes a 1-process checkpoint), and the 1-process runs."""
    root = tmp_path_factory.mktemp("dist")
    data = root / "set.h5"
    write_prepared(data)
    out = {}
    for dtype in ("float32", "float64"):
        one = root / f"one-{dtype}"
        train(new_net().astype(dtype), load_dataset(data), RECIPE.replace(epochs=2), Run(out_dir=one, **RUN),
              augment=shift())
        if dtype == "float32":  # a 1-process checkpoint after epoch 2, resumed by 2 ranks below
            shutil.copytree(one, root / "resumed")
        aug = shift()
        aug.rng.bit_generator.state = read_checkpoint(one / "last.h5")["rng_state"]["augment"]
        # = an uninterrupted 3-epoch run (test_train checks resume bit for bit)
        train(new_net().astype(dtype), load_dataset(data), RECIPE.replace(epochs=3),
              Run(out_dir=one, resume=True, **RUN), augment=aug)
        # float64 with 1 KB buckets: several buckets, and gradients over the size reduced in place
        bucket_mb = "25" if dtype == "float32" else "0.001"
        p = mpiexec([WORKER, "train", str(data), str(root / f"two-{dtype}"), "3", dtype, bucket_mb])
        assert p.returncode == 0, p.stderr[-2000:]
        out[dtype] = (one, root / f"two-{dtype}", p)
    p = mpiexec([WORKER, "train", str(data), str(root / "resumed"), "3", "float32"])
    assert p.returncode == 0, p.stderr[-2000:]
    out["resumed"] = (out["float32"][0], root / "resumed", p)
    return root, data, out


def param_diffs(dir_a, dir_b):
    a, b = read_checkpoint(os.path.join(dir_a, "last.h5")), read_checkpoint(os.path.join(dir_b, "last.h5"))
    assert a["epoch"] == b["epoch"] == 3
    return a, b, {f"{n}/{k}": max_diff(b["params"][n][k], a["params"][n][k])
                  for n in a["params"] for k in a["params"][n]}


def test_share_splits_rows_contiguously_and_evenly():
    for n in (1, 7, 8, 41):
        for size in (1, 2, 3, 5):
            parts = [share(n, size, r) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(parts[r][1] == parts[r + 1][0] for r in range(size - 1))
            assert max(h - lo for lo, h in parts) - min(h - lo for lo, h in parts) <= 1


def test_strip_option_removes_procs_in_both_spellings():
    assert strip_option(["train", "--procs", "2", "--out", "x"], "--procs") == ["train", "--out", "x"]
    assert strip_option(["train", "--procs=2", "--seed", "1"], "--procs") == ["train", "--seed", "1"]


def test_sharded_reading_gives_load_dataset_rows_and_mean(tmp_path):
    from rawcnn.training.distributed import ShardedData

    class Halves:  # two ranks' shares of the mean, summed by hand (no MPI in this process)
        size, parts = 2, []

        def allreduce(self, a):
            self.parts.append(a.copy())
            return a

    write_prepared(tmp_path / "set.h5")
    whole = load_dataset(tmp_path / "set.h5").split("train")
    dist = Halves()
    images = ShardedData(tmp_path / "set.h5", dist).split("train").images
    idx = np.array([5, 0, 40, 5, 17])  # any order, repeats
    np.testing.assert_array_equal(images[idx], whole.images[idx])
    np.testing.assert_array_equal(images[3:9], whole.images[3:9])
    assert images.shape == whole.images.shape and images.dtype == np.uint8
    for dist.rank in (0, 1):
        images.mean()
    total = (dist.parts[0] + dist.parts[1]) / (whole.images[:, :1].size)
    assert total[0] == whole.images.mean(axis=(0, 2, 3), dtype=np.float64)[0]  # exact integer sums


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_two_ranks_equal_one_process(runs, dtype):
    one, two, _ = runs[2][dtype]
    a, b, diffs = param_diffs(one, two)
    print(f"{dtype}: max|2 ranks - 1 process| / max|1 process| per parameter:", diffs)
    assert max(diffs.values()) <= TOL[dtype], diffs
    assert max(diffs.values()) > 0 or dtype == "float64"  # float32 sums in another order: not bit-equal
    # the generators advanced the same way: rank 0's checkpoint is the one process's state
    assert a["rng_state"] == b["rng_state"] and a["dropout_rng"] == b["dropout_rng"]
    ha, hb = a["history"], b["history"]
    assert [h["val_acc"] for h in ha] == [h["val_acc"] for h in hb]  # reduced counts: exact
    np.testing.assert_allclose([h["train_loss"] for h in hb], [h["train_loss"] for h in ha], rtol=1e-5)
    np.testing.assert_allclose([h["val_loss"] for h in hb], [h["val_loss"] for h in ha], rtol=1e-5)
    assert a["preprocessing"]["mean"] == b["preprocessing"]["mean"]  # exact integer sums, reduced


def test_two_ranks_resume_a_one_process_checkpoint(runs):
    one, resumed, p = runs[2]["resumed"]
    assert "resuming from" in p.stdout and "after epoch 2" in p.stdout
    _, _, diffs = param_diffs(one, resumed)
    assert max(diffs.values()) <= TOL["float32"], diffs


def test_rank_0_alone_writes_and_logs(runs):
    one, two, p = runs[2]["float32"]
    assert sorted(os.listdir(two)) == sorted(os.listdir(one)) == ["best.h5", "curves.png", "history.csv",
                                                                  "last.h5"]
    assert p.stdout.count("epoch 3/3") == 1 and p.stdout.count("RESULT completed") == 1, p.stdout
    with open(two / "history.csv") as fh:
        assert [row["epoch"] for row in csv.DictReader(fh)] == ["1", "2", "3"]


def test_a_rank_raising_stops_every_rank_with_one_message(runs, tmp_path):
    _, data, _ = runs
    t0 = time.perf_counter()
    p = mpiexec([WORKER, "raise", str(data), str(tmp_path / "run"), "3"], timeout=120)
    assert p.returncode != 0
    assert "rawcnn: rank 1 of 2 failed: RuntimeError: injected failure; stopping all ranks" in p.stderr
    assert "RESULT" not in p.stdout and time.perf_counter() - t0 < 120
    assert read_checkpoint(tmp_path / "run" / "last.h5")["epoch"] == 0  # written whole before the fault
    assert not [f for f in os.listdir(tmp_path / "run") if f.startswith(".tmp")]


def test_a_nan_on_one_rank_stops_every_rank_naming_it(runs, tmp_path):
    _, data, _ = runs
    p = mpiexec([WORKER, "nan", str(data), str(tmp_path / "run"), "3"], timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "RESULT diverged: the training loss became nan on rank 1 at epoch 2, batch 1" in p.stdout
    assert read_checkpoint(tmp_path / "run" / "last.h5")["epoch"] == 1


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step(runs, tmp_path):
    _, data, _ = runs
    p = mpiexec([WORKER, "sigint", str(data), str(tmp_path / "run"), "3"], timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]  # no abort: both ranks returned from train()
    assert ("RESULT interrupted: interrupted (Ctrl-C) during epoch 2; " in p.stdout
            and "holds epoch 1: continue with resume" in p.stdout), p.stdout[-2000:]
    assert p.stdout.count("RESULT") == 1 and "epoch 2/3 " not in p.stdout  # epoch 2 never finished
    assert read_checkpoint(tmp_path / "run" / "last.h5")["epoch"] == 1


def test_cli_procs_starts_mpiexec_and_trains(runs, tmp_path):
    _, data, _ = runs
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-c", "import cli; cli.main()", "train", "--model", os.path.join(tmp_path, "tiny.json"),
           "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8",
           "--procs", "2", "--no-augment"]
    with open(tmp_path / "tiny.json", "w") as fh:
        json.dump(SPEC, fh)
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("epoch 1/1 ") == 1 and p.stdout.count("checkpoints: ") == 1, p.stdout
    assert sorted(os.listdir(tmp_path / "run")) == ["best.h5", "curves.png", "history.csv", "last.h5"]


def test_weight_averaging_on_two_ranks_gives_one_process_bits(runs, tmp_path):
    """--average-epochs under mpiexec: every rank folds the same weights into its average and rank 0 writes it;
    with micro-batches, the params (the average) and the trained weights equal one process's bit for bit."""
    _, data, _ = runs
    env = {**os.environ, "PYTHONPATH": ROOT, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "tiny.json", "w") as fh:
        json.dump(SPEC, fh)
    got = {}
    for procs in ("1", "2"):
        cmd = [sys.executable, "-c", "import cli; cli.main()", "train", "--model", str(tmp_path / "tiny.json"),
               "--data", str(data), "--out", str(tmp_path / procs), "--epochs", "2", "--batch-size", "8",
               "--micro-batches", "2", "--average-epochs", "1", "--procs", procs, "--no-augment"]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150, check=False)
        assert p.returncode == 0, p.stderr[-2000:]
        got[procs] = read_checkpoint(tmp_path / procs / "last.h5")
    for kind in ("params", "weights", "momentum"):
        a, b = got["1"][kind], got["2"][kind]
        assert a.keys() == b.keys()
        for n in a:
            for k in a[n]:
                assert np.array_equal(a[n][k], b[n][k]), (kind, n, k)
    assert not np.array_equal(got["1"]["params"]["fc2"]["w"], got["1"]["weights"]["fc2"]["w"])


def test_ctrl_c_on_mpiexec_stops_every_rank_and_keeps_the_checkpoint(runs, tmp_path):
    _, data, _ = runs
    with open(tmp_path / "tiny.json", "w") as fh:
        json.dump(SPEC, fh)
    env = {**os.environ, "PYTHONPATH": ROOT, "NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [find_mpiexec(), "-n", "2", sys.executable, "-c", "import cli; cli.main()", "train", "--model",
           str(tmp_path / "tiny.json"), "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "10000",
           "--patience", "10000", "--batch-size", "8", "--no-augment"]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.perf_counter()
        while not os.path.exists(tmp_path / "run" / "history.csv") and time.perf_counter() - t0 < 90:
            time.sleep(0.2)  # at least one epoch written
        p.send_signal(2)  # SIGINT: what Ctrl-C in the terminal sends mpiexec
        t1 = time.perf_counter()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert time.perf_counter() - t1 < 30 and p.returncode != 0
    assert "interrupted (Ctrl-C) during epoch" in out, out[-2000:] + err[-2000:]
    assert read_checkpoint(tmp_path / "run" / "last.h5")["epoch"] >= 1


# -- --micro-batches M: the same bits whatever the number of ranks ---------------------------------------
MICRO = 4  # 8-row batches in micro-batches of 2; the last batch's 1 row leaves 3 micro-batches empty
TIMES = ("seconds", "images_per_s")  # the only history fields that may differ


def start_ranks(n):
    """None when mpiexec can start n ranks here, else the reason."""
    try:
        p = mpiexec(["-c", "from mpi4py import MPI; print(f'size={MPI.COMM_WORLD.Get_size()};')"], n=n, timeout=60)
    except subprocess.TimeoutExpired:
        return f"mpiexec -n {n} did not start within 60 s"
    if p.returncode != 0 or p.stdout.count(f"size={n};") != n:
        return f"mpiexec -n {n} cannot start here: {(p.stderr or p.stdout).strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def micro_runs(mpi, tmp_path_factory):
    """float32 with augmentation and dropout, M = 4: 1 process (in this process), 2 and 4 ranks, and 2
    ranks resuming the 1-process run's epoch-2 checkpoint without naming M (the checkpoint's is used).
    Returns {name: run folder or skip reason}."""
    root = tmp_path_factory.mktemp("micro")
    data = root / "set.h5"
    write_prepared(data)
    one = root / "one"
    train(new_net(), load_dataset(data), RECIPE.replace(epochs=2), Run(out_dir=one, micro_batches=MICRO, **RUN),
          augment=shift())
    shutil.copytree(one, root / "resumed")
    train(new_net(), load_dataset(data), RECIPE.replace(epochs=3),
          Run(out_dir=one, resume=True, micro_batches=MICRO, **RUN), augment=shift())
    out = {"one": one}
    for name, n in (("two", 2), ("four", 4), ("resumed", 2)):
        why = start_ranks(n) if n > 2 else None
        if why:
            out[name] = why
            continue
        micro = "0" if name == "resumed" else str(MICRO)  # a resume takes the checkpoint's M when none is given
        p = mpiexec([WORKER, "train", str(data), str(root / name), "3", "float32", "25", micro], n=n)
        assert p.returncode == 0, p.stderr[-2000:]
        if name == "resumed":
            assert "resuming from" in p.stdout and "after epoch 2" in p.stdout, p.stdout
            assert "resume: --micro-batches 4, as " in p.stdout, p.stdout
        out[name] = root / name
    return out


def assert_same_bits(dir_a, dir_b):
    """Weights, momentum, generators, history (but its times) and meta of two runs' last.h5 and best.h5 are equal."""
    read = {}
    for f in ("last.h5", "best.h5"):
        a, b = read_checkpoint(os.path.join(dir_a, f)), read_checkpoint(os.path.join(dir_b, f))
        read[f] = a
        assert a["epoch"] == b["epoch"]
        for kind in ("params", "momentum"):
            assert a[kind].keys() == b[kind].keys()
            for n in a[kind]:
                for k in a[kind][n]:
                    assert np.array_equal(a[kind][n][k], b[kind][n][k]), (f, kind, n, k)
        assert a["rng_state"] == b["rng_state"] and a["dropout_rng"] == b["dropout_rng"]
        strip = [[{k: v for k, v in h.items() if k not in TIMES} for h in c["history"]] for c in (a, b)]
        assert strip[0] == strip[1] and len(strip[0]) == a["epoch"], strip
        assert a["meta"]["config"]["micro_batches"] == b["meta"]["config"]["micro_batches"] == MICRO
        assert a["meta"]["best_epoch"] == b["meta"]["best_epoch"]
    return read["last.h5"]


@pytest.mark.parametrize("name", ["two", "four", "resumed"])
def test_micro_batches_give_one_process_bits_on_any_number_of_ranks(micro_runs, name):
    if isinstance(micro_runs[name], str):
        pytest.skip(micro_runs[name])
    last = assert_same_bits(micro_runs["one"], micro_runs[name])
    assert last["epoch"] == 3 and len(last["history"]) == 3


def test_micro_batches_split_the_step_and_1_is_the_plain_step(tmp_path):
    """M = 2 in one process differs from the plain step only by rounding (the split happens); an
    explicit M = 1 gives the plain step's bits."""
    write_prepared(tmp_path / "set.h5")
    runs = {}
    for m in (None, 1, 2):
        out = tmp_path / f"m{m}"
        train(new_net(), load_dataset(tmp_path / "set.h5"), RECIPE.replace(epochs=1),
              Run(out_dir=out, micro_batches=m, **RUN), augment=shift())
        runs[m] = read_checkpoint(out / "last.h5")
    plain, one, two = runs[None]["params"], runs[1]["params"], runs[2]["params"]
    keys = [(n, k) for n in plain for k in plain[n]]
    assert all(np.array_equal(plain[n][k], one[n][k]) for n, k in keys)
    assert not all(np.array_equal(plain[n][k], two[n][k]) for n, k in keys)
    diffs = {f"{n}/{k}": max_diff(two[n][k], plain[n][k]) for n, k in keys}
    assert max(diffs.values()) <= TOL["float32"], diffs
    h0, h2 = runs[None]["history"][0], runs[2]["history"][0]
    assert h0["val_acc"] == h2["val_acc"] and abs(h0["train_loss"] - h2["train_loss"]) <= 1e-5 * h0["train_loss"]


def test_micro_batches_that_the_ranks_cannot_share_are_refused(tmp_path):
    from click.testing import CliRunner

    from cli import main
    from rawcnn.training.distributed import MicroBatches, check_micro_batches
    for m, r in ((4, 1), (4, 2), (4, 4), (6, 2), (3, 3), (12, 4)):
        check_micro_batches(m, r)
    write_prepared(tmp_path / "set.h5")
    for m, r in ((3, 2), (6, 3), (6, 4)):
        res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "set.h5"), "--out", str(tmp_path / "run"),
                                        "--procs", str(r), "--micro-batches", str(m)])
        assert res.exit_code == 1, res.output
        assert res.output.startswith(f"Error: --micro-batches {m} cannot be shared by {r} ranks: the number of "
                                     f"ranks must divide the number of micro-batches and be a power of two (or "
                                     f"equal it), e.g. --micro-batches "), res.output
        assert res.output.count("\n") == 1 and not os.path.exists(tmp_path / "run")
    with pytest.raises(ValueError, match="--micro-batches 6 cannot be shared by 4 ranks"):
        MicroBatches(6, type("Four", (), {"size": 4, "rank": 0})())
    with open(tmp_path / "tiny.json", "w") as fh:
        json.dump(SPEC, fh)
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "set.h5"), "--out", str(tmp_path / "run"),
                                    "--model", str(tmp_path / "tiny.json"), "--batch-size", "8", "--micro-batches",
                                    "9", "--epochs", "1", "--no-augment"])
    assert res.exit_code == 1 and "Error: --micro-batches 9 is more than --batch-size 8" in res.output, res.output


def test_micro_batches_weigh_classes_over_the_whole_batch(tmp_path):
    """--balance weight with M = 2 normalises the class weights over the global batch, as the plain
    step does: the runs differ by rounding only (per micro-batch normalisation would not)."""
    write_prepared(tmp_path / "set.h5")
    runs = {}
    for m in (None, 2):
        train(new_net(), load_dataset(tmp_path / "set.h5"), RECIPE.replace(epochs=1, balance="weight"),
              Run(out_dir=tmp_path / f"m{m}", micro_batches=m, **RUN), augment=shift())
        runs[m] = read_checkpoint(tmp_path / f"m{m}" / "last.h5")["params"]
    diffs = {f"{n}/{k}": max_diff(runs[2][n][k], runs[None][n][k]) for n in runs[None] for k in runs[None][n]}
    assert 0 < max(diffs.values()) <= TOL["float32"], diffs


@pytest.mark.parametrize("mode", ["nan", "sigint"])
def test_micro_batches_stop_every_rank_at_the_same_step(runs, tmp_path, mode):
    _, data, _ = runs
    p = mpiexec([WORKER, mode, str(data), str(tmp_path / "run"), "3", "float32", "25", "2"], timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    if mode == "nan":  # rank 1's micro-batch is the second of two
        assert ("RESULT diverged: the training loss became nan on rank 1 in micro-batch 2 of 2 at epoch 2, batch 1"
                in p.stdout), p.stdout[-2000:]
    else:
        assert "RESULT interrupted: interrupted (Ctrl-C) during epoch 2; " in p.stdout, p.stdout[-2000:]
        assert p.stdout.count("RESULT") == 1 and "epoch 2/3 " not in p.stdout
    assert read_checkpoint(tmp_path / "run" / "last.h5")["epoch"] == 1
