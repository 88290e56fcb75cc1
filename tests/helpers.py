"""Shared test helpers: central-difference gradients and a relative error.

Import as ``from tests.helpers import numeric_grad, rel_error`` (the repository
root is on sys.path under ``python -m pytest``).

Use float64 inputs: with eps = 1e-6 the central difference has a truncation
error of order eps**2 and a rounding error of order 1e-16 * |f| / eps, so an
analytic gradient that is right agrees to about 1e-9 relative.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def numeric_grad(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Gradient of the scalar ``f()`` with respect to the array ``x`` by central differences.

    grad[i] = (f(x + eps * e_i) - f(x - eps * e_i)) / (2 * eps)

    ``x`` is perturbed in place, one element at a time, and restored, so ``f``
    must read ``x`` (a closure over it, or over a Parameter's ``.data``).

    Shape:
        x: any; returns: same as x, float64
    """
    if x.dtype != np.float64:
        raise TypeError(f"numeric_grad: use a float64 x for a meaningful check, got {x.dtype}")
    grad = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        original = x[index]
        x[index] = original + eps
        f_plus = float(f())
        x[index] = original - eps
        f_minus = float(f())
        x[index] = original
        grad[index] = (f_plus - f_minus) / (2 * eps)
    return grad


def numeric_vjp(f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Gradient of sum(f() * dout) w.r.t. ``x``: what a backward pass given ``dout`` returns.

    Shape:
        f(): same as dout; x: any; returns: same as x
    """
    return numeric_grad(lambda: np.sum(f() * dout), x, eps)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|a|, max|b|, 1e-12): one number for the whole tensor.

    Scaling by the largest magnitude (not elementwise) keeps entries near zero
    from blowing up the error.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)
    return float(np.max(np.abs(a - b)) / scale)


def check_grad(
    forward: Callable[[], np.ndarray],
    x: np.ndarray,
    dout: np.ndarray,
    analytic: np.ndarray,
    tol: float = 1e-7,
    eps: float = 1e-6,
) -> float:
    """Assert that ``analytic`` is the gradient of sum(forward() * dout) w.r.t. ``x``.

    Returns the relative error, so a test can report it.
    """
    numeric = numeric_vjp(forward, x, dout, eps)
    assert analytic is not None, "analytic gradient is None"
    assert analytic.shape == x.shape, f"gradient shape {analytic.shape} != {x.shape}"
    error = rel_error(analytic, numeric)
    assert error < tol, f"relative error {error:.3e} >= {tol:.0e}"
    return error


def load_benchmark_script(name: str) -> ModuleType:
    """The module of ``benchmarks/<name>.py`` (a script, not a package), imported from its file."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
