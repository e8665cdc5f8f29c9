"""rawcnn.engine.conv_algo: the per-layer choice between im2col and Winograd, its cache, and --conv-algo.

Arrange, act, compare: the choice never changes the function a layer computes (float64 agrees to
round-off), forced modes are obeyed where Winograd applies, the cache is JSON written by rename.
"""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from kernels import get_backend
from rawcnn.engine import conv_algo
from rawcnn.engine.layers import Conv2d, WeightInit


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAWCNN_CACHE_DIR", str(tmp_path / "cache"))


def _conv(C=32, F=32, k=3, s=1, p=1, g=1, algo=None, dtype=np.float64):
    layer = Conv2d(C, F, k, s, p, g, name="c", init=WeightInit(0.1, np.random.default_rng(0), dtype))
    if algo in conv_algo.ALGOS:
        layer.set_algo(algo)  # the mode, and layer.algo settled for it
    else:
        layer.conv_algo = algo  # None, or a bad mode that choose() itself must refuse
    return layer


def test_choice_rules():
    x_shape = (2, 32, 50, 50)
    assert conv_algo.choose(_conv(algo="im2col"), x_shape, np.float32) == "im2col"
    assert conv_algo.choose(_conv(algo="winograd"), x_shape, np.float32) == "winograd"
    # Winograd does not apply: stride 2, a 1x1 kernel -> im2col even when forced; a 5x5 or 7x7
    # kernel runs as 3x3 pieces when forced, and auto takes it for 5x5 only (the measured size)
    assert conv_algo.choose(_conv(s=2, algo="winograd"), x_shape, np.float32) == "im2col"
    assert conv_algo.choose(_conv(k=1, p=0, algo="winograd"), x_shape, np.float32) == "im2col"
    assert conv_algo.choose(_conv(k=5, p=2, algo="winograd"), x_shape, np.float32) == "winograd"
    assert conv_algo.choose(_conv(k=7, p=3, algo="winograd"), x_shape, np.float32) == "winograd"
    assert conv_algo.choose(_conv(k=5, p=2), x_shape, np.float32) == "winograd"
    assert conv_algo.choose(_conv(k=7, p=3), x_shape, np.float32) == "im2col"
    assert conv_algo.choose(_conv(k=5, p=2, s=2), x_shape, np.float32) == "im2col"
    # auto with an empty cache: table_choice, Winograd on the cpu tier (measured faster on every
    # 3x3 stride-1 layer of the three nets but the 3-channel first one), the plain im2col
    # definition on the reference tier
    assert conv_algo.choose(_conv(), x_shape, np.float32) == "winograd"
    assert conv_algo.choose(_conv(C=3), (2, 3, 50, 50), np.float32) == "im2col"
    assert conv_algo.choose(_conv(C=32, g=4), x_shape, np.float32) == "im2col"  # 8 channels per group
    ref_layer = _conv()
    ref_layer.be = get_backend("reference")
    assert conv_algo.choose(ref_layer, x_shape, np.float32) == "im2col"
    with pytest.raises(ValueError, match="conv_algo must be one of"):
        conv_algo.choose(_conv(algo="fft"), x_shape, np.float32)
    with pytest.raises(ValueError, match="--conv-algo must be one of"):
        conv_algo.check_mode("fft")
    with pytest.raises(ValueError, match="--conv-algo must be one of"):
        _conv().set_algo("fft")


def test_tune_writes_json_that_auto_reads(tmp_path):
    layer = _conv(algo="tune", dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((2, 32, 12, 12)).astype(np.float32)
    algo = conv_algo.choose(layer, x.shape, x.dtype, x=x)
    table = json.loads((tmp_path / "cache" / "conv_algo.json").read_text())
    (key, entry), = table.items()
    assert entry["algo"] == algo and entry["im2col_s"] > 0 and entry["winograd_s"] > 0
    assert "N2C32H12W12F32k3x3s1x1p1x1g1" in key and "float32" in key
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]
    # auto uses the measured entry, even against the table's rule
    other = "im2col" if algo == "winograd" else "winograd"
    conv_algo.store(key, {"algo": other})
    assert conv_algo.choose(_conv(dtype=np.float32), x.shape, x.dtype) == other


