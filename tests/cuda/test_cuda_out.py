"""kernels/cuda: the caller-given output arrays (out=, out_y=, out_dx=, ...), the table of
tests/out_cases.py run on this tier (simulator or GPU)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: out_cases
import out_cases  # noqa: E402

pytestmark = pytest.mark.gpu


def test_cuda_kernels_write_into_given_arrays_and_reject_wrong_ones(be):
    for case in out_cases.cases(be, np.float32, small=True):
        out_cases.check(be, case)


def test_cuda_training_steps_with_reused_buffers_match_fresh_ones(be):
    # two SGD steps of a tiny net on this tier with Net.reusing_buffers() on and off: same weights,
    # and the second step allocates no new buffer
    from kernels import to_numpy
    from rawcnn.engine import models
    from rawcnn.engine.layers.softmax import SoftmaxCrossEntropy
    from rawcnn.engine.optim import SGD
    spec = {"name": "t", "input": [2, 6, 6], "layers": [
        {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1, "groups": 2},
        {"type": "ReLU", "name": "relu1"},
        {"type": "LRN", "name": "norm1", "size": 3, "alpha": 1e-3, "beta": 0.75, "k": 2.0},
        {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
        {"type": "Flatten", "name": "flatten"},
        {"type": "Linear", "name": "fc1", "out_features": 4},
        {"type": "Dropout", "name": "drop1", "p": 0.5},
        {"type": "Linear", "name": "fc2", "out_features": 2}]}
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 2, 6, 6)).astype(np.float32), np.array([0, 1, 1])
    weights, seen = [], []
    for reuse in (False, True):
        net = models.build(spec, seed=1, weight_std=0.3).to(be)
        crit, opt = SoftmaxCrossEntropy().to(be), SGD(net, lr=0.1)
        with net.reusing_buffers(reuse):
            for _ in range(2):
                crit.forward(net.forward(be.asarray(x), train=True), y)
                net.backward(crit.backward(), input_grad=False)
                opt.step()
                seen.append({(l.name, r): id(a) for l in net for r, a in (l.buffers or {}).items()})
        weights.append({k: {p: to_numpy(v) for p, v in d.items()} for k, d in net.state_dict().items()})
    for name in weights[0]:
        for p in weights[0][name]:
            assert weights[0][name][p].tobytes() == weights[1][name][p].tobytes(), f"{name}/{p}"
    assert seen[2] and seen[3] == seen[2]  # reuse on: the same buffers at both steps
