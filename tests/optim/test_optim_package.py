"""Tests of the convnp.optim package: its public names and what importing it loads."""

from __future__ import annotations

import ast
import subprocess
import sys

import convnp.optim

# ``import convnp`` runs convnp/__init__.py, which itself imports convnp.nn to
# re-export Sequential; so the child process registers a bare ``convnp``
# package (its __path__ only) and imports convnp.optim alone, which shows what
# the optim modules themselves pull in.
_IMPORT_OPTIM_ALONE = """
import importlib.util, sys, types
package = types.ModuleType("convnp")
package.__path__ = list(importlib.util.find_spec("convnp").submodule_search_locations)
sys.modules["convnp"] = package
import convnp.optim
print(sorted(name for name in sys.modules if name.startswith("convnp")))
"""


def test_importing_convnp_optim_loads_no_layer():
    result = subprocess.run([sys.executable, "-c", _IMPORT_OPTIM_ALONE], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(result.stdout.strip())
    assert "convnp.optim.sgd" in loaded  # the import really ran
    assert not any(name.startswith("convnp.nn") for name in loaded)
    outside_optim = {name for name in loaded if not name.startswith("convnp.optim")}
    assert outside_optim <= {"convnp", "convnp.parameter", "convnp.checks"}


def test_public_names_are_exported_from_the_package():
    expected = {
        "OPTIMIZERS", "SCHEDULERS", "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get_optimizer",
        "clip_grad_norm", "LRScheduler", "StepLR", "CosineAnnealingLR", "LinearWarmup", "WarmupCosine",
    }  # fmt: skip
    assert set(convnp.optim.__all__) == expected
    assert all(hasattr(convnp.optim, name) for name in expected)
    assert convnp.optim.OPTIMIZERS == {
        "sgd": convnp.optim.SGD,
        "adam": convnp.optim.Adam,
        "adamw": convnp.optim.AdamW,
        "rmsprop": convnp.optim.RMSprop,
    }
