"""Optional dependencies: import one when a feature needs it, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require", "optional"]


def require(module: str, feature: str, extra: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise ``ImportError`` naming ``pip install convnp[extra]``.

    Example: ``require("matplotlib.pyplot", "convnp.plots", "plots")``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise ImportError(
            f"{feature} needs the optional package '{package}', which is not installed: pip install convnp[{extra}]"
        ) from error


def optional(module: str) -> ModuleType | None:
    """Import ``module`` when it is installed, else None (for features that degrade quietly, like a progress bar)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
