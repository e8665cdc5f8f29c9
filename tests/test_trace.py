"""rawcnn.app.trace and `rawcnn trace`: per-layer forward statistics and gradient norms of one image."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import cli
from rawcnn.app.trace import format_trace, trace
from rawcnn.engine import models

SPEC = {"name": "tiny", "input": [2, 6, 6], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 3, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 5},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Dropout", "name": "drop1", "p": 0.5},
    {"type": "Linear", "name": "fc2", "out_features": 3},
    {"type": "Softmax", "name": "prob"}]}


def net64():
    return models.build(SPEC, seed=2, weight_std=0.5).astype(np.float64)


def test_forward_statistics_are_those_of_each_layers_output():
    net = net64()
    x = np.random.default_rng(0).standard_normal((2, 6, 6))
    t = trace(net, x)
    acts = net.activations(x[None], net.names())
    assert [r.name for r in t.rows] == net.names()
    for r in t.rows:
        a = acts[r.name][0]
        assert r.shape == a.shape and (r.min, r.max) == (a.min(), a.max()) and np.isclose(r.mean, a.mean())
        if r.kind == "ReLU":
            assert r.zero_fraction == np.mean(a == 0)
        else:
            assert r.zero_fraction is None
    assert t.class_index == int(np.argmax(acts["fc2"][0]))
    np.testing.assert_allclose(t.probs, acts["prob"][0], rtol=1e-12)


def test_gradient_norms_match_finite_differences_and_the_closed_form_of_the_head():
    net = net64()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 6, 6))
    t = trace(net, x, class_index=1)

    def loss(xx):
        logits = net.forward(xx, upto="fc2")[0]
        return float(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[1])

    assert np.isclose(t.loss, loss(x), rtol=1e-12)
    num = np.zeros(x.size)
    for i in range(x.size):  # centred differences of the test-time loss w.r.t. every input pixel
        e = np.zeros(x.size)
        e[i] = 1e-6
        num[i] = (loss(x + e.reshape(x.shape)) - loss(x - e.reshape(x.shape))) / 2e-6
    assert abs(t.grad_input - np.linalg.norm(num)) < 1e-6 * max(1.0, np.linalg.norm(num))
    # the head by hand: dlogits = p - onehot(1); dW2 = outer(dlogits, h), h = Dropout's (identity) output
    h = net.activations(x, ["drop1"])["drop1"][0]
    d = t.probs - np.eye(3)[1]
    row = {r.name: r for r in t.rows}
    assert np.isclose(row["fc2"].grad_out, np.linalg.norm(d))
    assert np.isclose(row["fc2"].grads["w"], np.linalg.norm(np.outer(d, h)))
    assert np.isclose(row["fc2"].grads["b"], np.linalg.norm(d))
    assert row["prob"].grad_out is None and set(row["conv1"].grads) == {"w", "b"}


def test_trace_leaves_the_net_as_it_was():
    net = net64()
    net.freeze_through("pool1")
    flags = [(l.need_dx, l.trainable) for l in net.layers]
    trace(net, np.zeros((2, 6, 6)))
    assert [(l.need_dx, l.trainable) for l in net.layers] == flags
    assert all(not l.grads for l in net.layers)
    with pytest.raises(ValueError, match="outside the 3 classes"):
        trace(net, np.zeros((2, 6, 6)), class_index=3)
    with pytest.raises(ValueError, match="one image"):
        trace(net, np.zeros((2, 2, 6, 6)))


def test_cli_trace_random_image_and_errors(tmp_path):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(SPEC))
    r = CliRunner().invoke(cli.main, ["trace", str(spec), "--random", "--seed", "3"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "output"] and lines[1].split()[:3] == ["conv1", "Conv2d", "3x6x6"]
    assert "loss -log p[" in lines[-1]
    again = CliRunner().invoke(cli.main, ["trace", str(spec), "--random", "--seed", "3"])
    assert again.output == r.output  # same seed, same table
    png = tmp_path / "x.png"
    cv2.imwrite(str(png), (np.arange(100).reshape(10, 10) * 2).astype(np.uint8))
    r = CliRunner().invoke(cli.main, ["trace", str(spec), "--input", str(png), "--class-index", "0"])
    assert r.exit_code == 0 and "loss -log p[0]" in r.output, r.output
    r = CliRunner().invoke(cli.main, ["trace", str(spec)])
    assert r.exit_code != 0 and "--input IMAGE or --random" in r.output


def test_format_has_one_line_per_layer_and_a_summary():
    net = net64()
    text = format_trace(trace(net, np.ones((2, 6, 6))))
    assert len(text.splitlines()) == len(net.layers) + 2


def test_cli_trace_of_a_checkpoint(tmp_path):
    from rawcnn.engine.checkpoint import save_checkpoint
    net = models.build(SPEC, seed=4)
    save_checkpoint(tmp_path / "tiny.h5", net)
    r = CliRunner().invoke(cli.main, ["trace", str(tmp_path / "tiny.h5"), "--random"])
    assert r.exit_code == 0, r.output
    want = format_trace(trace(net, np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)))
    assert r.output.strip() == want.strip()
