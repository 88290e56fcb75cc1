"""The tutorial notebooks in docs/tutorials are committed executed, in order, and their links resolve.

Running them is nbmake's job (``pytest --nbmake docs/tutorials``); these checks
read the committed files only, so they are fast and need no Jupyter: a notebook
saved without its outputs, with an error in an output, executed out of order or
linking a note that does not exist fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
# [text](target): relative targets only; web addresses and in-page anchors are not files.
LINK = re.compile(r"\]\((?!https?://|#)([^)\s]+)\)")


def cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text(encoding="utf-8"))["cells"]


def text(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def outputs_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"] if isinstance(output["text"], str) else "".join(output["text"]))
    return "".join(parts)


def test_at_least_six_notebooks_numbered_from_01_without_gaps():
    numbers = [int(notebook.name[:2]) for notebook in NOTEBOOKS]
    assert len(numbers) >= 6
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_saved_executed_top_to_bottom_without_errors(notebook):
    code = [cell for cell in cells(notebook) if cell["cell_type"] == "code"]
    assert code, f"{notebook.name} has no code"
    # One run of the whole notebook numbers its cells 1, 2, 3, ...
    assert [cell["execution_count"] for cell in code] == list(range(1, len(code) + 1))
    errors = [output for cell in code for output in cell.get("outputs", []) if output["output_type"] == "error"]
    assert errors == []
    assert "This notebook ran in" in outputs_text(code[-1]), "the last cell reports the running time"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_links_resolve_and_reach_the_math_notes(notebook):
    markdown = "\n".join(text(cell) for cell in cells(notebook) if cell["cell_type"] == "markdown")
    targets = LINK.findall(markdown)
    missing = [target for target in targets if not (TUTORIALS / target.split("#")[0]).is_file()]
    assert missing == []
    notes = [target for target in targets if target.startswith("../") and target.endswith(".md")]
    assert notes, f"{notebook.name} links no note in docs/"


def test_readme_lists_every_notebook_and_its_links_resolve():
    readme = (TUTORIALS / "README.md").read_text(encoding="utf-8")
    targets = LINK.findall(readme)
    assert [notebook.name for notebook in NOTEBOOKS if notebook.name not in targets] == []
    assert [target for target in targets if not (TUTORIALS / target.split("#")[0]).is_file()] == []
