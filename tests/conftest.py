"""What several test files share: the kernel tiers, tiny model specs and tiny data sets.

Tiers. `be` is one Backend (kernels.get_backend) per tier this machine runs everywhere: reference
and cpu. `tier` is the op module of that tier for the op a kernel test file names at its top,
`OP = "relu"` -> kernels.reference.relu, kernels.cpu.relu. A test that asks for `be` or `tier` runs
once per tier (ids `reference`, `cpu`). The CUDA tier runs in tests/cuda, in a process of its own
under the simulator or on a GPU; tests/cuda/conftest.py gives its own `be` there.

Specs. Model specs that more than one file builds, each a fresh copy per test module (as when the
module held the dict itself). A file whose test depends on its own spec keeps it.

Data sets. The prepared set of bright squares and the net that finds them, which the viz tests
(score, commands, report) share: builders, so that each call makes the same set and a fresh net.
They import rawcnn and h5py when called: every test process loads this file, tests/cuda's too.
"""
import copy
import json

import numpy as np
import pytest

import kernels

TIERS = ("reference", "cpu")

from specs import SQUARE_SPEC, TINY_CONV_POOL_SPEC, TINY_CONV_SPEC  # noqa: F401  (re-exported to the tests)


# -- tiers -----------------------------------------------------------------------------------------
@pytest.fixture(params=TIERS)
def be(request):
    """The Backend of one tier: get_backend('reference'), then get_backend('cpu')."""
    return kernels.get_backend(request.param)


@pytest.fixture
def tier(be, request):
    """The op module of one tier for the test file's OP: kernels.reference.<OP>, then kernels.cpu.<OP>."""
    op = getattr(request.module, "OP", None)
    if op is None:
        raise LookupError(f"{request.module.__name__} asks for `tier` but names no op: put OP = '<op>' "
                          f"(one of {', '.join(kernels.OPS)}) at its top")
    return getattr(be, op)


# -- model specs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_conv_spec():
    """TINY_CONV_SPEC, a copy for this test module."""
    return copy.deepcopy(TINY_CONV_SPEC)


@pytest.fixture(scope="module")
def tiny_conv_pool_spec():
    """TINY_CONV_POOL_SPEC, a copy for this test module."""
    return copy.deepcopy(TINY_CONV_POOL_SPEC)


# -- data sets -------------------------------------------------------------------------------------
def _square_net():
    """Channel 0 fires on bright squares (3x3 sums minus 4), channel 1 is a constant 0.15;
    class 1 sums channel 0's pooled cells, class 0 channel 1's (input in [0, 1])."""
    from rawcnn.engine import models
    net = models.build(SQUARE_SPEC, seed=0)
    w, b = net["conv1"].params["w"], net["conv1"].params["b"]
    w[...] = 0.0
    w[0] = 1.0
    b[...] = [-4.0, 0.15]
    fw = net["fc8"].params["w"]
    fw[...] = 0.0
    fw[1, :64] = 1.0
    fw[0, 64:] = 1.0
    return net


@pytest.fixture(scope="session")
def square_net():
    """make() -> a new Net of SQUARE_SPEC whose answer is known (see _square_net)."""
    return _square_net


def _to_input(x):
    return np.asarray(x, np.float32) / 255.0


@pytest.fixture(scope="session")
def to_input():
    """to_input(images) -> float32 in [0, 1]: the uint8 images of write_square_set as square_net takes them."""
    return _to_input


def _write_square_set(path, n=12, seed=0):
    """n 16x16 images in rawcnn.data.dataset's file layout: odd ones abnormal with a 4x4 bright
    square (its lesion mask), lungs = the middle rows; split train/val/test = first half / - / rest."""
    import h5py

    from rawcnn.data.dataset import load_dataset
    rng = np.random.default_rng(seed)
    S = 16
    images = np.zeros((n, 1, S, S), np.uint8)
    lesions = np.zeros((n, S, S), np.uint8)
    lungs = np.zeros((n, S, S), np.uint8)
    lungs[:, 2:14, 1:15] = 1
    labels = np.arange(n) % 2
    for i in np.flatnonzero(labels == 1):
        r, c = rng.integers(2, 10, size=2)
        images[i, 0, r:r + 4, c:c + 4] = 255
        lesions[i, r:r + 4, c:c + 4] = 1
    split = np.where(np.arange(n) < n // 2, 0, 2).astype(np.int8)
    with h5py.File(path, "w") as f:
        f["images"], f["labels"], f["split"] = images, labels.astype(np.int64), split
        f["names"] = np.array([f"img{i:03d}_{labels[i]}" for i in range(n)], dtype=h5py.string_dtype("utf-8"))
        f["lung_masks"], f["lesion_masks"] = lungs, lesions
        f["has_lung_mask"] = np.ones(n, np.uint8)
        f["has_lesion_mask"] = np.ones(n, np.uint8)
        f["roi_boxes"] = np.tile(np.array([0, S, 0, S], np.int32), (n, 1))
        f["source_shapes"] = np.full((n, 2), S, np.int32)
        f.attrs.update({"format": "rawcnn-prepared-1", "rawcnn_version": "test",
                        "settings": json.dumps({"channels": 1, "input_size": S}),
                        "class_names": json.dumps(["normal", "abnormal"]), "source": "test",
                        "layout": "montgomery", "seed": seed, "split_fractions": json.dumps([0.5, 0, 0.5]),
                        "skipped": "[]"})
    return load_dataset(path)


@pytest.fixture(scope="session")
def write_square_set():
    """write(path, n=12, seed=0) -> the Dataset it wrote at path: bright squares square_net finds."""
    return _write_square_set
