"""How exact a 5x5 Winograd would be in float32: F(m x m, 5x5) for m = 2, 3, 4 against the float64 direct sum.

    PYTHONPATH=. python bench/winograd_5x5_error.py

AlexNet's conv2 (5x5, 27x27 maps) was the layer that lost most to oneDNN (its dx 0.65x, bench/RESULTS.md
"Speed round 3") while rawcnn ran it as four 3x3 pieces by F(4x4, 3x3): 4 x 36 / 16 = 9 multiplications
an output, and four input transforms per channel. F(4x4, 5x5) on 8x8 tiles needs 64 / 16 = 4 and one
input transform, if float32 stays exact enough. This measured that before the kernel was written (it is
now kernels/cpu/winograd.py's F45, "Speed round 4"):
the transforms are kernels/reference/winograd.transform_matrices(m, 5, points) (points 0, 1, -1, 2,
-2, then 1/2 and -1/2 as m grows, and inf), applied tile by tile in the given dtype to a 48-channel
ReLU-like input with He-scaled weights (conv2's C/G = 48), against the direct correlation in
float64. The bound rawcnn's tests put on every Winograd layer is 1e-4 of the largest output.
"""
import numpy as np

from kernels.reference.winograd import transform_matrices

POINTS = {2: (0, 1, -1, 2, -2, np.inf), 3: (0, 1, -1, 2, -2, 0.5, np.inf),
          4: (0, 1, -1, 2, -2, 0.5, -0.5, np.inf)}


def direct(x, w, OH):
    """y (OH, OH) = sum over c, a, b of w[c, a, b] x[c, a + i, b + j], float64."""
    y = np.zeros((OH, OH))
    for c in range(x.shape[0]):
        for a in range(5):
            for b in range(5):
                y += w[c, a, b] * x[c, a:a + OH, b:b + OH]
    return y


def winograd(x, w, m, dtype, tiles=8):
    """The same correlation by F(m x m, 5x5) on tiles x tiles output tiles, every step in dtype."""
    AT, G, BT = (M.astype(dtype) for M in transform_matrices(m, 5, POINTS[m]))
    n = m + 4
    OH = m * tiles
    U = np.einsum("ij,cjk,lk->cil", G, w.astype(dtype), G)  # (C, n, n)
    y = np.zeros((OH, OH), dtype)
    for th in range(tiles):
        for tw in range(tiles):
            d = x[:, m * th:m * th + n, m * tw:m * tw + n].astype(dtype)
            V = np.einsum("ij,cjk,lk->cil", BT, d, BT)  # (C, n, n)
            y[m * th:m * th + m, m * tw:m * tw + m] = AT @ (U * V).sum(0, dtype=dtype) @ AT.T
    return y, OH


def main():
    rng = np.random.default_rng(0)
    C = 48
    x = np.maximum(rng.standard_normal((C, 40, 40)), 0)
    w = rng.standard_normal((C, 5, 5)) * np.sqrt(2 / (25 * C))
    for m in (2, 3, 4):
        y, OH = winograd(x, w, m, np.float32)
        ref = direct(x, w, OH)
        err = np.abs(y - ref).max() / np.abs(ref).max()
        print(f"F({m}x{m}, 5x5), {m + 4}x{m + 4} tiles: float32 max|err| / max|y| = {err:.1e}; "
              f"{(m + 4) ** 2 / m ** 2:.2f} multiplications an output (direct 25, four F(4x4, 3x3) pieces 9)")


if __name__ == "__main__":
    main()
