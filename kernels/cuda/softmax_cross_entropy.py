"""Softmax followed by cross-entropy, one fused loss, the CUDA tier.

Shapes: N batch, K classes; logits, probs, dlogits (N, K); labels int64 (N,); losses (N,).

Forward, per row n with label t_n (log-sum-exp with the row maximum m_n taken out, so logits of
+-1e4 neither overflow nor lose the answer):
    lse_n    = m_n + log sum_j exp(logits[n, j] - m_n)
    loss     = 1/N * sum_n (lse_n - logits[n, t_n])
    probs[n] = exp(logits[n] - lse_n)
Backward (derivation in kernels/reference/softmax_cross_entropy.py):
    dlogits[n, j] = (probs[n, j] - [j == t_n]) / N * dloss

Forward: one thread per row (each row needs its own maximum and sum; K is small), writing
probs and the row's loss; the mean over the N row losses is one array-module sum. Backward: one
thread per element of dlogits.
"""
import math

import numpy as np
from numba import cuda

from kernels.cuda._launch import device_arrays, launch, scalar
from kernels.shapes import check_softmax_args

# kernels


@cuda.jit(cache=True)
def _sce_forward_kernel(logits, labels, probs, losses):
    """logits, probs (N, K); labels (N,); losses (N,) gets lse_n - logits[n, t_n]; thread n, row n."""
    n = cuda.grid(1)
    if n < logits.shape[0]:
        K = logits.shape[1]
        m = logits[n, 0]
        for j in range(1, K):  # the row maximum
            if logits[n, j] > m:
                m = logits[n, j]
        total = 0.0
        for j in range(K):
            total += math.exp(logits[n, j] - m)
        log_sum = math.log(total)  # lse_n - m_n, in [0, log K]
        for j in range(K):
            probs[n, j] = math.exp(logits[n, j] - m - log_sum)
        losses[n] = log_sum - (logits[n, labels[n]] - m)


@cuda.jit(cache=True)
def _sce_backward_kernel(probs, labels, scale, dlogits):
    """probs, dlogits (N, K); labels (N,); scale = dloss / N; thread i, element (i // K, i % K)."""
    i = cuda.grid(1)
    if i < probs.size:
        K = probs.shape[1]
        n, j = i // K, i % K
        onehot = 1 if j == labels[n] else 0
        dlogits[n, j] = (probs[n, j] - onehot) * scale

# launchers


def _check_labels(xp, logits, labels, name):
    """Validate (N, K) against integer labels (N,) in [0, K); return labels as int64 on the device."""
    check_softmax_args(logits, name)
    if labels.shape != (logits.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"softmax_cross_entropy: need {name} (N, K) and integer labels (N,); "
                         f"got {logits.shape} and {labels.shape} {labels.dtype}")
    K = logits.shape[1]
    bad = xp.flatnonzero((labels < 0) | (labels >= K))
    if bad.size:
        at = int(bad[0])
        raise ValueError(f"softmax_cross_entropy: label {int(labels[at])} at position {at} "
                         f"is outside [0, {K}) for K = {K} classes")
    return xp.ascontiguousarray(labels, dtype=np.int64)


def softmax_cross_entropy_forward(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits: float32/float64 (N, K); labels: int64 (N,), each in [0, K)
    Returns (loss, probs): loss a Python float; probs (N, K), dtype of logits.
    """
    xp = device_arrays("softmax_cross_entropy_forward", logits=logits, labels=labels)
    labels = _check_labels(xp, logits, labels, "logits")
    logits = xp.ascontiguousarray(logits)
    N = logits.shape[0]
    probs = xp.empty_like(logits)  # (N, K)
    losses = xp.empty(N, dtype=np.float64)  # (N,) lse_n - logits[n, t_n], summed in float64
    launch(_sce_forward_kernel, N, logits, labels, probs, losses)
    return float(losses.sum()) / N, probs


def softmax_cross_entropy_backward(probs, labels, *, dloss=1.0):
    """dlogits = (probs - onehot(labels)) * dloss / N.

    probs: float32/float64 (N, K), from the forward; labels: int64 (N,)
    Returns dlogits: (N, K), dtype of probs.
    """
    xp = device_arrays("softmax_cross_entropy_backward", probs=probs, labels=labels)
    labels = _check_labels(xp, probs, labels, "probs")
    probs = xp.ascontiguousarray(probs)
    dlogits = xp.empty_like(probs)  # (N, K)
    scale = scalar(probs.dtype, float(dloss) / probs.shape[0])
    launch(_sce_backward_kernel, probs.size, probs, labels, scale, dlogits)
    return dlogits
