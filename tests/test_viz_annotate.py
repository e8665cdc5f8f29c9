"""The heat-map picture's title strip and colour bar (rawcnn.viz.annotate)."""
import numpy as np

from rawcnn.viz.annotate import annotate
from rawcnn.viz.images import jet


def test_annotate_adds_title_and_a_jet_bar_with_the_threshold_tick():
    rgb = np.full((32, 32, 3), 0.5, np.float32)
    out = annotate(rgb, "img: gradcam, class 1", threshold=0.5)
    assert out.shape == (22 + 256, 256 + 46, 3)                   # enlarged 8x (nearest), title, bar
    assert np.allclose(out[22:, :256], 0.5)                         # the picture itself is untouched
    bar = out[22:, 256 + 4 + 7]                                     # the bar's middle column, top = 1
    assert np.allclose(bar[0], jet(np.array([1.0]))[0], atol=0.02)
    assert np.allclose(bar[-1], jet(np.array([0.0]))[0], atol=0.02)
    assert (out[:22] < 0.5).any()                                   # title ink
    tick_row = 22 + int(round(0.5 * 255))
    assert np.allclose(out[tick_row, 256 + 2], 0.0)                 # the threshold tick


def test_map_to_source_places_the_map_in_its_box():
    from rawcnn.data.contract import map_to_source
    heat = np.ones((4, 4), np.float32)
    out = map_to_source(heat, (2, 6, 1, 9), (10, 12))
    assert out.shape == (10, 12) and out[2:6, 1:9].min() == 1.0
    assert out.sum() == 4 * 8                                       # nothing outside the box


def test_full_res_needs_image_files():
    import pytest

    from rawcnn.app.viz import HeatmapOptions, Images, viz_heatmap
    with pytest.raises(ValueError, match="--full-res draws over the source files"):
        viz_heatmap("unused.h5", "out", Images(data="set.h5"), HeatmapOptions(full_res=True))
