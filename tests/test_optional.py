"""Tests of convnp._optional: importing optional packages, and the install instruction when one is missing."""

from __future__ import annotations

import numpy as np
import pytest

from convnp._optional import optional, require

MISSING = "convnp_test_no_such_package.sub"


def test_require_returns_an_installed_module():
    assert require("numpy", "a feature", "extra") is np
    assert require("numpy", "a feature", hint="pip install numpy") is np


def test_require_names_the_convnp_extra():
    with pytest.raises(ImportError) as raised:
        require(MISSING, "convnp.plots", "plots")
    assert str(raised.value) == (
        "convnp.plots needs the optional package 'convnp_test_no_such_package', which is not installed: "
        "pip install convnp[plots]"
    )


def test_require_gives_the_hint_for_a_package_outside_the_extras():
    with pytest.raises(ImportError) as raised:
        require(MISSING, "convnp.interop.to_torch", hint="pip install torch (see https://pytorch.org)")
    assert str(raised.value).endswith("which is not installed: pip install torch (see https://pytorch.org)")
    assert "convnp[" not in str(raised.value)


@pytest.mark.parametrize("kwargs", [{}, {"extra": "plots", "hint": "pip install it"}])
def test_require_needs_exactly_one_of_extra_and_hint(kwargs):
    with pytest.raises(TypeError, match="exactly one of extra and hint"):
        require("numpy", "a feature", **kwargs)


def test_optional_is_none_when_absent():
    assert optional(MISSING) is None
    assert optional("numpy") is np
