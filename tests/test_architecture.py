"""What the import contracts cannot see: the core reads no clock and uses no global generator, and every module
says what it is for. Which package may import which (core < shells < CLI, the shells independent, a light trial
SDK) is checked by import-linter, `make lint` (the contracts are in pyproject.toml, [tool.importlinter])."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).parent.parent / "src" / "kubetune" / "core"


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
