"""Same seed, same model, whatever the thread count: training in subprocesses with OpenBLAS and Numba
at 1 and at 2 threads must write bit-identical checkpoints (rawcnn.engine.determinism pins OpenBLAS to one
thread while training). conv1 here, 3 -> 32 channels 7x7 stride 2 on 96 x 96 inputs, has a weight
gradient product (32 x 2025) @ (2025 x 147) whose last bits OpenBLAS 0.3.31 changes with its thread
count; the control run (pinning off) shows that the test can fail on such a BLAS."""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from rawcnn.engine import models
    from rawcnn.engine.checkpoint import read_checkpoint
    from rawcnn.training.recipes import resolve
    from rawcnn.training.train import Run, train
    spec = {"name": "det", "input": [3, 96, 96], "layers": [
        {"type": "Conv2d", "name": "conv1", "out_channels": 32, "kernel_size": 7, "stride": 2},
        {"type": "ReLU", "name": "relu1"},
        {"type": "MaxPool2d", "name": "pool1", "kernel_size": 3, "stride": 2},
        {"type": "Conv2d", "name": "conv2", "out_channels": 16, "kernel_size": 3, "stride": 2},
        {"type": "ReLU", "name": "relu2"},
        {"type": "Flatten", "name": "flatten"},
        {"type": "Linear", "name": "fc1", "out_features": 2}]}
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 24)
    x = rng.standard_normal((24, 3, 96, 96)).astype(np.float32)
    x[y == 1, :, 30:60, 30:60] += 0.5
    net = models.build(spec, seed=0, weight_std="he")
    train(net, {"train": (x[:16], y[:16]), "val": (x[16:], y[16:])},
          resolve("paper", epochs=2, batch_size=8, lr=0.01, clip_norm=10.0),
          Run(out_dir=sys.argv[1], seed=0, progress=False, log=lambda m: None, deterministic=sys.argv[2] == "1"))
    p = read_checkpoint(sys.argv[1] + "/last.h5")["params"]
    h = hashlib.sha1()
    for name in sorted(p):
        for k in sorted(p[name]):
            h.update(np.ascontiguousarray(p[name][k]).tobytes())
    print(h.hexdigest())
""")


def run(tmp_path, threads, pinned):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads),
           "PYTHONPATH": ROOT}
    out = tmp_path / f"t{threads}_{pinned}"
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(out), "1" if pinned else "0"], env=env, cwd=ROOT, check=False,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_one_and_two_threads_give_bit_identical_checkpoints(tmp_path):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs for a 2-thread run to mean anything")
    assert run(tmp_path, 1, True) == run(tmp_path, 2, True)


def test_control_without_pinning_can_differ(tmp_path):
    # not an assertion about rawcnn: it checks that the test above is able to fail on this BLAS
    a, b = run(tmp_path, 1, False), run(tmp_path, 2, False)
    if a == b:
        pytest.skip("this BLAS gives the same bits with 1 and 2 threads even unpinned; the test above "
                    "cannot fail here")
    assert a != b
