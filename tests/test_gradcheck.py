"""The gradient checker itself: it passes on correct layers and catches a wrong backward."""
import numpy as np
import pytest

from rawcnn.engine.gradcheck import THRESHOLD, check_layers, numeric_gradient, rel_error, run_gradcheck
from rawcnn.engine.layers import Linear, ReLU, WeightInit


def test_numeric_gradient_of_a_known_function():
    x = np.array([1.0, -2.0, 3.0])
    dy = np.array([1.0, 2.0, 0.5])
    g, kinks = numeric_gradient(lambda: x ** 3, x, dy)  # d/dx sum(x^3 * dy) = 3 x^2 dy
    assert not kinks.any()
    assert rel_error(g, 3 * np.array([1.0, 4.0, 9.0]) * dy) < 1e-9
    np.testing.assert_array_equal(x, [1.0, -2.0, 3.0])  # restored


def test_numeric_gradient_steps_around_a_kink():
    x = np.array([0.0, 0.5])
    g, kinks = numeric_gradient(lambda: np.abs(x), x, np.ones(2))
    assert kinks.tolist() == [True, False] and g[1] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["Conv2d", "ReLU", "LRN", "MaxPool2d", "GlobalAvgPool", "Linear", "Dropout",
                                  "Softmax", "Flatten", "SoftmaxCrossEntropy", "Net"])
def test_every_layer_type_passes(kind):
    rows = run_gradcheck(kind)
    assert rows
    # single layers meet docs/style.md's 1e-7; the whole net (a scalar loss, step 1e-4) the command's 1e-6
    limit = THRESHOLD if kind == "Net" else 1e-7
    for r in rows:
        assert r.max_rel_error < limit, (r.layer, r.config, r.tensor, r.max_rel_error)
        assert r.checked > 0


def test_a_wrong_backward_is_caught():
    class LeakyWrong(ReLU):
        def backward(self, dy):  # wrong: lets 10% of the gradient through where x < 0
            y = self.need("y")
            return dy * np.where(y > 0, 1.0, 0.1)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1, (2, 6)) * rng.choice([-1, 1], (2, 6))
    rows = check_layers([LeakyWrong(name="relu")], x, rng.standard_normal((2, 6)))
    assert rows[0].max_rel_error > THRESHOLD


def test_a_wrong_weight_gradient_is_caught():
    class Wrong(Linear):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["w"] = self.grads["w"] * 1.001
            return dx
    rng = np.random.default_rng(0)
    layer = Wrong(4, 3, name="fc", init=WeightInit(0.01, rng, np.float64))
    rows = check_layers([layer], rng.standard_normal((2, 4)), rng.standard_normal((2, 3)))
    by = {r.tensor: r for r in rows}
    assert by["dx"].ok and not by["dw"].ok and by["db"].ok
