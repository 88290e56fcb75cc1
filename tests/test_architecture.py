"""The package's layers only look down: every import (inside functions too) goes to the same level or below.

The levels, bottom to top, are those of docs/architecture.md. The one upward
call allowed is a model's ``fit``/``evaluate``/``predict`` reaching the
training loop (``convnp.nn.network`` -> ``convnp.training``).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "convnp"

LEVELS = {
    # 0: leaves that know nothing else of convnp
    "_version": 0, "_random": 0, "_optional": 0, "checks": 0, "parameter": 0, "files": 0,
    "backend": 1,  # threads, chunks, scratch buffers, ordered sums
    "distributed": 1,  # MPI ranks: the communicator, batch shards across ranks, failures
    "functional": 2,  # the math
    "nn": 3,  # layers, plans, the engine, Sequential
    "optim": 4, "data": 4,
    "serialization": 5, "training": 5, "callbacks": 5, "models": 5, "gradcheck": 5, "interop": 5, "plots": 5,
    "cli": 6, "bench": 6, "__main__": 6,
}  # fmt: skip
ALLOWED_UPWARD = {("convnp.nn.network", "training")}


def _part(module: str) -> str | None:
    """'convnp.nn.conv' -> 'nn'; None for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every convnp module or name imported anywhere in the file (top level and inside functions)."""
    found = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("convnp"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "convnp":
                found.update(f"convnp.{alias.name}" for alias in node.names)
            elif module.startswith("convnp."):
                found.add(module)
    return found


def _edges() -> dict[str, set[str]]:
    """module -> the parts it imports."""
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        edges[module] = {_part(name) for name in _imports(path)} - {None}
    return edges


def test_every_part_has_a_level():
    parts = {_part(module) for module in _edges()} - {None}
    assert parts <= set(LEVELS), f"parts without a level: {sorted(parts - set(LEVELS))}"


def test_imports_only_look_down():
    upward = []
    for module, targets in _edges().items():
        part = _part(module)
        if part is None:
            continue  # the package root re-exports the public names of every part
        for target in targets:
            if LEVELS[target] > LEVELS[part] and (module, target) not in ALLOWED_UPWARD:
                upward.append(f"{module} -> convnp.{target}")
    assert not upward, "imports that look up:\n" + "\n".join(sorted(upward))


def test_no_cycle_between_parts():
    graph: dict[str, set[str]] = {}
    for module, targets in _edges().items():
        part = _part(module)
        if part is not None:
            graph.setdefault(part, set()).update(t for t in targets if t != part and (module, t) not in ALLOWED_UPWARD)
    visiting, done = set(), set()

    def visit(part: str, path: list[str]) -> None:
        if part in done:
            return
        if part in visiting:
            raise AssertionError("import cycle: " + " -> ".join(path + [part]))
        visiting.add(part)
        for target in sorted(graph.get(part, ())):
            visit(target, path + [part])
        visiting.discard(part)
        done.add(part)

    for part in sorted(graph):
        visit(part, [])


@pytest.mark.parametrize(
    "module, absent",
    [
        ("convnp.functional", ("convnp.nn", "convnp.training", "convnp.serialization")),
        ("convnp.nn", ("convnp.training", "convnp.serialization", "convnp.optim")),
        ("convnp.optim", ("convnp.nn", "convnp.functional")),
        ("convnp.files.atomic", ("convnp.nn", "convnp.functional", "convnp.backend")),
    ],
)
def test_importing_a_part_loads_nothing_above_it(module, absent):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith({absent!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"importing {module} loaded {result.stdout.strip()}"


def test_importing_convnp_loads_no_torch():
    code = "import sys, convnp; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