def test_cache_key_tells_apart_layers_that_differ_only_in_kernel_or_stride(tmp_path):
    x_shape = (2, 32, 27, 27)
    keys = {conv_algo.cache_key(_conv(k=k, s=s, p=2), x_shape, np.float32) for k, s in ((3, 1), (5, 1), (5, 2))}
    assert len(keys) == 3
    # an entry measured for the 5x5 layer is not taken for the 3x3 one of the same input and padding
    conv_algo.store(conv_algo.cache_key(_conv(k=5, p=2), x_shape, np.float32), {"algo": "im2col"})
    assert conv_algo.choose(_conv(k=5, p=2), x_shape, np.float32) == "im2col"
    assert conv_algo.choose(_conv(k=3, p=2), x_shape, np.float32) == conv_algo.static_choice(_conv(k=3, p=2))


def test_unreadable_cache_falls_back_to_the_table(tmp_path):
    layer, x_shape = _conv(), (1, 32, 50, 50)
    conv_algo.store(conv_algo.cache_key(layer, x_shape, np.float64), {"algo": "im2col"})
    assert conv_algo.choose(layer, x_shape, np.float64) == "im2col"  # the entry, against the table
    (tmp_path / "cache" / "conv_algo.json").write_text("{not json")
    assert conv_algo.choose(layer, x_shape, np.float64) == conv_algo.table_choice(32, 32, 1, 50, 50) == "winograd"


@pytest.mark.parametrize("p, g", [(1, 1), (0, 2)])
def test_layer_contract_is_the_same_for_both_algorithms(p, g):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 32, 10, 9))
    outs = {}
    for algo in ("im2col", "winograd"):
        layer = _conv(p=p, g=g, algo=algo)
        y = layer.forward(x, train=True)
        dy = np.random.default_rng(3).standard_normal(y.shape)
        dx = layer.backward(dy)
        assert layer.algo == algo and set(layer.grads) == {"w", "b"}
        outs[algo] = (y, dx, layer.grads["w"], layer.grads["b"])
    for a, b in zip(outs["im2col"], outs["winograd"], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(a).max())


@pytest.mark.parametrize("algo, buffers", [("im2col", {"cols", "cols_x", "dw_part", "dw_acc"}),
                                           ("winograd", {"cols", "winograd_V", "winograd_M", "winograd_dUt"})])
def test_workspace_is_reused_across_steps(algo, buffers):
    # the column and transform buffers are allocated at the first step and reused after
    layer = _conv(algo=algo, dtype=np.float32)
    x = np.random.default_rng(4).standard_normal((2, 32, 16, 16)).astype(np.float32)
    for step in range(3):
        y = layer.forward(x, train=True)
        layer.backward(np.ones_like(y))
        if step == 0:
            first = {k: v.ctypes.data for k, v in layer.workspace.items()}
    assert set(first) == buffers
    assert {k: v.ctypes.data for k, v in layer.workspace.items()} == first  # no buffer reallocated


def test_alexnet_conv1_runs_winograd_by_space_to_depth():
    # a strided kernel spanning three blocks of the stride runs Winograd by space-to-depth: auto takes
    # it on the cpu tier for AlexNet's conv1 (11x11 stride 4, the one measured: bench/bench_first_layers.py),
    # forced only for others; the layer contract and its function stay those of im2col
    x_shape = (2, 3, 39, 39)
    assert conv_algo.choose(_conv(C=3, F=8, k=11, s=4, p=0), x_shape, np.float64) == "winograd"
    assert conv_algo.choose(_conv(C=3, F=8, k=11, s=4, p=0, algo="im2col"), x_shape, np.float64) == "im2col"
    assert conv_algo.choose(_conv(C=3, k=5, s=2, p=2, algo="winograd"), (2, 3, 20, 20), np.float64) == "winograd"
    assert conv_algo.choose(_conv(C=3, k=7, s=2, p=0, algo="winograd"), (2, 3, 20, 20), np.float64) == "im2col"
    x = np.random.default_rng(5).standard_normal(x_shape)
    outs = {}
    for algo in ("im2col", "winograd"):
        layer = _conv(C=3, F=8, k=11, s=4, p=1, algo=algo)
        y = layer.forward(x, train=True)
        dx = layer.backward(np.random.default_rng(6).standard_normal(y.shape))
        assert layer.algo == algo
        outs[algo] = (y, dx, layer.grads["w"], layer.grads["b"])
    for a, b in zip(outs["im2col"], outs["winograd"], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(a).max())

