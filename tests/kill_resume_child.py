"""A short training run for tests/test_kill_resume.py, run in its own process so that it can be killed.

    python kill_resume_child.py OUT [--resume] [--kill-after-write K] [--kill-before-rename K]

--kill-after-write K: SIGKILL itself right after the K-th file rawcnn renames into place (so also
between last.h5 and its copy best.h5); --kill-before-rename K: right after the K-th checkpoint
temporary is complete and synced, before its rename (it leaves a stale temporary behind).
"""
import os
import signal
import sys

import numpy as np

from rawcnn.engine import models
from rawcnn.files import fileio
from rawcnn.training.recipes import resolve
from rawcnn.training.train import Run, train

SPEC = {"name": "tiny", "input": [1, 12, 12], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 12},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Dropout", "name": "drop1", "p": 0.5},
    {"type": "Linear", "name": "fc2", "out_features": 2}]}
EPOCHS = 5
DEVICE = os.environ.get("RAWCNN_KILL_TEST_DEVICE", "reference")  # plain NumPy: no JIT start-up per process


def data(seed=0, n_train=64, n_val=16):
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 12, 12)).astype(np.float32)  # (N, 1, 12, 12)
    x[y == 1, :, 3:9, 3:9] += 0.8
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def killer(real, k):
    count = [0]

    def wrapped(*a, **kw):
        out = real(*a, **kw)
        count[0] += 1
        if count[0] == k:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped


def run(out, resume=False, log=print):
    """The run itself (also called in-process by the test, for the reference run and the resumes)."""
    net = models.build(SPEC, seed=0, weight_std=0.2)
    recipe = resolve("paper", epochs=EPOCHS, batch_size=8, lr=0.02, patience=2, max_drops=3)
    return train(net, data(), recipe, Run(out_dir=out, seed=3, progress=False, device=DEVICE, resume=resume, log=log))


def main(argv):
    out = argv[0]
    if "--kill-after-write" in argv:
        fileio.mark_created = killer(fileio.mark_created, int(argv[argv.index("--kill-after-write") + 1]))
    if "--kill-before-rename" in argv:
        os.fsync = killer(os.fsync, int(argv[argv.index("--kill-before-rename") + 1]))
    r = run(out, resume="--resume" in argv, log=lambda m: print(m, flush=True))
    print("status", r["status"], r["epoch"], r["best_epoch"], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
