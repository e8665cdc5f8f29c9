"""Softmax followed by cross-entropy, one fused loss, the reference.

Shapes: N batch, K classes; logits, probs, dlogits (N, K); labels int64 (N,).

Forward, per row n with label t_n (log-sum-exp with the row maximum m_n taken out, so logits
of +-1e4 neither overflow nor lose the answer):
    lse_n    = m_n + log sum_j exp(logits[n, j] - m_n)
    loss     = 1/N * sum_n (lse_n - logits[n, t_n])
    probs[n] = exp(logits[n] - lse_n)                      (the softmax, returned for backward)

Backward (derivation). d lse_n / d logits[n, j] = probs[n, j], and d logits[n, t_n] / d logits[n, j]
= [j == t_n], so
    dlogits[n, j] = (probs[n, j] - [j == t_n]) / N * dloss
where dloss is the upstream gradient of the (scalar) loss, 1 when it is the final loss.
"""
import numpy as np

from kernels.shapes import check_sce_args  # noqa: F401 (the tiers' shared checks)


def softmax_cross_entropy_forward(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits: float32/float64 (N, K); labels: int64 (N,), each in [0, K)
    Returns (loss, probs): loss a Python float; probs (N, K), dtype of logits.
    """
    check_sce_args(logits, labels)
    N = logits.shape[0]
    probs = np.empty_like(logits)  # (N, K)
    total = 0.0
    for n in range(N):
        z = logits[n] - np.max(logits[n])  # (K,), shifted so the largest is 0
        log_sum = np.log(np.sum(np.exp(z)))  # lse_n - m_n, in [0, log K]
        total += float(log_sum) - float(z[labels[n]])  # lse_n - logits[n, t_n]
        probs[n] = np.exp(z - log_sum)
    return total / N, probs


def softmax_cross_entropy_backward(probs, labels, *, dloss=1.0):
    """dlogits = (probs - onehot(labels)) * dloss / N.

    probs: float32/float64 (N, K), from the forward; labels: int64 (N,)
    Returns dlogits: (N, K), dtype of probs.
    """
    check_sce_args(probs, labels, "probs")
    N = probs.shape[0]
    dlogits = probs.copy()  # (N, K)
    for n in range(N):
        dlogits[n, labels[n]] -= 1
    dlogits *= dloss / N
    return dlogits
