"""Grad-CAM (convnp.plots.gradcam): the formula's values, the layer it explains, and a heat map that finds the region.

The region test trains a tiny network on images whose class is where a bright
square lies: the top-left quadrant (class 0) or the bottom-right one (class 1).
Convolutions are translation-equivariant and a global-average-pooling head
forgets where things are, so the images carry the pixel coordinates as two
extra channels (CoordConv, Liu et al. 2018): the convolutions can then tell
the quadrants apart, and with that head Grad-CAM is the class activation map,
which must light up the square.
"""

from __future__ import annotations

import numpy as np
import pytest

from convnp import nn
from convnp.plots import GradCAM, grad_cam, upsample_bilinear
from convnp.plots.gradcam import conv_blocks, target_layer

SIZE, SQUARE = 16, 4


def quadrant_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 16, 16) float64: noise with a bright 4x4 square inside the top-left (class 0) or bottom-right
    (class 1) quadrant, then the row and column coordinates in [0, 1] as channels 1 and 2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.zeros((n, 3, SIZE, SIZE))
    x[:, 0] = rng.random((n, SIZE, SIZE)) * 0.2
    half = SIZE // 2
    for index in range(n):
        row, col = rng.integers(1, half - SQUARE, size=2) + half * y[index]  # a pixel from the quadrant's edges
        x[index, 0, row : row + SQUARE, col : col + SQUARE] = 0.9 + 0.1 * rng.random()
    x[:, 1] = np.linspace(0, 1, SIZE)[:, None]
    x[:, 2] = np.linspace(0, 1, SIZE)[None, :]
    return x, y


def layers():
    return [nn.Conv2D(8, 3, padding=1), nn.ReLU(), nn.Conv2D(8, 3, padding=1), nn.ReLU(),
            nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(2)]  # fmt: skip


def graph_model(seed: int, dtype: str):
    """The same network as a graph, with a residual connection around the second convolution."""
    inputs = nn.Input((3, SIZE, SIZE))
    first = nn.ReLU()(nn.Conv2D(8, 3, padding=1)(inputs))
    second = nn.ReLU()(nn.Conv2D(8, 3, padding=1)(first))
    joined = nn.Add()([second, first])
    return nn.Model(inputs, nn.Dense(2)(nn.Flatten()(nn.GlobalAvgPool2D()(joined))), seed=seed, dtype=dtype)


def quadrant_masses(heatmap: np.ndarray) -> tuple[float, float]:
    half = heatmap.shape[0] // 2
    return float(heatmap[:half, :half].sum()), float(heatmap[half:, half:].sum())


@pytest.mark.parametrize("kind", ["Sequential", "Model"])
def test_the_heat_map_peaks_in_the_region_that_decides_the_class(kind):
    # float64, so that the same seed trains the same network on any machine
    x, y = quadrant_images(384, seed=1)
    x_test, y_test = quadrant_images(40, seed=11)
    if kind == "Sequential":
        model = nn.Sequential(layers(), input_shape=x.shape[1:], dtype="float64", seed=1)
    else:
        model = graph_model(seed=1, dtype="float64")
    model.fit(x, y, epochs=20, batch_size=32, lr=3e-3, verbose=0, seed=1)
    assert model.evaluate(x_test, y_test)["accuracy"] == 1.0
    in_region = peaks = 0
    for image, label in zip(x_test, y_test):
        (result,) = grad_cam(model, image, classes=[label])
        masses = quadrant_masses(result.heatmap)
        in_region += masses[label] > masses[1 - label]
        upsampled = upsample_bilinear(result.heatmap, (SIZE, SIZE))
        row, col = np.unravel_index(upsampled.argmax(), upsampled.shape)
        peaks += (row >= SIZE // 2) == (col >= SIZE // 2) == bool(label)
    assert in_region >= 0.9 * len(y_test) and peaks >= 0.9 * len(y_test)


def test_with_global_average_pooling_grad_cam_is_the_class_activation_map():
    # alpha_k = W[c, k] / (h w): Grad-CAM = ReLU(sum_k W[c, k] A_k), normalised (Selvaraju et al. 2017, sec. 3.1)
    model = nn.Sequential(layers(), input_shape=(3, 6, 5), dtype="float64", seed=3)
    image = np.random.default_rng(4).random((3, 6, 5))
    maps = image[None]
    for layer in model.layers[:4]:
        maps = layer.forward(maps)
    weight = model.layers[-1].weight.data  # (2, 8)
    for result in grad_cam(model, image, classes=[0, 1]):
        np.testing.assert_allclose(result.weights, weight[result.class_index] / 30, rtol=1e-12)
        expected = np.maximum(np.tensordot(weight[result.class_index], maps[0], axes=1), 0)
        np.testing.assert_allclose(result.heatmap, expected / expected.max(), rtol=1e-10)
        assert result.layer == 3  # the second Conv2D and its ReLU


def test_the_top_classes_come_best_first_with_their_probabilities():
    model = nn.Sequential(layers()[:4] + [nn.Flatten(), nn.Dense(5)], input_shape=(3, 6, 6), seed=1)
    image = np.random.default_rng(0).random((3, 6, 6), dtype=np.float32)
    probabilities = model.predict(image[None])[0]
    results = grad_cam(model, image, top=3)
    assert [r.class_index for r in results] == list(np.argsort(-probabilities)[:3])
    np.testing.assert_allclose([r.probability for r in results], np.sort(probabilities)[::-1][:3], rtol=1e-5)
    assert all(isinstance(r, GradCAM) and r.heatmap.shape == (6, 6) for r in results)
    assert all(r.heatmap.max() in (0.0, 1.0) and r.heatmap.min() >= 0 for r in results)


def test_a_graph_adds_the_gradients_of_a_value_read_twice():
    inputs = nn.Input((1, 5, 5))
    maps = nn.ReLU()(nn.Conv2D(3, 3, padding=1)(inputs))
    doubled = nn.Add()([maps, nn.Identity()(maps)])  # the maps are read twice
    model = nn.Model(inputs, nn.Dense(2)(nn.Flatten()(nn.GlobalAvgPool2D()(doubled))), dtype="float64", seed=0)
    image = np.random.default_rng(1).random((1, 5, 5))
    (result,) = grad_cam(model, image, classes=[1])
    assert result.layer == 1  # Conv2D + ReLU; Identity and Add are not part of the block (two readers)
    np.testing.assert_allclose(result.weights, 2 * model.layers[-1].weight.data[1] / 25, rtol=1e-12)


def test_sequential_and_graph_models_with_the_same_weights_agree():
    sequential = nn.Sequential(layers(), input_shape=(3, 8, 8), dtype="float64", seed=5)
    inputs = nn.Input((3, 8, 8))
    node = inputs
    for layer in layers():
        node = layer(node)
    graph = nn.Model(inputs, node, dtype="float64")
    graph.load_state_dict(sequential.state_dict())
    image = np.random.default_rng(2).random((3, 8, 8))
    for a, b in zip(grad_cam(sequential, image, top=2), grad_cam(graph, image, top=2)):
        assert a.class_index == b.class_index and a.layer == b.layer
        np.testing.assert_allclose(a.heatmap, b.heatmap, rtol=1e-12)


@pytest.mark.parametrize("ending", ["Softmax layer", "softmax activation"])
def test_the_score_is_the_logit_before_the_softmax(ending):
    plain = nn.Sequential(layers(), input_shape=(3, 6, 6), dtype="float64", seed=7)
    head = [nn.Dense(2), nn.Softmax()] if ending == "Softmax layer" else [nn.Dense(2, activation="softmax")]
    with_softmax = nn.Sequential(layers()[:-1] + head, input_shape=(3, 6, 6), dtype="float64", seed=7)
    with_softmax.load_state_dict(plain.state_dict())
    image = np.random.default_rng(3).random((3, 6, 6))
    for a, b in zip(grad_cam(plain, image, top=2), grad_cam(with_softmax, image, top=2)):
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-12)
        assert a.probability == pytest.approx(b.probability)
    assert with_softmax.layers[-1].activation is not None if ending == "softmax activation" else True


