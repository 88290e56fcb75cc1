"""``import convnp`` then attribute access: every part of the package is reachable the PyTorch/SciPy way."""

from __future__ import annotations

import subprocess
import sys

import convnp


def test_submodules_are_attributes_after_a_plain_import():
    # A fresh interpreter: in this one, other tests have imported the submodules already.
    code = (
        "import sys, convnp\n"
        "model = convnp.models.mnist_cnn(seed=0)\n"
        "print(type(model).__name__, model.output_shape)\n"
        "print(callable(convnp.data.load), callable(convnp.interop.to_onnx), callable(convnp.plots.plot_filters))\n"
        "print(convnp.nn.Sequential is convnp.Sequential, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:3] == ["Sequential (10,)", "True True True", "True False"]


def test_dir_lists_the_lazy_names():
    for name in ("models", "data", "interop", "plots", "nn", "optim", "training", "load", "save"):
        assert name in dir(convnp)
