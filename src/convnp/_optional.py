"""Optional dependencies: import one when a feature needs it, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require", "optional"]


def require(module: str, feature: str, extra: str | None = None, *, hint: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or raise ``ImportError`` saying how to install it.

    The install instruction is ``pip install 'convnp[extra]'``, or ``hint`` as
    given for a package that no convnp extra installs (PyTorch, whose right
    build depends on the machine). Pass exactly one of ``extra`` and ``hint``.

    Examples: ``require("matplotlib.pyplot", "convnp.plots", "plots")``;
    ``require("torch", "convnp.interop.to_torch", hint="pip install torch")``.
    """
    if (extra is None) == (hint is None):
        raise TypeError(f"require: pass exactly one of extra and hint (module {module!r})")
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        instruction = hint if hint is not None else f"pip install convnp[{extra}]"
        raise ImportError(
            f"{feature} needs the optional package '{package}', which is not installed: {instruction}"
        ) from error


def optional(module: str) -> ModuleType | None:
    """Import ``module`` when it is installed, else None (for features that degrade quietly, like a progress bar)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
