"""Winograd F(4x4, 3x3) and F(4x4, 5x5) convolution for stride-1 layers (other kernel sizes cut into 3x3
pieces): the reference tier.
Strided layers whose kernel spans three blocks of the stride (AlexNet's conv1, 11x11 stride 4) run as
the 3x3 stride-1 convolution they equal by space-to-depth (kernels/reference/space_to_depth.py).

Shape legend
    N batch, C channels in, H, W input size, F filters out, OH, OW output size, G groups,
    m = 4 outputs per tile side, r = 3 (or 5) kernel side, n = m + r - 1 = 6 (or 8) input tile side,
    TH, TW tiles down and across (TH = ceil(OH / m)), U, V, M the transformed kernel, input, product.

Why F(m, r) needs m + r - 1 points (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016, section 4; Toom-Cook / Winograd's minimal filtering)
    Take a kernel polynomial g(t) = g0 + g1 t + g2 t^2 (r coefficients) and any polynomial h(t) with
    m coefficients. Their product s(t) = g(t) h(t) has degree (r-1) + (m-1) = m + r - 2, so it has
    n = m + r - 1 coefficients, and a polynomial with n coefficients is fixed by its values at n
    distinct points, and not by fewer. At each point p the product is one multiplication,
    s(p) = g(p) * h(p): n multiplications instead of m*r. The point "infinity" stands for the
    leading coefficient (s_{n-1} = g_{r-1} h_{m-1}), which is why 0, 1, -1, 2, -2, inf is the usual
    choice for n = 6: small numbers keep the transforms' round-off small.

    In matrices: with Vg (n, r), Vh (n, m), Vs (n, n) the Vandermonde matrices of the points
    (row p = [1, p, p^2, ...], row inf = [0, ..., 0, 1]),
        s = Vs^-1 [(Vg g) * (Vh h)]         (linear convolution: s = T(g) h, T Toeplitz (n, m))
    holds for every h, so T(g) = Vs^-1 diag(Vg g) Vh. A CNN layer is a correlation,
    y_i = sum_k g_k d_{i+k} (d has n values, y has m), which is T(g)^T d:
        y = Vh^T [(Vg g) * (Vs^-T d)]  =  A^T [(G g) * (B^T d)]
    so A^T = Vh^T (m, n), G = Vg (n, r), B^T = Vs^-T (n, n). A diagonal D can move between B^T and G
    ((D G g) * (D^-1 B^T d) is the same product); it is chosen here to make B^T integer.
    In 2-D the same matrices act on rows and on columns of a 6x6 input tile d and 3x3 kernel g:
        Y (4x4) = A^T [ (G g G^T) * (B^T d B) ] A
    Over channels the element-wise product becomes, for each of the 36 tile positions (xi, nu),
        M[xi, nu] (F, T) = U[xi, nu] (F, C) @ V[xi, nu] (C, T),  summed over c before A^T . A,
    36 matrix products: 4x fewer multiplications than direct (36 for 16 outputs, vs 16 * 9).

Backward (stride 1, kernel 3x3, padding p per axis)
    dx[h] = sum_{kh} dy[h + p - kh] w[kh] = sum_{k'} dy[h + (p - 2) + k'] w[2 - k'], i.e. dx is
    the 3x3 stride-1 correlation of dy, padded by 2 - p (cropped when p > 2), with the kernel
    rotated by 180 degrees and its F and C axes swapped within each group: Winograd again.
    dw and db are the im2col tier's (kernels/reference/conv2d.py): one product over the batch.

5x5 kernels (AlexNet's conv2): F(4x4, 5x5) on 8x8 tiles
    The same construction with r = 5 needs n = 8 points: 0, 1, -1, 2, -2, 1/2, -1/2, inf (POINTS_5;
    the 1/2s keep the entries of A^T at most 8, where 3 and -3 would reach 27). 64 multiplications
    for 16 outputs, 4 an output against 25 direct, and one 8x8 input transform per tile and channel.
    Its float32 error on AlexNet conv2's 48-channel sums is 5.2e-6 of the largest output
    (bench/winograd_5x5_error.py; the bound the tests put on every Winograd layer is 1e-4).
    The backward is the 3x3 case's: dx is the correlation of dy with the flipped 5x5 kernel, padded
    by 4 - p, by F(4x4, 5x5) again.

Other kernel sizes (stride 1): cut into 3x3 pieces (kernel decomposition)
    A KH x KW kernel, padded with zeros to 3*ceil(KH/3) x 3*ceil(KW/3), is P = ceil(KH/3)*ceil(KW/3)
    3x3 pieces w_ab = w[3a:3a+3, 3b:3b+3]. With padding (ph, pw),
        y[oh, ow] = sum_{u, v} x[oh - ph + u, ow - pw + v] w[u, v]
                  = sum_{a, b} sum_{i, j < 3} x[oh - (ph - 3a) + i, ow - (pw - 3b) + j] w_ab[i, j],
    so y is the sum of P 3x3 stride-1 correlations, piece (a, b) with padding (ph - 3a, pw - 3b)
    (negative: the input is read further on), each evaluated at the same OH x OW outputs with x
    read as 0 off the image: P Winograd convolutions, 36 P / 16 multiplications per output
    against KH*KW direct (5x5: 9 against 25). The CPU tier stacks the pieces as P*C/G input
    channels of one Winograd convolution (split_kernel). The backward is unchanged: dx is the
    correlation of dy with the flipped kernel, padded by KH - 1 - ph, KW - 1 - pw, cut the same way.
"""
import numpy as np

