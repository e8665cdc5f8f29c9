"""Subnormal floats flushed to zero (kernels/cpu/denormals.py): in which threads, who turns it on, what it changes.

A subnormal float32 is below 1.18e-38. With FTZ/DAZ set, 1e-40 reads as 0 and 1e-20 * 1e-20 gives 0; without,
both give about 1e-40. Each test puts the process's setting back as it found it.
"""
import threading

import numba
import numpy as np
import pytest
from click.testing import CliRunner

from kernels.cpu import denormals
from kernels.cpu.linear import linear_forward
from kernels.cpu.relu import relu_forward
from rawcnn.engine import models

pytestmark = pytest.mark.skipif(not denormals.supported(), reason="MXCSR exists on x86-64 only")

SUB = np.float32(1e-40)  # subnormal in float32


@pytest.fixture
def restore(monkeypatch):
    monkeypatch.delenv(denormals.ENV, raising=False)  # put back (or removed) after the test
    state, was = denormals._STATE["flush"], denormals.flushing()
    yield
    denormals.flush_denormals(was)
    denormals._STATE["flush"] = state


def products_in_job_threads():
    """linear_forward's GEMMs run in run_jobs' threads (4 jobs of 512 outputs): each y = 8 * (1e-20 * 1e-20)."""
    x = np.full((4, 8), 1e-20, np.float32)
    w = np.full((2048, 8), 1e-20, np.float32)
    return linear_forward(x, w, np.zeros(2048, np.float32))


def test_flush_and_keep_reach_this_thread_numba_pool_and_job_threads(restore):
    for on in (True, False, True, False):
        denormals.flush_denormals(on)
        assert denormals.flushing() is on
        assert bool(np.multiply(np.float32(1e-20), np.float32(1e-20)) == 0) is on  # this thread (NumPy)
        y = relu_forward(np.full((64, 4096), SUB, np.float32))  # a prange loop: Numba's pool
        assert bool((y == 0).all() if on else (y == SUB).all())
        y = products_in_job_threads()
        assert bool((y == 0).all() if on else ((y > 7e-40) & (y < 9e-40)).all())


def test_every_thread_of_numbas_pool_is_set(restore):
    threads = numba.get_num_threads()
    for on in (True, False):
        out = np.zeros((4 * threads, 2), np.int64)
        denormals._set_bits_everywhere(on, 4 * threads, out)
        assert sorted(set(out[:, 0].tolist())) == list(range(threads))  # every thread ran a step
        bits = denormals.FTZ | denormals.DAZ
        assert all(((int(v) & bits) == bits) is on for v in out[:, 1])


def test_threads_started_later_inherit_the_choice(restore):
    for on in (True, False):
        denormals.flush_denormals(on)
        seen = []
        t = threading.Thread(target=lambda seen=seen: seen.append(denormals.flushing()))
        t.start()
        t.join()
        assert seen == [on]


def test_environment_and_train_default(restore, monkeypatch):
    denormals.flush_denormals(False)
    denormals._STATE["flush"] = None  # as a fresh process: nothing chose yet
    denormals.flush_by_default()
    assert denormals.flushing() and denormals._STATE["flush"] is True
    monkeypatch.setenv(denormals.ENV, "0")
    denormals.apply_environment()  # a "keep" from the command line is a choice: train() leaves it
    denormals.flush_by_default()
    assert not denormals.flushing()
    monkeypatch.setenv(denormals.ENV, "yes")
    with pytest.raises(ValueError, match=denormals.ENV):
        denormals.apply_environment()


def test_command_line_option(restore, monkeypatch):
    from cli import main
    runner = CliRunner()
    for args, on in ((["--keep-denormals", "info"], False), (["info"], True), (["--flush-denormals", "info"], True)):
        monkeypatch.delenv(denormals.ENV, raising=False)  # the option writes it: the next run starts without
        denormals.flush_denormals(not on)
        res = runner.invoke(main, args)
        assert res.exit_code == 0, res.output
        assert denormals.flushing() is on, args
    res = runner.invoke(main, ["info"], env={denormals.ENV: "2"})
    assert res.exit_code == 1 and denormals.ENV in res.output
    res = runner.invoke(main, ["info"], env={denormals.ENV: "0"})
    assert res.exit_code == 0 and not denormals.flushing()


def test_an_underflowing_backward_gives_exact_zeros_when_flushed(restore):
    # the saturated-softmax case of bench/RESULTS.md "Speed round 5" (its cost is measured in
    # bench/bench_denormals.py, not here), on a small net: the loss gradient scaled to 1e-39 makes the
    # backward's products subnormal; with flushing they are exactly 0
    net = models.build("custom-gap", seed=0, input_shape=(3, 83, 83), num_classes=2)
    x = np.random.default_rng(0).standard_normal((2, 3, 83, 83)).astype(np.float32)
    net.forward(x, train=True)
    for on in (True, False):
        denormals.flush_denormals(on)
        dlogits = np.full((2, 2), 1e-39, np.float32) * np.array([1, -1], np.float32)
        net.backward(dlogits)
        dw = net["fc8"].grads["w"]
        tiny = np.finfo(np.float32).tiny
        subnormal = np.count_nonzero((dw != 0) & (np.abs(dw) < tiny))
        assert (subnormal == 0 and not dw.any()) if on else subnormal > 0
