"""A whole Sequential against the same torch.nn.Sequential: logits, loss, every gradient, running statistics."""

import numpy as np
import pytest

from convnp.functional.losses import softmax_cross_entropy
from convnp.nn import (
    BatchNorm2D,
    Conv2D,
    Dense,
    Flatten,
    GroupNorm,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)


def build_pair(torch, dtype: str):
    model = Sequential(
        [
            Conv2D(6, 3, stride=2, padding=1),
            BatchNorm2D(),
            ReLU(),
            MaxPool2D(2),
            Conv2D(8, (3, 2)),
            GroupNorm(2),
            Tanh(),
            Flatten(),
            Dense(16),
            Sigmoid(),
            Dense(5),
        ],  # fmt: skip
        input_shape=(3, 17, 15),
        dtype=dtype,
        seed=0,
    )
    nn = torch.nn
    module = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, (3, 2)), nn.GroupNorm(2, 8), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 2 * 3, 16),
        nn.Sigmoid(), nn.Linear(16, 5),
    )  # fmt: skip
    module = module.double() if dtype == "float64" else module
    # PyTorch's weights go into convnp through load_state_dict (random, non-default norm affine too).
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.5)
    model.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})
    return model, module


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sequential_equals_torch_in_training_and_inference(dtype):
    torch = pytest.importorskip("torch")
    model, module = build_pair(torch, dtype)
    assert model.output_shape == (5,)
    rtol = 1e-8 if dtype == "float64" else 2e-4
    rng = np.random.default_rng(0)
    for step in range(3):  # several training steps: running statistics accumulate
        x = rng.standard_normal((4, 3, 17, 15)).astype(dtype)
        y = rng.integers(0, 5, 4)
        logits = model.forward(x, training=True)
        loss, dlogits = softmax_cross_entropy(logits, y)
        model.zero_grad()
        model.backward(dlogits)

        module.train()
        module.zero_grad()
        logits_t = module(torch.from_numpy(x))
        loss_t = torch.nn.functional.cross_entropy(logits_t, torch.from_numpy(y))
        loss_t.backward()

        np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=rtol, atol=rtol * 1e-2)
        assert loss == pytest.approx(loss_t.item(), rel=rtol)
        torch_params = dict(module.named_parameters())
        for name, param in model.named_parameters():
            np.testing.assert_allclose(param.grad, torch_params[name].grad.numpy(), rtol=rtol, atol=rtol * 1e-2,
                                       err_msg=f"step {step}: gradient of {name}")  # fmt: skip
        torch_state = module.state_dict()
        for name in ("1.running_mean", "1.running_var"):
            np.testing.assert_allclose(model.state_dict()[name], torch_state[name].numpy(), rtol=rtol)

    module.eval()
    x = rng.standard_normal((3, 3, 17, 15)).astype(dtype)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x, training=False), expected, rtol=rtol, atol=rtol * 1e-2)
    probabilities = model.predict(x)
    np.testing.assert_allclose(probabilities, torch.softmax(torch.from_numpy(expected), 1).numpy(), rtol=rtol * 10)
    assert probabilities.dtype == np.dtype(dtype)