from kernels.reference.conv2d import check_conv2d
from kernels.reference.conv2d import conv2d_backward as direct_backward
from kernels.reference.relu import relu_forward
from kernels.reference.space_to_depth import depth_to_space, kernel_to_depth, space_to_depth
from kernels.shapes import ConvGeometry, backward_request, check_conv2d_backward, depth_applies, into, into_grads

M_OUT, R_K = 4, 3
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, np.inf)
POINTS_5 = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, np.inf)  # F(4x4, 5x5): 8x8 tiles
WHOLE_KERNELS = {3: POINTS, 5: POINTS_5}  # kernel side -> its F(4x4, r x r)'s points; other sizes go by 3x3 pieces


def _vandermonde(points, cols):
    """(len(points), cols): row p = [1, p, p^2, ...]; the point inf picks the leading coefficient."""
    V = np.zeros((len(points), cols))
    for i, p in enumerate(points):
        if np.isinf(p):
            V[i, -1] = 1.0
        else:
            V[i] = [p ** j for j in range(cols)]
    return V


def transform_matrices(m=M_OUT, r=R_K, points=POINTS):
    """The Winograd F(m, r) matrices from m + r - 1 interpolation points.

    Returns (AT (m, n), G (n, r), BT (n, n)), float64, n = m + r - 1, such that for d (n,) and
    g (r,): AT @ ((G @ g) * (BT @ d)) == [sum_k g[k] d[i + k] for i in range(m)].
    """
    n = m + r - 1
    if len(points) != n or len(set(points)) != n:
        raise ValueError(f"F({m}, {r}) needs {n} distinct points (a product of degree {n - 1} "
                         f"has {n} coefficients), got {points}")
    AT = _vandermonde(points, m).T  # (m, n)
    G = _vandermonde(points, r)  # (n, r)
    BT = np.linalg.inv(_vandermonde(points, n)).T  # (n, n)
    # the diagonal D: scale row i of BT so its smallest nonzero entry is +-1, G's row i by the inverse
    for i in range(n):
        s = np.min(np.abs(BT[i][np.abs(BT[i]) > 1e-12]))
        BT[i] /= s
        G[i] *= s
    return AT, G, np.round(BT, 12) + 0.0  # + 0.0: no negative zeros


def whole_kernel(KH, KW):
    """The side r of the F(4x4, r x r) that runs a KH x KW kernel whole (3 or 5), or None: cut into 3x3 pieces."""
    return KH if KH == KW and KH in WHOLE_KERNELS else None


