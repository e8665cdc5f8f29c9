"""viz/dream.py: gradient ascent raises the target (class neuron or channel), seeded and repeatable."""
import numpy as np
import pytest

from rawcnn.engine import models
from rawcnn.viz.dream import Ascent, dream

TINY = {"name": "tiny", "input": [3, 16, 16], "layers": [
    {"type": "Conv2d", "name": "conv1", "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu1"},
    {"type": "MaxPool2d", "name": "pool1", "kernel_size": 2, "stride": 2},
    {"type": "Conv2d", "name": "conv2", "out_channels": 8, "kernel_size": 3, "padding": 1},
    {"type": "ReLU", "name": "relu2"},
    {"type": "Flatten", "name": "flatten"},
    {"type": "Linear", "name": "fc7", "out_features": 16},
    {"type": "ReLU", "name": "relu7"},
    {"type": "Dropout", "name": "drop7", "p": 0.5},
    {"type": "Linear", "name": "fc8", "out_features": 2}]}


def net():
    return models.build(TINY, seed=0, weight_std=0.2)


def test_plain_ascent_is_monotone_for_a_class_neuron():
    # one octave, no jitter, no blur, no decay: small normalised steps must climb every time
    plain = Ascent(octaves=1, steps=15, lr=0.01, l2=0.0, blur_sigma=0.0, jitter=0)
    d = dream(net(), class_index=1, ascent=plain, seed=1)
    h = np.array(d.history)
    assert len(h) == 16
    assert np.all(np.diff(h) > 0), h
    assert d.image.shape == (3, 16, 16) and d.image.dtype == np.float32


@pytest.mark.parametrize("target", [dict(class_index=0), dict(layer="relu2", channel=3)])
def test_full_dream_raises_the_target(target):
    # octaves, blur and L2 decay (jitter defaults to 2 % of 16 px: none)
    n = net()
    d = dream(n, ascent=Ascent(octaves=3, octave_scale=1.4, steps=10), seed=2, **target)
    h = np.array(d.history)
    assert len(h) == 31
    assert h[-1] > h[0] + 0.5 * abs(h[0]) + 1e-3, h
    assert np.mean(np.diff(h) > 0) > 0.8, h                   # monotone-ish: most steps climb
    y = n.activations(d.image[None], [d.layer])[d.layer]
    final = y[0, target["channel"]].mean() if "channel" in target else y[0, target["class_index"]]
    assert final == pytest.approx(h[-1], rel=1e-5)           # history ends with the image's own value


def test_jittered_dream_still_climbs():
    # a 1-pixel jitter is 6 % of this tiny image, so single steps may drop; the trend must not
    h = np.array(dream(net(), class_index=0, ascent=Ascent(octaves=2, steps=15, jitter=1, lr=0.02), seed=3).history)
    assert h[-1] > 2 * h[0] + 0.1, h
    assert np.mean(h[-5:]) > np.mean(h[:5]), h


def test_seeded_and_reproducible():
    quick = Ascent(steps=5, octaves=2)
    a = dream(net(), class_index=1, ascent=quick, seed=7)
    b = dream(net(), class_index=1, ascent=quick, seed=7)
    c = dream(net(), class_index=1, ascent=quick, seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.history == b.history
    assert not np.array_equal(a.image, c.image)
    assert a.rgb().shape == (16, 16, 3)


def test_bad_targets():
    with pytest.raises(ValueError, match="class_index"):
        dream(net(), ascent=Ascent(steps=1))
    with pytest.raises(ValueError, match="channel"):
        dream(net(), "relu2", ascent=Ascent(steps=1))
    with pytest.raises(ValueError, match="channel"):
        dream(net(), "relu2", channel=8, ascent=Ascent(steps=1))
