"""SGD (momentum, L2 on weights only, lr_mult, frozen layers, state round trip) and the plateau schedule.

Expected values are worked out by hand in the comments, or by a plain NumPy loop written here.
"""
import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.engine.optim import SGD, ReduceOnPlateau, WeightAverage

BACKEND = "cpu"

TWO_LINEAR = {"name": "two_linear", "input": [1, 2, 2], "layers": [
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc1", "out_features": 3},
    {"type": "ReLU", "name": "relu1"},
    {"type": "Linear", "name": "fc2", "out_features": 2}]}

ONE_WEIGHT = {"name": "one", "input": [1, 1, 1], "layers": [
    {"type": "Flatten", "name": "flatten"}, {"type": "Linear", "name": "fc", "out_features": 1}]}


def net_with_grads(spec, seed, dtype=np.float64):
    """A net whose grads are set by hand (random), so the update alone is under test."""
    net = models.build(spec, seed=seed, dtype=dtype, weight_std=0.5).to(BACKEND)
    rng = np.random.default_rng(seed + 100)
    for layer, key, w, _ in net.parameters():
        layer.grads[key] = rng.standard_normal(w.shape).astype(dtype)
    return net


def test_one_weight_two_steps_by_hand():
    # w = 1, b = 0, dw = 0.5, db = 0.2, lr 0.1, momentum 0.9, L2 0.01 (weights only):
    # step 1: v_w = -0.1 * (0.5 + 0.01 * 1) = -0.051, w = 0.949;  v_b = -0.1 * 0.2 = -0.02, b = -0.02
    # step 2: v_w = 0.9 * -0.051 - 0.1 * (0.5 + 0.01 * 0.949) = -0.0459 - 0.0509490 = -0.096849, w = 0.852151
    #         v_b = 0.9 * -0.02 - 0.1 * 0.2 = -0.038, b = -0.058
    net = models.build(ONE_WEIGHT, seed=0, dtype=np.float64).to(BACKEND)
    fc = net["fc"]
    fc.params["w"][...] = 1.0
    opt = SGD(net, lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(2):
        fc.grads = {"w": np.full((1, 1), 0.5), "b": np.full(1, 0.2)}
        opt.step()
    np.testing.assert_allclose(fc.params["w"], [[0.852151]], rtol=1e-12)
    np.testing.assert_allclose(fc.params["b"], [-0.058], rtol=1e-12)
    np.testing.assert_allclose(opt.state()["fc"]["w"], [[-0.096849]], rtol=1e-12)


def test_matches_a_hand_written_loop_with_lr_mult_and_bias_decay_option():
    for decay_biases in (False, True):
        net = net_with_grads(TWO_LINEAR, seed=1)
        net["fc2"].lr_mult = 10.0
        lr, m, wd = 0.01, 0.9, 5e-4
        expect = {(l.name, k): (w.copy(), np.zeros_like(w)) for l, k, w, _ in net.parameters()}
        opt = SGD(net, lr=lr, momentum=m, weight_decay=wd, decay_biases=decay_biases)
        for _ in range(3):
            for layer, key, _, dw in net.parameters():
                w0, v0 = expect[(layer.name, key)]
                decay = wd if (key == "w" or decay_biases) else 0.0
                v1 = m * v0 - lr * layer.lr_mult * (dw + decay * w0)
                expect[(layer.name, key)] = (w0 + v1, v1)
            opt.step()
        for layer, key, w, _ in net.parameters():
            np.testing.assert_allclose(w, expect[(layer.name, key)][0], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(opt.state()[layer.name][key], expect[(layer.name, key)][1],
                                       rtol=1e-12, atol=1e-15)


def test_biases_are_not_decayed_by_default():
    # zero gradient: a weight shrinks by lr * wd * w, a bias stays put
    net = net_with_grads(TWO_LINEAR, seed=2)
    for layer, key, w, _ in net.parameters():
        layer.grads[key] = np.zeros_like(w)
        w[...] = 2.0
    SGD(net, lr=0.1, momentum=0.0, weight_decay=0.5).step()
    for _, key, w, _ in net.parameters():
        np.testing.assert_allclose(w, 2.0 - 0.1 * 0.5 * 2.0 if key == "w" else 2.0, rtol=1e-14)


def test_frozen_layers_and_layers_without_grads_are_left_alone():
    net = net_with_grads(TWO_LINEAR, seed=3)
    net["fc1"].trainable = False
    net["fc2"].grads = {}
    before = {(l.name, k): w.copy() for l, k, w, _ in net.parameters()}
    opt = SGD(net, lr=0.1)
    opt.step()
    for layer, key, w, _ in net.parameters():
        np.testing.assert_array_equal(w, before[(layer.name, key)])
    assert opt.state() == {}


def test_state_round_trip_continues_identically():
    a, b = net_with_grads(TWO_LINEAR, seed=4), net_with_grads(TWO_LINEAR, seed=4)
    opt_a = SGD(a, lr=0.05)
    opt_a.step()
    b.load_state_dict(a.state_dict())
    opt_b = SGD(b, lr=0.05)
    opt_b.load_state(opt_a.state())
    opt_a.step()
    opt_b.step()
    for (_, _, wa, _), (_, _, wb, _) in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_load_state_rejects_wrong_shapes_and_names():
    net = net_with_grads(TWO_LINEAR, seed=5)
    opt = SGD(net)
    with pytest.raises(ValueError, match=r"fc1/w has shape \(2, 2\), the parameter \(3, 4\)"):
        opt.load_state({"fc1": {"w": np.zeros((2, 2))}})
    with pytest.raises(ValueError, match="no parameter fc9/w"):
        opt.load_state({"fc9": {"w": np.zeros((2, 2))}})


@pytest.mark.parametrize("kw", [{"lr": 0}, {"momentum": 1.0}, {"weight_decay": -1e-4}])
def test_bad_hyper_parameters_raise(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        SGD(net_with_grads(TWO_LINEAR, seed=6), **kw)


def test_plateau_schedule_on_a_scripted_sequence():
    # patience 2, at most 2 drops, lr 1e-3:
    # e1 .50 best | e2 .60 best | e3 .60 wait 1 | e4 .60 wait 2 -> drop 1, lr 1e-4 | e5 .70 best
    # e6 .70 wait 1 | e7 .69 wait 2 -> drop 2, lr 1e-5 | e8 .65 wait 1 | e9 .70 wait 2 -> stop
    accs = [0.50, 0.60, 0.60, 0.60, 0.70, 0.70, 0.69, 0.65, 0.70]
    sched = ReduceOnPlateau(1e-3, patience=2, max_drops=2)
    events, lrs = [], []
    for epoch, acc in enumerate(accs, start=1):
        event, reason = sched.update(epoch, acc)
        events.append(event)
        lrs.append(sched.lr)
        if event == "drop":
            assert "for 2 epochs" in reason
            assert ("lr 0.001 -> 0.0001 (drop 1 of 2)" in reason) or ("lr 0.0001 -> 1e-05 (drop 2 of 2)" in reason)
        if event == "stop":
            assert "0.7000 (epoch 5)" in reason and "after the last of 2 lr drops" in reason
    assert events == [None, None, None, "drop", None, None, "drop", None, "stop"]
    np.testing.assert_allclose(lrs, [1e-3] * 3 + [1e-4] * 3 + [1e-5] * 3, rtol=1e-12)


def test_plateau_without_drops_is_early_stopping_and_state_round_trips():
    sched = ReduceOnPlateau(0.01, patience=3, max_drops=0)
    assert [sched.update(e, a)[0] for e, a in enumerate([0.5, 0.4, 0.5], start=1)] == [None, None, None]
    copy = ReduceOnPlateau(0.01, patience=3, max_drops=0)
    copy.load_state(sched.state())
    assert sched.update(4, 0.45)[0] == copy.update(4, 0.45)[0] == "stop"


@pytest.mark.parametrize("kw", [{"patience": 0}, {"max_drops": -1}, {"factor": 1.0}])
def test_bad_schedule_arguments_raise(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        ReduceOnPlateau(1e-3, **kw)


# -- weight averaging -------------------------------------------------------------------------------
def test_weight_average_by_hand_leaves_frozen_layers_alone():
    # decay 0.5: after the first update (a copy of w0) and a second with w0 + 2: avg = w0 + 1
    net = net_with_grads(TWO_LINEAR, seed=3)
    net["fc1"].trainable = False
    w0 = {(l.name, k): w.copy() for l, k, w, _ in net.parameters()}
    avg = WeightAverage(net, 0.5)
    assert avg.state() is None
    avg.update()
    for _, _, w, _ in net.parameters():
        w += 2.0
    avg.update()
    assert set(avg.state()) == {"fc2"}  # the frozen layer has no average
    with avg.applied():
        np.testing.assert_allclose(net["fc2"].params["w"], w0[("fc2", "w")] + 1.0, rtol=1e-15, atol=1e-15)
        np.testing.assert_array_equal(net["fc1"].params["w"], w0[("fc1", "w")] + 2.0)  # frozen: as it is
        np.testing.assert_array_equal(avg.trained()["fc2"]["w"], w0[("fc2", "w")] + 2.0)
    np.testing.assert_array_equal(net["fc2"].params["w"], w0[("fc2", "w")] + 2.0)


def test_weight_average_state_round_trip_and_refusals():
    net = net_with_grads(TWO_LINEAR, seed=4)
    a = WeightAverage(net, 0.9)
    a.update()
    b = WeightAverage(net, 0.9)
    b.load_state(a.state())
    for _, _, w, _ in net.parameters():
        w *= 3.0
    a.update()
    b.update()
    for n, d in a.state().items():
        for k, v in d.items():
            np.testing.assert_array_equal(v, b.state()[n][k])
    # a parameter without an average (its layer frozen when saved) starts from the weights
    assert b.load_state({"fc1": a.state()["fc1"], "fc2": {"w": a.state()["fc2"]["w"]}}) == ["fc2/b"]
    np.testing.assert_array_equal(b.state()["fc2"]["b"], net["fc2"].params["b"])
    np.testing.assert_array_equal(b.state()["fc2"]["w"], a.state()["fc2"]["w"])
    with pytest.raises(ValueError, match=r"average fc1/w has shape \(2, 2\)"):
        b.load_state({**a.state(), "fc1": {"w": np.zeros((2, 2)), "b": a.state()["fc1"]["b"]}})
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]"):
        WeightAverage(net, 1.5)
    assert WeightAverage.decay_for(2, 8) == 1 - 1 / 16 and WeightAverage.decay_for(0.1, 5) == 0.0
