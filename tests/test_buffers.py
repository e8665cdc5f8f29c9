"""Buffer reuse (no per-step allocation): the kernels' out= arrays, and the layers' kept buffers
while Net.reusing_buffers() is on (train() turns it on). Tiny seeded nets; a few seconds."""
import contextlib

import numpy as np
import pytest

import kernels
import out_cases
from rawcnn.engine import models
from rawcnn.engine.layers.softmax import SoftmaxCrossEntropy
from rawcnn.engine.net import Net
from rawcnn.engine.optim import SGD
from rawcnn.training import train as train_mod
from rawcnn.training.recipes import resolve

# custom-like: conv with groups, ReLU, LRN, max-pool, a Winograd conv, dropout, two Linear layers
SPEC = {"name": "tiny-custom", "input": [3, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 8, "kernel_size": 5, "stride": 1, "padding": 2},
    {"type": "ReLU", "name": "relu1"},
    {"type": "LRN", "name": "norm1", "size": 5, "alpha": 1e-3, "beta": 0.75, "k": 2.0},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 3, "stride": 2},
    {"type": "Conv2d", "name": "conv2", "out_channels": 8, "kernel_size": 3, "padding": 1, "groups": 2},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Conv2d", "name": "conv3", "out_channels": 8, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu3"},
    {"type": "MaxPool2d", "name": "pool2", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 16},
    {"type": "ReLU", "name": "relu4"},
    {"type": "Dropout", "name": "drop1", "p": 0.5},
    {"type": "Linear", "name": "fc2", "out_features": 3}]}
BATCHES = (8, 8, 5)  # the last, smaller batch takes views of the first batch's buffers


def new_net():
    net = models.build(SPEC, seed=3, weight_std=0.1)
    net["conv2"].set_algo("im2col")
    net["conv3"].set_algo("winograd")
    return net


def data():
    rng = np.random.default_rng(5)
    n = sum(BATCHES)
    return rng.standard_normal((n, 3, 16, 16)).astype(np.float32), rng.integers(0, 3, n)


def steps(net, reuse, after_step=None):
    """Train len(BATCHES) SGD steps on fixed data; returns the weights."""
    x, y = data()
    crit, opt = SoftmaxCrossEntropy(), SGD(net, lr=0.05, momentum=0.9, weight_decay=5e-4)
    with net.reusing_buffers(reuse):
        i = 0
        for step, B in enumerate(BATCHES):
            logits = net.forward(x[i:i + B], train=True)
            crit.forward(logits, y[i:i + B])
            net.backward(crit.backward(), input_grad=False)
            opt.step()
            i += B
            if after_step is not None:
                after_step(step)
    return net.state_dict()


def addresses(net):
    """(layer, role) -> address of every kept buffer, plus ('dx pool', slot) for the net's two dx slots."""
    out = {(l.name, role): a.ctypes.data for l in net for role, a in (l.buffers or {}).items()}
    pool = net.layers[0].dx_pool or []
    out.update({("dx pool", i): a.ctypes.data for i, a in enumerate(pool) if a is not None})
    return out


# -- (a) the kernels' out= arrays ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_write_into_given_arrays_and_reject_wrong_ones(be, dtype):
    for case in out_cases.cases(be, dtype):
        out_cases.check(be, case)


def test_wrong_out_message_names_op_and_shapes():
    be = kernels.get_backend("cpu")
    x = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"lrn_forward: out_scale \(2, 3, 4, 5\) float32 must be a "
                                         r"C-contiguous \(2, 3, 4, 4\) float32 array"):
        be.lrn.lrn_forward(x, size=3, alpha=1e-4, beta=0.75, k=1.0, out_scale=np.empty((2, 3, 4, 5), np.float32))


def test_dropout_mask_draws_into_a_given_work_array(be):
    want = be.dropout.dropout_mask((4, 6), p=0.4, rng=np.random.default_rng(3), dtype=np.float32)
    work = np.full((4, 6), np.nan)
    got = be.dropout.dropout_mask((4, 6), p=0.4, rng=np.random.default_rng(3), dtype=np.float32, work=work)
    assert got.tobytes() == want.tobytes() and np.all((work >= 0) & (work < 1))
    with pytest.raises(ValueError, match=r"dropout_mask: work \(4, 6\) float32 .*\(4, 6\) float64"):
        be.dropout.dropout_mask((4, 6), p=0.4, rng=np.random.default_rng(3), dtype=np.float32,
                                work=np.empty((4, 6), np.float32))


