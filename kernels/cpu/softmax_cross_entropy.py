"""Softmax followed by cross-entropy, one fused loss, the CPU tier.

Shapes: N batch, K classes; logits, probs, dlogits (N, K); labels int64 (N,).

The math and the derivation are in kernels/reference/softmax_cross_entropy.py:
    loss = 1/N * sum_n (lse_n - logits[n, t_n]),  probs[n] = exp(logits[n] - lse_n)
    dlogits = (probs - onehot(labels)) * dloss / N
One parallel Numba job per row computes the row's log-sum-exp (with the row maximum taken out,
in float64), its loss term and its probabilities; the batch mean is taken in float64 after.
"""
import math

import numpy as np
from numba import njit, prange

from kernels.shapes import check_sce_args


@njit(parallel=True, cache=True)
def _sce_forward_kernel(logits, labels, probs, row_loss):
    N, K = logits.shape
    for n in prange(N):
        m = logits[n, 0]
        for i in range(1, K):
            m = max(m, logits[n, i])
        total = 0.0
        for i in range(K):
            total += math.exp(np.float64(logits[n, i]) - m)
        log_sum = math.log(total)  # lse_n - m, in [0, log K]
        row_loss[n] = log_sum - (np.float64(logits[n, labels[n]]) - m)  # lse_n - logits[n, t_n]
        for i in range(K):
            probs[n, i] = math.exp(np.float64(logits[n, i]) - m - log_sum)


@njit(parallel=True, cache=True)
def _sce_backward_kernel(probs, labels, dlogits, g):
    N, K = probs.shape
    for n in prange(N):
        for i in range(K):
            dlogits[n, i] = (probs[n, i] - (1.0 if i == labels[n] else 0.0)) * g


def softmax_cross_entropy_forward(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits: float32/float64 (N, K); labels: int64 (N,), each in [0, K)
    Returns (loss, probs): loss a Python float; probs (N, K), dtype of logits.
    """
    check_sce_args(logits, labels)
    N = logits.shape[0]
    logits = np.ascontiguousarray(logits)
    probs = np.empty_like(logits)  # (N, K)
    row_loss = np.empty(N, dtype=np.float64)  # (N,)
    _sce_forward_kernel(logits, labels.astype(np.int64, copy=False), probs, row_loss)
    return float(row_loss.sum() / N), probs


def softmax_cross_entropy_backward(probs, labels, *, dloss=1.0):
    """dlogits = (probs - onehot(labels)) * dloss / N.

    probs: float32/float64 (N, K), from the forward; labels: int64 (N,)
    Returns dlogits: (N, K), dtype of probs.
    """
    check_sce_args(probs, labels, "probs")
    probs = np.ascontiguousarray(probs)
    dlogits = np.empty_like(probs)  # (N, K)
    _sce_backward_kernel(probs, labels.astype(np.int64, copy=False), dlogits, float(dloss) / probs.shape[0])
    return dlogits
