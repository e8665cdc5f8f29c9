"""bench/head_init.py: the two ways it starts the classifier head after LSUV."""
import importlib.util
import os

import numpy as np
import pytest

import rawcnn.training.from_recipe as from_recipe
from kernels import to_numpy
from rawcnn.engine.models import build
from rawcnn.training.recipes import resolve

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = {"name": "gap-head", "input": [3, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 8, "kernel_size": 3, "stride": 1, "padding": 1, "groups": 1},
    {"type": "ReLU", "name": "relu1"}, {"type": "GlobalAvgPool", "name": "gap"},
    {"type": "Dropout", "name": "drop", "p": 0.5}, {"type": "Linear", "name": "fc8", "out_features": 2}]}


def _bench():
    spec = importlib.util.spec_from_file_location("head_init", os.path.join(HERE, "..", "bench", "head_init.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _started(init_net):
    """A net of SPEC started by init_net on 24 random 16x16 images, its input contract and those images."""
    x = np.random.default_rng(3).integers(0, 256, (24, 3, 16, 16), dtype=np.uint8)
    pp = from_recipe.input_contract("standardise", x, 16)
    net = build(SPEC, seed=0)
    init_net(net, resolve("default"), x, pp, seed=0)
    return net, pp, x


def test_zero_head_keeps_lsuv_below_it_and_zeroes_the_head():
    plain, _, _ = _started(from_recipe.init_net)
    net, _, _ = _started(_bench().head_hook("zero", say=lambda m: None))
    assert not np.any(to_numpy(net["fc8"].params["w"])) and not np.any(to_numpy(net["fc8"].params["b"]))
    assert np.any(to_numpy(plain["fc8"].params["w"]))
    np.testing.assert_array_equal(to_numpy(net["conv1"].params["w"]), to_numpy(plain["conv1"].params["w"]))


def test_train_std_head_is_lsuv_head_scaled_to_unit_training_std():
    plain, _, _ = _started(from_recipe.init_net)
    said = []
    net, pp, x = _started(_bench().head_hook("train-std", say=said.append))
    ratio = to_numpy(net["fc8"].params["w"]) / to_numpy(plain["fc8"].params["w"])  # one factor for every entry
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
    s = float(said[0].split("divided by ")[1].split(",")[0])
    assert ratio.flat[0] == pytest.approx(1 / s, rel=2e-3)
    xb = from_recipe.lsuv_batch(net, x, pp, seed=0)  # the batch LSUV and the hook measured on (all 24 images)
    stds = [float(to_numpy(net.forward(xb, train=True)).std()) for _ in range(8)]
    assert 0.5 < np.mean(stds) < 2.0  # unit std up to the dropout draws
