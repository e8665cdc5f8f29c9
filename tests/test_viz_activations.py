"""viz/activations.py: raw activations, the channel ranking (planted channels), grids and files."""
import cv2
import h5py
import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.viz.activations import (
    activation_grid,
    channel_scores,
    layer_activations,
    rank_channels,
    save_activations,
    top_channels,
)

TINY = {"name": "tiny", "input": [3, 12, 12], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 5, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}


def planted():
    """acts (4, 8, 8): channel 2 fires on rows 2..3, cols 4..5 only; channel 0 is strong everywhere else."""
    rng = np.random.default_rng(0)
    a = rng.random((4, 8, 8)) * 0.1
    a[0] += 1.0                                  # the highest mean overall ...
    a[0, 2:4, 4:6] = 0.0                         # ... but silent on the region
    a[2, 2:4, 4:6] = 5.0                         # the planted channel
    return a


def test_top_channels_without_mask_ranks_by_mean():
    a = planted()
    ch, sc = top_channels(a, k=4)
    assert ch[0] == 0
    np.testing.assert_allclose(sc, a.mean(axis=(1, 2))[ch])
    assert np.all(np.diff(sc) <= 0)


def test_top_channels_with_mask_picks_the_planted_channel():
    a = planted()
    mask = np.zeros((32, 32), np.uint8)          # image space, 4x the map
    mask[8:16, 16:24] = 255                      # covers map cells rows 2..3, cols 4..5 exactly
    ch, sc = top_channels(a, k=2, mask=mask)
    assert ch[0] == 2
    assert sc[0] == pytest.approx(5.0)           # mean inside: exactly the planted value
    assert top_channels(a, k=1, mask=mask, contrast=True)[0][0] == 2


def test_area_weights_of_a_partial_mask():
    a = np.zeros((2, 2, 2))
    a[1, 0, 0] = 4.0
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:1] = True                        # half of map cell (0, 0)
    mask[0:2, 2:4] = True                        # all of cell (0, 1)
    # weights 0.5 at (0, 0) and 1 at (0, 1): channel 1 scores 0.5 * 4 / 1.5
    np.testing.assert_allclose(channel_scores(a, mask)[0], [0.0, 2.0 / 1.5])


def test_top_channels_batch_masks_and_empty_masks():
    a = np.stack([planted(), planted()])         # (2, 4, 8, 8)
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 2:4, 4:6] = 1                       # image 1 has an empty mask: left out
    assert top_channels(a, 1, masks)[0][0] == 2
    assert channel_scores(a, masks).shape == (1, 4)
    with pytest.raises(ValueError, match="every mask is empty"):
        top_channels(a, 1, np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="k must be"):
        top_channels(a, 9)
    with pytest.raises(ValueError, match="do not match"):
        top_channels(a, 1, np.zeros((3, 8, 8)))


def test_layer_activations_and_rank_channels_over_batches():
    net = models.build(TINY, seed=1, weight_std=0.3)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 3, 12, 12)).astype(np.float32)
    a = layer_activations(net, x, "relu1", batch_size=3)
    np.testing.assert_array_equal(a, net.activations(x, ["relu1"])["relu1"])
    masks = (rng.random((7, 12, 12)) > 0.7).astype(np.uint8)
    masks[4] = 0                                                  # an empty mask is skipped
    ch, sc = rank_channels(net, x, "relu1", masks=masks, k=None, batch_size=3)
    want = channel_scores(a, masks).mean(axis=0)                  # all images at once
    np.testing.assert_array_equal(ch, np.argsort(-want, kind="stable"))
    np.testing.assert_allclose(sc, want[ch])


def test_activation_grid_shape():
    g = activation_grid(planted(), channels=[2, 0], tile=16, highlight=[2])
    assert g.ndim == 3 and g.shape[2] == 3 and g.dtype == np.float32
    assert 0.0 <= g.min() and g.max() <= 1.0


@pytest.mark.parametrize("fmt", ["npy", "h5"])
def test_save_activations_writes_png_and_raw(tmp_path, fmt):
    net = models.build(TINY, seed=3, weight_std=0.3)
    x = np.random.default_rng(4).standard_normal((3, 12, 12)).astype(np.float32)
    out = save_activations(net, x, "relu1", tmp_path, stem="img0", raw_format=fmt, k=2)
    assert cv2.imread(str(out["png"])) is not None
    want = net.activations(x[None], ["relu1"])["relu1"][0]
    if fmt == "npy":
        raw = np.load(out["raw"])
    else:
        with h5py.File(out["raw"], "r") as f:
            raw = f["activations"][...]
            assert f.attrs["layer"] == "relu1"
    np.testing.assert_array_equal(raw, want)
    assert len(out["top"]) == 2
    with pytest.raises(ValueError, match="not per-channel maps"):
        save_activations(net, x, "fc8", tmp_path)