def pieces(KH, KW):
    """The 3x3 pieces (a, b) of a KH x KW kernel: rows 3a..3a+2, columns 3b..3b+2, row-major."""
    return [(a, b) for a in range(-(-KH // R_K)) for b in range(-(-KW // R_K))]


def piece_paddings(KH, KW, padding):
    """The padding each 3x3 piece of pieces(KH, KW) reads the input at: (ph - 3a, pw - 3b)."""
    return [(padding[0] - R_K * a, padding[1] - R_K * b) for a, b in pieces(KH, KW)]


def padded_kernel(w):
    """w (F, Cg, KH, KW) zero-padded to (F, Cg, 3*ceil(KH/3), 3*ceil(KW/3)), so every piece is whole."""
    F, Cg, KH, KW = w.shape
    w6 = np.zeros((F, Cg, R_K * -(-KH // R_K), R_K * -(-KW // R_K)), w.dtype)
    w6[:, :, :KH, :KW] = w
    return w6


def split_kernel(w):
    """w (F, Cg, KH, KW) -> (F, P*Cg, 3, 3): piece p = (a, b) of pieces(KH, KW) of channel c at p*Cg + c."""
    F, Cg, KH, KW = w.shape
    w6 = padded_kernel(w)
    w3 = np.stack([w6[:, :, R_K * a:R_K * a + R_K, R_K * b:R_K * b + R_K] for a, b in pieces(KH, KW)], axis=1)
    return np.ascontiguousarray(w3.reshape(F, -1, R_K, R_K))  # (F, P*Cg, 3, 3)


def join_kernel_grad(dw3, KH, KW, out):
    """The inverse of split_kernel for a gradient: out (F, Cg, KH, KW) from dw3 (F, P*Cg, 3, 3),
    the entries of the zero padding (which are not weights) dropped."""
    F, Cg = out.shape[:2]
    dw6 = np.zeros((F, Cg, R_K * -(-KH // R_K), R_K * -(-KW // R_K)), dw3.dtype)
    for p, (a, b) in enumerate(pieces(KH, KW)):
        dw6[:, :, R_K * a:R_K * a + R_K, R_K * b:R_K * b + R_K] = dw3[:, p * Cg:(p + 1) * Cg]
    out[...] = dw6[:, :, :KH, :KW]
    return out


def _tiles(OH, OW):
    return -(-OH // M_OUT), -(-OW // M_OUT)


def _winograd_correlate(x, w, padding, groups, out_size=None):
    """sum over channels of the r x r stride-1 correlation (r = 3 or 5: F(4x4, r x r)), tile by tile;
    padding may be negative.

    x: (N, C, H, W), w: (F, C/G, r, r); out_size: (OH, OW) to evaluate (x read as 0 off the
    image), by default the correlation's own (H + 2ph - r + 1, W + 2pw - r + 1).
    Returns y (N, F, OH, OW) without bias, x's dtype.
    """
    r = w.shape[2]
    AT, G, BT = (a.astype(x.dtype) for a in transform_matrices(M_OUT, r, WHOLE_KERNELS[r]))
    n = M_OUT + r - 1  # the input tile's side
    N, C, H, W = x.shape
    F, Cg = w.shape[:2]
    Fg = F // groups
    (ph, pw) = padding
    OH, OW = out_size or (H + 2 * ph - r + 1, W + 2 * pw - r + 1)
    TH, TW = _tiles(OH, OW)
    # zero-pad (or crop) so that TH x TW tiles of n x n, overlapping by r - 1, fit exactly
    xp = np.zeros((N, C, M_OUT * TH + r - 1, M_OUT * TW + r - 1), x.dtype)  # (N, C, 4TH+r-1, 4TW+r-1)
    src = x[:, :, max(0, -ph):, max(0, -pw):]
    hh, ww = min(src.shape[2], xp.shape[2] - max(ph, 0)), min(src.shape[3], xp.shape[3] - max(pw, 0))
    xp[:, :, max(ph, 0):max(ph, 0) + hh, max(pw, 0):max(pw, 0) + ww] = src[:, :, :hh, :ww]
    U = np.einsum("ij,fcjk,lk->filc", G, w, G)  # (F, n, n, C/G): G g G^T per (f, c)
    Y = np.zeros((N, F, M_OUT * TH, M_OUT * TW), x.dtype)  # (N, F, 4TH, 4TW)
    for th in range(TH):
        for tw in range(TW):
            d = xp[:, :, 4 * th:4 * th + n, 4 * tw:4 * tw + n]  # (N, C, n, n)
            V = np.einsum("ij,ncjk,lk->ncil", BT, d, BT)  # (N, C, n, n): B^T d B
            for g in range(groups):
                fs, cs = slice(g * Fg, (g + 1) * Fg), slice(g * Cg, (g + 1) * Cg)
                Mt = np.einsum("filc,ncil->nfil", U[fs], V[:, cs])  # (N, F/G, n, n): sum over c
                Y[:, fs, 4 * th:4 * th + 4, 4 * tw:4 * tw + 4] = np.einsum("ij,nfjk,lk->nfil",
                                                                           AT, Mt, AT)
    return Y[:, :, :OH, :OW]


def _winograd_any(x, w, padding, groups):
    """The stride-1 correlation of x with a kernel of any size: 3x3 and 5x5 whole, others as the sum
    of their 3x3 pieces (see the module docstring). Returns y (N, F, OH, OW) without bias."""
    KH, KW = w.shape[2:]
    if whole_kernel(KH, KW):
        return _winograd_correlate(x, w, padding, groups)
    (ph, pw), (H, W) = padding, x.shape[2:]
    out_size = (H + 2 * ph - KH + 1, W + 2 * pw - KW + 1)
    w6 = padded_kernel(w)
    return sum(_winograd_correlate(x, w6[:, :, R_K * a:R_K * a + R_K, R_K * b:R_K * b + R_K], pad, groups, out_size)
               for (a, b), pad in zip(pieces(KH, KW), piece_paddings(KH, KW, padding), strict=True))


def check_winograd(x, w, b, stride, padding, groups):
    """check_conv2d, plus: the stride is 1 (any kernel size: other than 3x3, cut into 3x3 pieces), or the
    kernel spans three blocks of the stride (kernels.shapes.depth_applies: by space-to-depth). Returns (OH, OW)."""
    OH, OW = check_conv2d(x, w, b, stride, padding, groups)
    if tuple(stride) != (1, 1) and not depth_applies(w.shape[2:], stride):
        raise ValueError(f"winograd: F(4x4, 3x3) needs stride 1, got stride {tuple(stride)} for w {w.shape} "
                         f"(a strided kernel needs 2*s < KH, KW <= 3*s, run by space-to-depth)")
    return OH, OW


def depth_problem(x, w, geometry, out_size):
    """A strided convolution as the 3x3 stride-1 unpadded one it equals (kernels/reference/space_to_depth.py):
    (xd (N, C*sh*sw, OH + 2, OW + 2), wd (F, C/G*sh*sw, 3, 3), its geometry)."""
    stride, padding, groups = geometry
    xd = space_to_depth(x, stride=stride, padding=padding, out_size=out_size)
    return xd, kernel_to_depth(w, stride), ConvGeometry((1, 1), (0, 0), groups)


def flip_kernel(w, groups):
    """w (F, C/G, KH, KW) -> the backward-data kernel (C, F/G, KH, KW): rotated 180 deg, F and C swapped per group."""
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    wg = w.reshape(groups, Fg, Cg, KH, KW)[..., ::-1, ::-1]  # (G, F/G, C/G, KH, KW)
    return np.ascontiguousarray(wg.transpose(0, 2, 1, 3, 4).reshape(groups * Cg, Fg, KH, KW))


def conv2d_forward(x, w, b, *, geometry, budget_bytes=None, workspace=None, out=None, relu=False):
    """y = conv(x, w) + b by Winograd F(4x4, 3x3) or F(4x4, 5x5), one 6x6 or 8x8 tile at a time; relu: max(y, 0)
    instead (a ReLU fused).

    x: (N, C, H, W), w: (F, C/G, KH, KW) (3x3 or 5x5 whole, other sizes cut into 3x3 pieces), b: (F,), all
    float32 or all float64; geometry: ConvGeometry(stride, padding, groups) (kernels/shapes.py), stride (1, 1), or
    strided with 2*s < KH, KW <= 3*s (by space-to-depth, depth_problem).
    budget_bytes and workspace are accepted for the shared signature (this tier keeps no buffers).
    Returns y (N, F, OH, OW), x's dtype.
    """
    stride, padding, groups = geometry
    OH, OW = check_winograd(x, w, b, stride, padding, groups)
    if tuple(stride) != (1, 1):  # by space-to-depth: the same sum, 3x3 stride 1 on C*sh*sw channels
        x, w, (_, padding, _) = depth_problem(x, w, geometry, (OH, OW))
    y = _winograd_any(x, w, padding, groups) + b.reshape(1, -1, 1, 1)  # (N, F, OH, OW)
    return into("winograd conv2d_forward", "out", out, relu_forward(y) if relu else y)


def conv2d_backward(dy, x, w, *, geometry, budget_bytes=None, need=("dx", "dw"), workspace=None, out=None):
    """Gradients of conv2d_forward: dx by Winograd on the flipped kernel, dw and db as im2col's.

    dy: (N, F, OH, OW), x: (N, C, H, W), w: (F, C/G, KH, KW), all of one float dtype; geometry as
    conv2d_forward. need without "dx" skips dx, without "dw" dw and db (returned as None); out: None
    or a triple (dx, dw, db) of arrays or None, which receive the ones computed.
    Returns (dx (N, C, H, W) or None, dw (F, C/G, KH, KW) or None, db (F,) or None), x's dtype.
    """
    stride, padding, groups = geometry
    check_winograd(x, w, None, stride, padding, groups)
    check_conv2d_backward(dy, x, w, stride, padding, groups, op="winograd conv2d_backward")
    need_dx, need_dw, *outs = backward_request("winograd conv2d_backward", need, out)
    dw = db = None
    if need_dw:
        _, dw, db = direct_backward(dy, x, w, geometry=geometry, need=("dw",))
    if not need_dx:
        return into_grads("winograd conv2d_backward", (None, dw, db), outs)
    if tuple(stride) != (1, 1):  # dx of the space-to-depth problem, mapped back by its adjoint
        xd, wd, depth = depth_problem(x, w, geometry, dy.shape[2:])
        dxd = conv2d_backward(dy, xd, wd, geometry=depth, need=("dx",))[0]  # (N, C*sh*sw, OH + 2, OW + 2)
        dx = depth_to_space(dxd, x_shape=x.shape, stride=stride, padding=padding)
        return into_grads("winograd conv2d_backward", (dx, dw, db), outs)
    q = (w.shape[2] - 1 - padding[0], w.shape[3] - 1 - padding[1])
    dx = _winograd_any(dy, flip_kernel(w, groups), q, groups)
    return into_grads("winograd conv2d_backward", (dx, dw, db), outs)
