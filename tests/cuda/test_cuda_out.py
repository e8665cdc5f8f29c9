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
