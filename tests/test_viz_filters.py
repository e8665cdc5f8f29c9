"""viz/filters.py: filter tiles scaled per filter, colour order, gray for deeper layers, the grid."""
import cv2
import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.viz.filters import filter_tiles, filters_image, save_filters

TINY = {"name": "tiny", "input": [3, 12, 12], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3},
    {"type": "ReLU", "name": "relu1"},
    {"type": "Conv2d", "name": "conv2", "out_channels": 6, "kernel_size": 3},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}


def test_colour_tiles_are_scaled_per_filter_and_keep_channel_order():
    w = np.zeros((2, 3, 2, 2), np.float32)
    w[0, 0, 0, 0] = 3.0                         # filter 0: one red weight, the rest 0 -> red 1, others 0
    w[1] = -1.0                                 # filter 1: constant -> all zeros, no NaN
    tiles = filter_tiles(w)
    assert tiles[0].shape == (2, 2, 3)
    np.testing.assert_array_equal(tiles[0][0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(tiles[0][1, 1], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(tiles[1], 0.0)
    bgr = filter_tiles(w, channel_order="BGR")  # input channel 0 is blue: shown in the blue slot
    np.testing.assert_array_equal(bgr[0][0, 0], [0.0, 0.0, 1.0])


def test_deeper_filters_are_gray_means_or_one_channel():
    w = np.zeros((1, 4, 2, 2), np.float32)
    w[0, :, 0, 0] = [1, 1, 1, 5]                # mean 2 at (0, 0), 0 elsewhere
    w[0, 1, 1, 1] = 4.0                         # mean 1 at (1, 1)
    t = filter_tiles(w)[0]
    np.testing.assert_allclose(t, [[1.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(filter_tiles(w, channel=1)[0], [[0.25, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="outside"):
        filter_tiles(w, channel=4)


def test_filters_image_and_file(tmp_path):
    net = models.build(TINY, seed=0)
    g = filters_image(net)                      # conv1 by default: 4 colour tiles in 2 x 2
    assert g.ndim == 3 and g.shape[2] == 3
    assert filters_image(net, "conv2").shape != g.shape
    path = save_filters(net, tmp_path / "f.png", layer="conv1", tile=24, ncols=4)
    img = cv2.imread(str(path))
    assert img.shape[1] == 4 * (24 + 2) + 2
    with pytest.raises(ValueError, match="not a Conv2d"):
        filters_image(net, "relu1")
