"""The codebase's shape, checked: no import cycle among dropreg's modules, no source file too long
to hold in one's head, and each shared concept spelled in one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src" / "dropreg"
MAX_LINES = 350


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every dropreg module `path` imports, at the top or inside a function (a lazy import that
    closes a cycle is still a cycle in the design)."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("dropreg")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("dropreg"):
                out.add(target)
                out |= {f"{target}.{a.name}" for a in node.names}  # `from . import x` imports module x
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in SRC.rglob("*.py")}
    return {m: {t for t in _imports(p) if t in files and t != m} for m, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_no_import_cycle_among_the_modules():
    graph = _graph()
    assert len(graph) > 30 and graph["dropreg.pipeline"]  # the walk found the package and its imports
    cycle = _cycle(graph)
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_source_file_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def _spelled_in(pattern: str) -> set[str]:
    return {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if re.search(pattern, p.read_text())}


def test_each_shared_vocabulary_is_spelled_in_one_module():
    # the run statuses as string literals
    assert _spelled_in(r"""["'](completed|failed_to_learn|diverged)["']""") == {"status.py"}
    # the checkpoint's own layout (its `dropreg` record and Lightning's keys)
    assert _spelled_in(r"""["'](hyper_parameters|pytorch-lightning_version)["']\s*:""") == {"runfiles.py"}
    assert _spelled_in(r"""\[["']dropreg["']\]""") <= {"runfiles.py"}
    # the figures (each kind's name beside its drawing function)
    assert _spelled_in(r"""FigureKind\(["']""") == {"figure_kinds.py"}
    # the regularizers' display order
    assert _spelled_in(r"""["']none["'],\s*["']dropout["'],\s*["']l2["']""") <= {"paper.py"}