def test_parameter_gradients_are_left_as_they_were():
    model = nn.Sequential(layers(), input_shape=(3, 6, 6), seed=0)
    sentinels = [np.full_like(param.data, 7.0) for param in model.parameters()]
    for param, sentinel in zip(model.parameters(), sentinels):
        param.grad = sentinel
    grad_cam(model, np.zeros((3, 6, 6), dtype=np.float32), top=2)
    assert all(param.grad is sentinel for param, sentinel in zip(model.parameters(), sentinels))


def test_blocks_and_the_layer_explained():
    model = nn.Sequential([nn.Conv2D(4, 3, padding=1), nn.BatchNorm2D(), nn.ReLU(), nn.MaxPool2D(2),
                           nn.Residual([nn.Conv2D(4, 3, padding=1), nn.ReLU()]), nn.ReLU(name="last"),
                           nn.Flatten(), nn.Dense(3)], input_shape=(1, 8, 8), seed=0)  # fmt: skip
    assert conv_blocks(model) == [[0, 1, 2], [4, 5]]  # Conv-BN-ReLU; the Residual block (it holds a Conv2D), ReLU
    assert target_layer(model) == 5
    assert target_layer(model, "last") == 5 and target_layer(model, 3) == 3 and target_layer(model, -4) == 4
    image = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
    assert grad_cam(model, image, layer=0, top=1)[0].heatmap.shape == (8, 8)
    with pytest.raises(ValueError, match="not maps"):
        target_layer(model, 6)
    with pytest.raises(ValueError, match="no layer named 'first'"):
        target_layer(model, "first")
    with pytest.raises(ValueError, match="out of range"):
        target_layer(model, 8)
    with pytest.raises(ValueError, match="class 3 is not one of the 3 outputs"):
        grad_cam(model, image, classes=[3])
    dense_only = nn.Sequential([nn.Flatten(), nn.Dense(2)], input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="no convolution"):
        grad_cam(dense_only, np.zeros((1, 4, 4), dtype=np.float32))


def test_upsample_bilinear_matches_pytorch():
    values = np.array([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_allclose(upsample_bilinear(values, (4, 4))[0], [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(upsample_bilinear(np.full((3, 2), 0.5), (7, 5)), 0.5)
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for shape, size in (((3, 4), (9, 7)), ((5, 5), (5, 5)), ((6, 4), (3, 2)), ((1, 1), (4, 4))):
        heatmap = rng.random(shape)
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(heatmap)[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        np.testing.assert_allclose(upsample_bilinear(heatmap, size), expected, rtol=1e-12, atol=1e-12)
