"""Softmax cross-entropy and MSE: hand values, finite differences, PyTorch, extremes."""

import numpy as np
import pytest

from convnp.functional.losses import mse_loss, softmax_cross_entropy
from tests.helpers import numeric_grad, rel_error


def make(n, c, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * 2).astype(dtype)
    labels = rng.integers(0, c, size=n)
    return logits, labels


# ----------------------------------------------------------- cross-entropy
def test_cross_entropy_hand_values():
    # uniform logits: loss log C, gradient (1/C - onehot) / N
    loss, dlogits = softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.log(4), rel=1e-15)
    expected = np.full((2, 4), 0.25)
    expected[[0, 1], [0, 3]] -= 1
    np.testing.assert_allclose(dlogits, expected / 2, rtol=1e-15)


@pytest.mark.parametrize(("n", "c"), [(1, 1), (1, 3), (4, 5), (7, 2)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_cross_entropy_gradient_matches_finite_differences(n, c, smoothing):
    logits, labels = make(n, c, seed=n * c)
    _, dlogits = softmax_cross_entropy(logits, labels, smoothing)
    numeric = numeric_grad(lambda: softmax_cross_entropy(logits, labels, smoothing)[0], logits)
    assert rel_error(dlogits, numeric) < 1e-7


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3, 1.0])
def test_cross_entropy_matches_torch(seed, smoothing):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(300 + seed)
    n, c = int(rng.integers(1, 9)), int(rng.integers(1, 11))
    logits, labels = make(n, c, seed)
    loss, dlogits = softmax_cross_entropy(logits, labels, label_smoothing=smoothing)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(labels), label_smoothing=smoothing)
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-8, abs=1e-12)
    np.testing.assert_allclose(dlogits, t_logits.grad.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_extreme_logits_are_finite_and_exact(dtype):
    logits = np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4]], dtype=dtype)
    labels = np.array([1, 1, 0])
    loss, dlogits = softmax_cross_entropy(logits, labels)
    # per sample: 2e4, 0, log 2
    assert loss == pytest.approx((2e4 + 0 + np.log(2)) / 3, rel=1e-7)
    assert dlogits.dtype == dtype
    np.testing.assert_allclose(dlogits, [[1 / 3, -1 / 3], [0, 0], [-1 / 6, 1 / 6]], rtol=1e-7)
    loss, dlogits = softmax_cross_entropy(logits[:2], labels[:2])
    assert loss == 1e4  # exact
    np.testing.assert_array_equal(dlogits, [[0.5, -0.5], [0.0, 0.0]])
    # with smoothing 0.1 the targets are (0.05, 0.95): 0.95 * 2e4 and 0.05 * 2e4
    loss, dlogits = softmax_cross_entropy(logits[:2], labels[:2], label_smoothing=0.1)
    assert loss == pytest.approx(1e4, rel=1e-6)
    assert np.all(np.isfinite(dlogits))


def test_cross_entropy_float32_agrees_with_float64():
    logits, labels = make(6, 5, seed=4)
    for smoothing in (0.0, 0.2):
        loss64, d64 = softmax_cross_entropy(logits, labels, smoothing)
        loss32, d32 = softmax_cross_entropy(logits.astype(np.float32), labels, smoothing)
        assert isinstance(loss32, float) and d32.dtype == np.float32
        assert loss32 == pytest.approx(loss64, rel=1e-4)
        assert rel_error(d32, d64) < 1e-4


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([0.0, 1.0, 2.0]), "integer"),
        (np.array([True, False, True]), "integer"),
        (np.array([[0], [1], [2]]), r"shape \(3,\)"),
        (np.array([0, 1]), r"shape \(3,\)"),
        (np.array([0, 1, 4]), r"\[0, 4\)"),
        (np.array([-1, 1, 2]), r"\[0, 4\)"),
    ],
)
def test_cross_entropy_rejects_bad_labels(labels, match):
    logits, _ = make(3, 4, seed=0)
    with pytest.raises(ValueError, match=f"softmax_cross_entropy.*{match}"):
        softmax_cross_entropy(logits, labels)


def test_cross_entropy_other_bad_inputs():
    logits, labels = make(3, 4, seed=0)
    with pytest.raises(ValueError, match="softmax_cross_entropy.*label_smoothing"):
        softmax_cross_entropy(logits, labels, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"softmax_cross_entropy.*\(N, C\)"):
        softmax_cross_entropy(logits[0], labels)
    with pytest.raises(TypeError, match="softmax_cross_entropy.*floating"):
        softmax_cross_entropy(logits.astype(np.int64), labels)


# ------------------------------------------------------------------- MSE
def test_mse_hand_values():
    loss, dpred = mse_loss(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [3.0, 5.0]]))
    assert isinstance(loss, float) and loss == pytest.approx(5 / 4)
    np.testing.assert_allclose(dpred, [[0.0, 1.0], [0.0, -0.5]])


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (2, 3, 2)])
def test_mse_gradient_and_torch(shape):
    rng = np.random.default_rng(len(shape))
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, dpred = mse_loss(pred, target)
    assert rel_error(dpred, numeric_grad(lambda: mse_loss(pred, target)[0], pred)) < 1e-7
    torch = pytest.importorskip("torch")
    t_pred = torch.tensor(pred, requires_grad=True)
    t_loss = torch.nn.functional.mse_loss(t_pred, torch.from_numpy(target))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-8)
    np.testing.assert_allclose(dpred, t_pred.grad.numpy(), rtol=1e-8, atol=1e-14)


def test_mse_float32_keeps_dtype_even_with_float64_target():
    rng = np.random.default_rng(9)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss64, d64 = mse_loss(pred, target)
    loss32, d32 = mse_loss(pred.astype(np.float32), target)
    assert d32.dtype == np.float32 and rel_error(d32, d64) < 1e-4
    assert loss32 == pytest.approx(loss64, rel=1e-4)


def test_mse_bad_inputs():
    with pytest.raises(ValueError, match="mse_loss.*shape"):
        mse_loss(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(TypeError, match="mse_loss.*floating"):
        mse_loss(np.ones((2, 3), dtype=np.int64), np.ones((2, 3)))