# -- (b) reuse on gives the same training as reuse off ---------------------------------------------
def test_three_steps_bit_identical_with_and_without_reuse():
    off, on = steps(new_net(), False), steps(new_net(), True)
    for name in off:
        for key in off[name]:
            assert off[name][key].tobytes() == on[name][key].tobytes(), f"{name}/{key} differs"


def test_train_is_the_same_with_reuse_as_without(tmp_path, monkeypatch):
    # train() turns reuse on around its epochs (train and validation steps); the same run with
    # reuse kept off must give the same weights and history
    x, y = data()
    split = ((x[:16], y[:16]), (x[16:], y[16:]))  # 16 train (batches 6, 6, 4), 5 validation images
    recipe = resolve("paper", epochs=2, batch_size=6, lr=0.05)
    run = dict(seed=1, progress=False, log=lambda m: None)
    used = []
    real = Net.reusing_buffers

    def spy(self, on=True):
        used.append(on)
        return real(self, on)
    monkeypatch.setattr(Net, "reusing_buffers", spy)
    r_on = train_mod.train(new_net(), split, recipe, train_mod.Run(out_dir=str(tmp_path / "on"), **run))
    assert True in used
    monkeypatch.setattr(Net, "reusing_buffers", lambda self, on=True: contextlib.nullcontext(self))
    r_off = train_mod.train(new_net(), split, recipe, train_mod.Run(out_dir=str(tmp_path / "off"), **run))
    assert r_on["status"] == r_off["status"] == "completed"
    def strip(history):  # repr: val_auc is NaN with 3 classes
        return repr([{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in history])
    assert strip(r_on["history"]) == strip(r_off["history"])
    from rawcnn.engine.checkpoint import read_checkpoint
    a, b = read_checkpoint(r_on["last_checkpoint"]), read_checkpoint(r_off["last_checkpoint"])
    for name in a["params"]:
        for key in a["params"][name]:
            assert np.array_equal(a["params"][name][key], b["params"][name][key]), f"{name}/{key}"


# -- (c) no new buffer after the first step ----------------------------------------------------------
def test_training_step_allocates_no_new_buffer_after_the_first():
    net = new_net()
    seen = []

    def record(step):
        seen.append(addresses(net))
        for l in net:  # the gradients the optimizer read are the kept buffers
            if l.trainable and l.params:
                assert l.grads["w"].ctypes.data == l.buffers["dw"].ctypes.data, l.name
                assert l.grads["b"].ctypes.data == l.buffers["db"].ctypes.data, l.name
    steps(net, True, record)
    first = seen[0]
    roles = {}
    for name, role in first:
        roles.setdefault(name, set()).add(role)
    # every layer that computes has its outputs there (Flatten: views; a Conv2d or Linear below a
    # ReLU: in the ReLU's y, rectified in place); every dx is in the net's two shared slots, both in use
    assert roles["conv1"] == roles["conv2"] == roles["conv3"] == roles["fc1"] == {"dw", "db"}
    assert roles["fc2"] == {"y", "dw", "db"}
    assert roles["relu1"] == {"y"} and roles["norm1"] == {"y", "scale"}
    assert roles["pool1"] == {"y", "argmax"} and roles["drop1"] == {"mask", "uniform", "y"}
    assert "flatten" not in roles and roles["dx pool"] == {0, 1}
    assert seen[1] == first and seen[2] == first  # steps 2 and 3 (a smaller batch) reuse every buffer


@pytest.mark.parametrize("fuse_relu", [True, False])
def test_dx_never_lands_on_the_dy_it_reads(monkeypatch, fuse_relu):
    # every backward reads dy from one dx slot and writes its dx into the other one; with the ReLUs fused
    # (Net.fuse_relu), relu1's backward runs inside norm1's and relu1 passes that dx on, writing none of its own
    from rawcnn.engine.layers.base import Layer
    net = new_net()
    net.fuse_relu = fuse_relu
    real, seen = Layer.buffer, []

    def spy(self, role, shape, dtype, avoid=None):
        out = real(self, role, shape, dtype, avoid)
        if role == "dx" and out is not None:
            assert avoid is not None, self.name
            seen.append(self.name)
            assert not np.shares_memory(out, avoid), f"{self.name}: dx overlaps its dy"
        return out
    monkeypatch.setattr(Layer, "buffer", spy)
    steps(net, True)
    assert {"norm1", "pool1", "drop1", "conv2", "fc2"} <= set(seen)
    assert ("relu1" in seen) is not fuse_relu


def test_no_two_buffers_share_memory():
    net = new_net()
    steps(net, True)
    net.reuse_buffers(True)  # steps() restored the state: look at buffers kept by a reuse that stays on
    steps(net, True)
    arrays = [(l.name, role, a) for l in net for role, a in l.buffers.items()]
    assert len(arrays) > 20
    for i, (n1, r1, a1) in enumerate(arrays):
        for n2, r2, a2 in arrays[i + 1:]:
            assert not np.shares_memory(a1, a2), f"{n1}/{r1} and {n2}/{r2} overlap"
    net.reuse_buffers(False)
    assert all(l.buffers is None for l in net)


def test_relu_rectifies_the_conv_or_linear_output_below_it_in_place():
    # Caffe's in-place ReLU: conv1 writes its y into relu1's kept y, and relu1 rectifies it there
    # (their backwards read the conv's input and the ReLU's output only); the steps' bits are those
    # without reuse (test_three_steps_bit_identical_with_and_without_reuse)
    net = new_net()
    x = data()[0][:4]
    with net.reusing_buffers():
        a = net.forward(x, upto="conv1", train=True)  # (4, 8, 16, 16)
        want = np.maximum(a, 0)
        y = net.forward(a, after="conv1", upto="relu1", train=True)
        assert np.shares_memory(a, net["relu1"].buffers["y"]) and np.shares_memory(a, y)
        np.testing.assert_array_equal(y, want)
        below_relu = {"conv1", "conv2", "conv3", "fc1"}
        for l, above in zip(net.layers, net.layers[1:] + [None], strict=True):
            assert (l.y_store is above.buffers) if l.name in below_relu else l.y_store is None, l.name
    assert all(l.y_store is None for l in net)  # reuse off: every layer returns fresh arrays again


# -- (d) without reuse (the default), every forward returns fresh arrays ------------------------------
def test_forwards_return_distinct_arrays_without_reuse():
    net = new_net()
    x = data()[0][:4]
    assert all(l.buffers is None for l in net)
    y1, y2 = net.forward(x), net.forward(x)
    assert y1 is not y2 and not np.shares_memory(y1, y2)
    a1, a2 = net.activations(x, ["conv1", "norm1", "pool2"]), net.activations(x, ["conv1", "norm1", "pool2"])
    for name in a1:
        assert not np.shares_memory(a1[name], a2[name]), name
        np.testing.assert_array_equal(a1[name], a2[name])


def test_reuse_on_overwrites_and_predict_activations_probe_stay_fresh():
    net = new_net()
    x = data()[0][:4]
    want = net.predict(x, batch_size=2)
    with net.reusing_buffers():
        y1 = net.forward(x)
        y2 = net.forward(x[::-1].copy())
        assert np.shares_memory(y1, y2)  # the same buffer, overwritten: callers must copy
        np.testing.assert_array_equal(net.predict(x, batch_size=2), want)  # batches not overwritten
        acts = net.activations(x, ["relu1"])
        assert not np.shares_memory(acts["relu1"], net["relu1"].buffers["y"])
        with net.probe():
            assert net["relu1"].buffers is None
        assert net["relu1"].buffers is not None  # the kept buffers are back after the probe
    assert all(l.buffers is None for l in net)


# -- the trainer's input conversion ------------------------------------------------------------------
@pytest.mark.parametrize("order, std, channels, net_channels", [
    ("RGB", None, 3, 3), ("BGR", (58.4, 57.1, 57.4), 3, 3), ("BGR", None, 3, 1), ("RGB", None, 1, 3),
    ("RGB", (2.0, 2.0, 2.0), 1, 1)])
def test_input_conversion_into_a_kept_buffer_is_bit_identical(order, std, channels, net_channels):
    from rawcnn.data.preprocessing import Preprocessing
    mean = (104.0, 116.7, 122.7) if net_channels == 3 else (117.0, 117.0, 117.0)
    pp = Preprocessing(channel_order=order, mean=mean, scale=1.0 if std else 0.5, std=std, input_size=(9, 9),
                       resize="direct", name="t")
    spec = {"name": "t", "input": [net_channels, 9, 9], "layers": [
        {"type": "Conv2d", "name": "c", "out_channels": 2, "kernel_size": 3}]}
    net = models.build(spec, seed=0)
    to_input = train_mod.make_to_input(net, pp)
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (B, channels, 9, 9), dtype=np.uint8) for B in (4, 4, 3)]
    want = [to_input(b) for b in batches]  # reuse off: the ordinary path, fresh arrays
    assert not np.shares_memory(want[0], want[1])
    with net.reusing_buffers():
        got = [to_input(b).copy() for b in batches]
        kept = to_input(batches[0])
        assert to_input(batches[1]).ctypes.data == kept.ctypes.data  # one buffer, no new one
        resized = to_input(rng.integers(0, 256, (2, channels, 12, 12), dtype=np.uint8))  # needs a resize
        assert not np.shares_memory(resized, kept)  # the ordinary path
    for w, g in zip(want, got, strict=True):
        assert w.shape == g.shape == (w.shape[0], net_channels, 9, 9) and g.dtype == np.float32
        assert w.tobytes() == g.tobytes()


