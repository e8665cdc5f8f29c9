"""viz/images.py: scaling to [0, 1], the 'jet' map, overlay transparency, montages, PNG writing.

Expected colours are the jet definition's corner values worked out by hand (and matplotlib's own
'jet' table as an independent second opinion); overlays are checked pixel by pixel.
"""
import os

import cv2
import numpy as np
import pytest

from rawcnn.viz.images import (
    gray_to_rgb,
    heat_rgba,
    input_to_rgb,
    jet,
    montage,
    overlay,
    png_bytes,
    scale01,
    scale_channels,
    write_png,
)


# -- scaling -------------------------------------------------------------------------------------
def test_scale01_maps_min_to_0_max_to_1():
    a = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_allclose(scale01(a), [[0.0, 0.25], [0.5, 1.0]])


def test_scale_channels_per_channel_and_constant_channel_gives_zeros():
    a = np.zeros((3, 2, 2), np.float32)
    a[0] = [[1, 2], [3, 5]]          # min 1, max 5
    a[1] = 7.0                       # constant: no contrast -> zeros, not NaN
    a[2] = [[-2, 0], [0, 2]]         # min -2, max 2
    s = scale_channels(a)
    np.testing.assert_allclose(s[0], [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(s[1], np.zeros((2, 2)))
    np.testing.assert_allclose(s[2], [[0.0, 0.5], [0.5, 1.0]])
    assert not np.isnan(s).any()
    batch = scale_channels(np.stack([a, 2 * a]))          # (N, C, H, W): each (n, c) on its own
    np.testing.assert_allclose(batch[1], s)


def test_scale01_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        scale01(np.array([0.0, np.nan]))


# -- jet -----------------------------------------------------------------------------------------
def test_jet_at_hand_computed_points():
    # red = clip(1.5 - |4v-3|), green = clip(1.5 - |4v-2|), blue = clip(1.5 - |4v-1|)
    np.testing.assert_allclose(jet(1.0), [0.5, 0.0, 0.0])          # dark red
    np.testing.assert_allclose(jet(0.5), [0.5, 1.0, 0.5])          # green-ish
    np.testing.assert_allclose(jet(0.0), [0.0, 0.0, 0.5])          # dark blue
    np.testing.assert_allclose(jet(0.25), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(jet(0.75), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(jet(2.0), jet(1.0))                 # clipped


def matlab_jet(m):
    """A line-by-line port of MATLAB's jet.m (R2017a): the m-colour table, (m, 3)."""
    n = int(np.ceil(m / 4))
    u = np.r_[np.arange(1, n + 1) / n, np.ones(n - 1), np.arange(n, 0, -1) / n]
    g = int(np.ceil(n / 2)) - (m % 4 == 1) + np.arange(1, len(u) + 1)
    r, b = g + n, g - n
    g, r, b = g[g <= m], r[r <= m], b[b >= 1]
    J = np.zeros((m, 3))
    J[r - 1, 0] = u[:len(r)]
    J[g - 1, 1] = u[:len(g)]
    J[b - 1, 2] = u[len(u) - len(b):]
    return J


def test_jet_agrees_with_matlab_table():
    v = np.arange(256) / 255.0                  # MATLAB maps [0, 1] onto rows 1..256
    assert np.abs(jet(v) - matlab_jet(256)).max() < 0.02     # the table is a 256-step sampling


# -- overlay -------------------------------------------------------------------------------------
def test_heat_rgba_under_threshold_is_transparent_black():
    heat = np.array([[0.0, 0.3], [0.5, 1.0]], np.float32)
    rgba = heat_rgba(heat, threshold=0.5)
    np.testing.assert_array_equal(rgba[..., 3], [[0, 0], [1, 1]])
    np.testing.assert_array_equal(rgba[0, 0, :3], [0, 0, 0])
    np.testing.assert_array_equal(rgba[0, 1, :3], [0, 0, 0])
    np.testing.assert_allclose(rgba[1, 0, :3], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(rgba[1, 1, :3], [0.5, 0.0, 0.0])


def test_overlay_pixel_by_pixel():
    img = np.array([[0.2, 0.4, 0.6], [0.8, 1.0, 0.0]], np.float32)   # gray radiograph (2, 3)
    heat = np.array([[0.1, 0.49, 0.5], [1.0, 0.0, 0.9]], np.float32)
    out = overlay(img, heat, threshold=0.5, alpha=1.0)
    # under the threshold: the radiograph pixel exactly
    for i, j in [(0, 0), (0, 1), (1, 1)]:
        np.testing.assert_array_equal(out[i, j], [img[i, j]] * 3)
    # alpha 1 at or above it: the jet colour exactly
    np.testing.assert_allclose(out[0, 2], [0.5, 1.0, 0.5])            # 0.5 -> green-ish
    np.testing.assert_allclose(out[1, 0], [0.5, 0.0, 0.0])            # 1.0 -> dark red
    half = overlay(img, heat, threshold=0.5, alpha=0.5)
    np.testing.assert_allclose(half[1, 0], 0.5 * np.array([0.8] * 3) + 0.5 * np.array([0.5, 0.0, 0.0]))
    np.testing.assert_array_equal(half[0, 1], [img[0, 1]] * 3)


def test_overlay_uint8_image_and_smaller_heat_map():
    img = np.full((8, 8), 51, np.uint8)                 # 51/255 = 0.2
    heat = np.zeros((2, 2), np.float32)                 # all under the threshold
    out = overlay(img, heat, threshold=0.5)
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out, 0.2, atol=1e-7)


def test_overlay_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        overlay(np.zeros((4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((4, 4)), np.zeros((4, 4)), alpha=2.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gray_to_rgb(np.full((2, 2), 3.0))


def test_input_to_rgb_scales_a_normalised_input():
    x = np.stack([np.full((2, 2), -100.0), np.full((2, 2), 0.0), np.full((2, 2), 100.0)])  # (3, 2, 2)
    rgb = input_to_rgb(x)
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[0, 0], [0.0, 0.5, 1.0])


# -- montage and PNG -----------------------------------------------------------------------------
def test_montage_layout_and_labels():
    tiles = [np.full((10, 10), v, np.float32) for v in (0.0, 0.5, 1.0)]
    g = montage(tiles, ncols=2, pad=2)                     # no labels: 2 rows of 10 + 3 pads
    assert g.shape == (2 * 12 + 2, 2 * 12 + 2, 3)
    np.testing.assert_array_equal(g[2:12, 2:12], 0.0)      # first tile, black
    np.testing.assert_allclose(g[2:12, 14:24], 0.5)        # second tile, to its right
    np.testing.assert_array_equal(g[14:24, 14:24], 1.0)    # empty cell: white background
    labelled = montage(tiles, labels=["a", "b", "c"], ncols=3, pad=2, label_height=14)
    assert labelled.shape == (10 + 14 + 2 + 2, 3 * 12 + 2, 3)
    assert labelled[12:26, 2:12].min() < 0.5               # the label's ink under the first tile
    with pytest.raises(ValueError, match="labels"):
        montage(tiles, labels=["a"])


def test_write_png_round_trip_and_no_temp_left(tmp_path):
    img = np.zeros((4, 5, 3), np.float32)
    img[0, 0] = [1.0, 0.0, 0.0]                             # red in RGB
    path = write_png(tmp_path / "sub" / "x.png", img)
    back = cv2.imread(path, cv2.IMREAD_COLOR)               # BGR
    assert back.shape == (4, 5, 3)
    np.testing.assert_array_equal(back[0, 0], [0, 0, 255])
    assert os.listdir(tmp_path / "sub") == ["x.png"]
    dec = cv2.imdecode(np.frombuffer(png_bytes(img), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(dec, back)
    with pytest.raises(ValueError, match=".png"):
        write_png(tmp_path / "x.jpg", img)
