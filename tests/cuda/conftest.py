"""Tests of the CUDA tier (kernels/cuda): the same tests on a GPU or under Numba's CUDA simulator.

Numba chooses between the real CUDA target and its simulator once, when it is first imported,
so these tests run in their own process:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda    # no GPU: simulator, NumPy arrays
    python -m pytest -q tests/cuda                            # with a GPU and CuPy: CuPy arrays

Anywhere else (a plain `python -m pytest tests` on a machine without a GPU) every test in this
directory is skipped, with the reason. Each test gets the backend through the `be` fixture,
moves its inputs there with be.asarray and brings results back with kernels.to_numpy; the
expected values come from the reference tier (kernels/reference) in float64 or by hand.
All tests here carry the `gpu` marker: `-m "not gpu"` leaves them out.
"""
import os

import numpy as np
import pytest

import kernels


def _choose_backend():
    """(name, None) for the backend this process can run, or (None, why not)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "cudasim", None
    why = kernels.cuda_unavailable_reason()
    if why is None:
        return "cuda", None
    return None, (f"no CUDA backend in this process ({why}); run the CUDA tier under the simulator "
                  f"with: NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda")


BACKEND, SKIP_REASON = _choose_backend()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: runs CUDA-tier kernels, on a GPU or under Numba's CUDA simulator "
                   "(NUMBA_ENABLE_CUDASIM=1, in a process of its own)")


@pytest.fixture(autouse=True)
def _skip_without_cuda():
    """Skip every test here when neither a GPU nor the simulator is usable in this process."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session", params=[BACKEND or "cudasim"])
def be(request):
    """The CUDA-tier Backend of this process: 'cudasim' (NumPy arrays) or 'cuda' (CuPy arrays)."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    return kernels.get_backend(request.param)


@pytest.fixture(scope="session")
def ref():
    """The reference tier, the definition every CUDA kernel is compared with."""
    return kernels.get_backend("reference")


@pytest.fixture
def rng():
    """A fresh seeded Generator for each test."""
    return np.random.default_rng(20240607)