def test_the_mode_set_on_a_layer_is_what_its_forward_runs():
    layer = _conv()
    x = np.zeros((1, 32, 8, 8))
    layer.set_algo("im2col")
    layer.forward(x)
    assert layer.algo == "im2col"
    layer.set_algo("winograd")
    layer.forward(x)
    assert layer.algo == "winograd"


def test_plan_chooses_and_forward_only_runs_the_choice(tmp_path, monkeypatch):
    # 'tune' times each eligible layer inside plan(); the forward after it neither chooses, reads the
    # cache nor times (Caffe's factory pattern: the engine is chosen when the net is set up)
    from rawcnn.engine.models import build
    net = build("custom", input_shape=(3, 99, 99), seed=0)
    chosen = conv_algo.plan(net, batch=2, mode="tune")
    convs = [l.name for l in net.layers if l.kind == "Conv2d"]
    assert list(chosen) == convs and {l.name: l.algo for l in net.layers if l.kind == "Conv2d"} == chosen
    table = json.loads((tmp_path / "cache" / "conv_algo.json").read_text())
    assert len(table) == 4 and all("N2C" in k for k in table)  # conv2..conv5; conv1 (stride 2) needs none

    def refuse(*a, **k):
        raise AssertionError("an algorithm was chosen inside forward")
    for name in ("choose", "tune", "load_cache", "static_choice"):
        monkeypatch.setattr(conv_algo, name, refuse)
    x = np.random.default_rng(6).standard_normal((2, 3, 99, 99)).astype(np.float32)
    net.forward(x, train=True)
    assert {l.name: l.algo for l in net.layers if l.kind == "Conv2d"} == chosen


def test_moving_a_net_plans_it_again_for_the_new_backend():
    from rawcnn.engine.models import build
    net = build("custom", input_shape=(3, 99, 99), seed=0)
    conv_algo.plan(net, batch=1)
    assert net["conv3"].algo == "winograd"      # auto on the cpu tier: the table
    net.to("reference")
    assert net["conv3"].algo == "im2col"        # the reference tier's auto is the plain definition
    net.to("cpu")
    assert net["conv3"].algo == "winograd"


def test_summary_shows_the_choice():
    run = CliRunner().invoke(cli.main, ["summary", "alexnet", "--conv-algo", "winograd"])
    assert run.exit_code == 0, run.output
    assert "Conv2d(3->96, k=11, s=4, p=0) [winograd]" in run.output  # by space-to-depth
    assert "Conv2d(256->384, k=3, s=1, p=1) [winograd]" in run.output
    run = CliRunner().invoke(cli.main, ["summary", "custom", "--conv-algo", "winograd"])
    assert run.exit_code == 0 and "Conv2d(3->96, k=7, s=2, p=0) [im2col]" in run.output  # Winograd does not apply
    run = CliRunner().invoke(cli.main, ["summary", "alexnet"])  # auto, nothing measured: the table
    assert run.exit_code == 0 and "Conv2d(256->384, k=3, s=1, p=1) [winograd]" in run.output
    assert "Conv2d(3->96, k=11, s=4, p=0) [winograd]" in run.output
    run = CliRunner().invoke(cli.main, ["summary", "alexnet", "--conv-algo", "im2col"])
    assert run.exit_code == 0 and "[winograd]" not in run.output and "[im2col]" in run.output
    run = CliRunner().invoke(cli.main, ["summary", "vgg16", "--conv-algo", "fft"])
    assert run.exit_code != 0 and "fft" in run.output


def test_a_net_shares_one_workspace_across_its_layers():
    from rawcnn.engine.models import build
    net = build("custom", input_shape=(3, 99, 99), seed=0)
    convs = [l for l in net.layers if l.kind == "Conv2d"]
    assert len(convs) == 5 and all(l.workspace is net.workspace for l in convs)
    x = np.random.default_rng(5).standard_normal((2, 3, 99, 99)).astype(np.float32)
    conv_algo.plan(net, batch=2, mode="winograd")
    net.forward(x, train=True)
    assert {"cols", "winograd_V"} <= set(net.workspace)  # conv1 (7x7) im2col, conv2..5 Winograd