def test_float_input_cast_into_a_kept_buffer():
    net = new_net()
    to_input = train_mod.make_to_input(net, None)
    x = data()[0][:4].astype(np.float64)
    want = to_input(x)
    with net.reusing_buffers():
        a = to_input(x)
        assert a.dtype == np.float32 and a.tobytes() == want.tobytes()
        assert to_input(x[:3]).ctypes.data == a.ctypes.data
        x32 = x.astype(np.float32)
        assert to_input(x32) is x32 or np.shares_memory(to_input(x32), x32)  # no cast needed: no copy


# -- streaming(): test-time forwards in two alternating output buffers ------------------------------
def test_streaming_forward_is_bit_identical_and_uses_two_slots_only():
    # every layer writes into the slot its input is not in: the outputs are the fresh-array forward's
    # bits, a forward after the first allocates nothing, and no layer ever writes where it reads
    from rawcnn.engine.layers.base import Layer
    net = new_net()
    x = data()[0]
    want = [net.forward(x[:8]), net.forward(x[8:16]), net.forward(x[16:])]  # fresh arrays (the last: 5)
    real, writes = Layer.buffer, []

    def spy(self, role, shape, dtype, avoid=None):
        out = real(self, role, shape, dtype, avoid)
        writes.append((self.name, role, out))
        return out
    with net.streaming():
        got, slot_ids = [], []
        for lo, hi in ((0, 8), (8, 16), (16, 21)):
            writes.clear()
            Layer.buffer = spy
            try:
                y = net.forward(x[lo:hi])
            finally:
                Layer.buffer = real
            got.append(y.copy())
            ids = sorted({id(buf) for slot in net._slots for buf in slot.values()})
            slot_ids.append(ids)
            assert all(out is not None for _, _, out in writes)  # every output went to a slot
            assert np.shares_memory(y, net._slots[0]["y"]) or np.shares_memory(y, net._slots[1]["y"])
        assert slot_ids[1] == slot_ids[0] and slot_ids[2] == slot_ids[0]  # batches 2, 3 reuse every buffer
        # the input of each layer is never in the buffer it writes, but a ReLU's: it rectifies the slot
        # its input lies in, in place
        with net.streaming():
            a = x[:8]
            relus = 0
            for l in net:
                a_before = a.copy()
                y = net.forward(a, after=None if l is net.layers[0] else net.layers[net.layers.index(l) - 1].name,
                                upto=l.name)
                if l.kind == "ReLU" and l is not net.layers[0]:
                    assert y.ctypes.data == a.ctypes.data and y.shape == a.shape, l.name
                    np.testing.assert_array_equal(y, np.maximum(a_before, 0))
                    relus += 1
                elif l.kind not in ("Dropout", "Flatten"):  # those two return their input (or a view of it)
                    assert not np.shares_memory(y, a), l.name
                a = y
            assert relus >= 2
        # a ReLU given an array of the caller's (not in a slot) leaves it alone
        with net.streaming():
            relu = next(l for l in net if l.kind == "ReLU")
            below = net.layers[net.layers.index(relu) - 1].name
            a = net.forward(x[:4], upto=below).copy()
            a_before = a.copy()
            y = net.forward(a, after=below, upto=relu.name)
            np.testing.assert_array_equal(a, a_before)
            assert not np.shares_memory(y, a)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert net._slots is None and all(l.buffers is None for l in net)


def test_streaming_leaves_training_probes_and_kept_buffers_alone():
    net = new_net()
    x, labels = data()
    with net.streaming():
        a = net.forward(x[:4], train=True)  # training forward: fresh arrays, not in the slots
        assert not any(np.shares_memory(a, buf) for slot in net._slots for buf in slot.values())
        with net.probe():
            assert all(l.buffers is None for l in net)
    with net.reusing_buffers():
        net.forward(x[:4], train=True)
        kept = {l.name: dict(l.buffers) for l in net}
        p = net.predict(x[:6], batch_size=4)  # streams inside a training's reuse, then gives it back
        assert {l.name: dict(l.buffers) for l in net}.keys() == kept.keys()
        for l in net:
            assert all(l.buffers[r] is kept[l.name][r] for r in kept[l.name]), l.name
    np.testing.assert_array_equal(p, net.predict(x[:6], batch_size=6))
