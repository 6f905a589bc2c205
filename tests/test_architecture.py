"""The core stays pure: no module under kubetune.core imports a shell, an I/O framework or the clock."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).parent.parent / "src" / "kubetune" / "core"
FORBIDDEN = ("kubetune.cli", "kubetune.runners", "kubetune.operator", "kopf", "kubernetes", "ray", "rich",
             "subprocess", "asyncio", "time")


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_shell():
    offenders = {}
    for path in CORE.rglob("*.py"):
        bad = {n for n in imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
        if bad:
            offenders[str(path.relative_to(CORE))] = sorted(bad)
    assert offenders == {}


def test_core_reads_no_clock_and_no_global_rng():
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        for call in ("datetime.now(", "time.time(", "np.random.seed(", "np.random.rand(", "random.random("):
            assert call not in text, f"{path.name} calls {call}"


def test_every_module_has_a_docstring():
    for path in (CORE.parent).rglob("*.py"):
        tree = ast.parse(path.read_text())
        if path.name == "__init__.py" and not tree.body:
            continue
        assert ast.get_docstring(tree), f"{path} has no module docstring"
