"""kill -9 at chosen and at random instants of a short training run (tests/kill_resume_child.py), then
--resume: every resumed run must end with last.h5, best.h5 and history.csv as the uninterrupted run
has them, and no temporary of the run left behind."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import kill_resume_child
from rawcnn.engine.checkpoint import read_checkpoint
from rawcnn.files.fileio import TMP_PATTERN

CHILD = os.path.join(os.path.dirname(__file__), "kill_resume_child.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    os.environ.get("PYTHONPATH", "")])}


def child(out, *args, timeout=120):
    return subprocess.run([sys.executable, CHILD, str(out), *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def no_times(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in history]


def state(path):
    ck = read_checkpoint(path)
    meta = {k: v for k, v in (ck["meta"] or {}).items()}
    return ck, meta


def assert_same_run(ref, got):
    for name in ("last.h5", "best.h5"):
        a, ma = state(os.path.join(ref, name))
        b, mb = state(os.path.join(got, name))
        assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"], name
        for part in ("params", "momentum"):
            assert set(a[part]) == set(b[part])
            for layer in a[part]:
                for key in a[part][layer]:
                    np.testing.assert_array_equal(a[part][layer][key], b[part][layer][key],
                                                  err_msg=f"{name} {part} {layer}/{key}")
        assert a["rng_state"] == b["rng_state"] and a["dropout_rng"] == b["dropout_rng"], name
        assert no_times(a["history"]) == no_times(b["history"]), name
        for k in ("schedule", "best_epoch", "best_val_acc", "status"):
            assert ma.get(k) == mb.get(k), f"{name} meta {k}"

    def rows(d):
        with open(os.path.join(d, "history.csv")) as fh:
            return no_times([{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)])
    assert rows(ref) == rows(got)
    assert not [n for n in os.listdir(got) if TMP_PATTERN.match(n)], os.listdir(got)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    r = kill_resume_child.run(out, log=lambda m: None)
    assert r["status"] == "completed" and r["epoch"] == 5
    best = read_checkpoint(os.path.join(out, "best.h5"))["epoch"]
    assert best == 3, "the reference run improves at epochs 1, 2 and 3 (the write order below relies on it)"
    return out


def finish(out):
    """Resume in this process until done (a kill before the first checkpoint leaves nothing to resume:
    then the run starts again, as a user would)."""
    logs = []
    if os.path.exists(out / "last.h5"):
        r = kill_resume_child.run(out, resume=True, log=logs.append)
    else:
        with pytest.raises(ValueError, match="nothing to resume"):
            kill_resume_child.run(out, resume=True, log=logs.append)
        r = kill_resume_child.run(out, log=logs.append)
    assert r["status"] == "completed" and r["epoch"] == 5, logs
    return logs


# Files renamed into place, in order: 1 last.h5 (epoch 0); epochs 1-3 improve: 2 last, 3 best, 4 history,
# 5 last, 6 best, 7 history, 8 last, 9 best, 10 history; epochs 4-5: 11 last, 12 history, 13 last, 14 history;
# 15 curves.png. fsync calls: two per checkpoint (the temporary, then the folder after the rename).
@pytest.mark.parametrize("how,k", [("--kill-after-write", 2), ("--kill-after-write", 3), ("--kill-after-write", 5),
                                   ("--kill-after-write", 8), ("--kill-after-write", 13),
                                   ("--kill-before-rename", 3), ("--kill-before-rename", 5)])
def test_kill_at_a_chosen_write_then_resume(reference, tmp_path, how, k):
    r = child(tmp_path, how, str(k))
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    finish(tmp_path)
    assert_same_run(reference, tmp_path)


def test_kill_at_random_instants_then_resume(reference, tmp_path):
    rng = np.random.default_rng(2024)
    for i in range(2):
        out = tmp_path / f"run{i}"
        proc = subprocess.Popen([sys.executable, CHILD, str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=ENV)
        assert proc.stdout.readline().startswith("training on")  # past the imports: the run has begun
        time.sleep(float(rng.uniform(0.0, 1.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        finish(out)
        assert_same_run(reference, out)
