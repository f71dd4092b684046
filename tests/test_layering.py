"""Imports follow the data flow: moderation (library) <- eval <- serve; only the CLI wires them together."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = {"moderation": {"eval", "serve"}, "eval": {"serve"}, "serve": {"eval"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_backward_imports(package):
    offenders = []
    for path in (REPO / package).rglob("*.py"):
        if path.name == "cli.py" and package == "moderation":
            continue  # the composition root
        bad = imported_packages(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert not offenders, offenders


def test_no_bare_import_of_our_eval_or_serve_shadowing():
    for path in REPO.glob("*/**/*.py"):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert all(a.name != "eval" for a in node.names), f"{path}: bare `import eval` shadows the builtin"
