#!/usr/bin/env python3
"""Set up and run convnp on a fresh machine with nothing but Python 3.10+.

    python3 dev.py demo    # create .venv, install convnp, train a CNN on the embedded digits data
    python3 dev.py test    # create .venv, install convnp with its test tools and PyTorch (CPU),
                           # check style (ruff check, ruff format --check), run the tests and
                           # execute the tutorial notebooks (nbmake)

The virtual environment lives in ./.venv (override with CONVNP_VENV). PyTorch
is only a test oracle: the CPU build ``torch==2.13.0+cpu`` is installed when a
local wheel or PyTorch's CPU index provides it, never a multi-gigabyte CUDA
build; without it the PyTorch comparison tests are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CONVNP_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
TORCH = "torch==2.13.0+cpu"


def run(*command: str | Path, check: bool = True) -> int:
    print("+", " ".join(str(part) for part in command), flush=True)
    return subprocess.run([str(part) for part in command], cwd=ROOT, check=check).returncode


def pip(*args: str, check: bool = True) -> int:
    return run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args, check=check)


def ensure_venv(extras: str, with_torch: bool) -> None:
    if not PYTHON.exists():
        venv.create(VENV, with_pip=True)
    pip("-e", f".[{extras}]")
    if with_torch and run(PYTHON, "-c", "import torch", check=False) != 0:
        if (
            pip(TORCH, check=False) != 0
            and pip(TORCH, "--index-url", "https://download.pytorch.org/whl/cpu", check=False) != 0
        ):
            print("PyTorch (CPU) could not be installed: the PyTorch comparison tests will be skipped.", flush=True)


def main(argv: list[str]) -> int:
    task = argv[0] if argv else "help"
    if task == "demo":
        ensure_venv("all", with_torch=False)
        return run(BIN / "convnp", "train", *argv[1:], check=False)
    if task == "test":
        ensure_venv("dev", with_torch=True)
        checked = ("src", "tests", "benchmarks", "docs/tutorials", "dev.py")
        lint = run(BIN / "ruff", "check", *checked, check=False)
        lint |= run(BIN / "ruff", "format", "--check", *checked, check=False)
        return run(PYTHON, "-m", "pytest", *(argv[1:] or default_test_paths()), check=False) or lint
    print(__doc__)
    return 0 if task in ("help", "-h", "--help") else 2


def default_test_paths() -> list[str]:
    """Every test, and the tutorial notebooks executed by nbmake (one of them needs PyTorch)."""
    if run(PYTHON, "-c", "import torch", check=False) != 0:
        print("PyTorch is missing: the tutorial notebooks are not executed.", flush=True)
        return ["tests"]
    return ["--nbmake", "tests", "docs/tutorials"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
