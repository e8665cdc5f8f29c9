"""Model specs several test files and helper scripts share (tests/conftest.py hands them to tests;
fuzz_inputs.py and other scripts run outside pytest import them from here)."""

# 3 x 32 x 32 -> conv 3x3 stride 2 (4 x 16 x 16) -> ReLU -> 2 classes: the smallest net with a
# conv layer that the commands (train, predict, cv, evaluate) take on 32-pixel prepared sets
TINY_CONV_SPEC = {"name": "tiny", "input": [3, 32, 32], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}
# the same with a 2x2 max-pool after the ReLU (4 x 8 x 8 into fc8)
TINY_CONV_POOL_SPEC = {"name": "tiny", "input": [3, 32, 32], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}
# 1 x 16 x 16 -> 2 conv channels -> pool -> 2 classes; square_net sets its weights by hand
SQUARE_SPEC = {"name": "square", "input": [1, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 2, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}


def check_conv_backward_fd(tier, x_shape, w_shape, geometry, seed, tol=1e-7, step=1e-3):
    """A tier's conv2d_backward (dx, dw, db) against central differences of its own forward, in float64.

    The convolution is linear, so no step has truncation error and no point is a kink; tol bounds
    rawcnn.engine.gradcheck.rel_error. The kernel tests of conv2d, Winograd and space-to-depth share it.
    """
    import numpy as np

    from rawcnn.engine.gradcheck import numeric_gradient, rel_error
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    dy = rng.standard_normal(tier.conv2d_forward(x, w, b, geometry=geometry).shape)
    dx, dw, db = tier.conv2d_backward(dy, x, w, geometry=geometry)

    def f():
        return tier.conv2d_forward(x, w, b, geometry=geometry)
    for name, analytic, var in (("dx", dx, x), ("dw", dw, w), ("db", db, b)):
        numeric, kinks = numeric_gradient(f, var, dy, h=step)
        assert not kinks.any()  # the convolution is linear: no kinks
        err = rel_error(analytic, numeric)
        assert err < tol, f"{tier.__name__} {name}: rel_error {err:.2e}"


def write_boxes_csv(dataset, path):
    """A boxes CSV (file,x,y,w,h) holding, for each image of `dataset` with a non-empty lesion mask, the
    mask's bounding box as `<name>.png` (the square set's lesions are squares, so the box is the mask)."""
    import numpy as np
    rows = ["file,x,y,w,h"]
    for name, m in zip(dataset.names, dataset.lesion_masks, strict=True):
        if m.any():
            ys, xs = np.nonzero(m)
            rows.append(f"{name}.png,{xs.min()},{ys.min()},{xs.max() + 1 - xs.min()},{ys.max() + 1 - ys.min()}")
    path.write_text("\n".join(rows) + "\n")
    return path
