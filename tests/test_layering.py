"""Imports follow the data flow, module by module: each module imports only its own layer and the layers
below it, string imports included (`importlib.import_module("...")`, `"package.module:attr"`). Only the CLI
package (the composition root) wires the library, eval and serve together; eval and serve never import
each other.

The table below is the order (the README copies it). A module takes the layer of the longest prefix that
names it; every module of our three packages must have one.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("moderation", "eval", "serve")

# layer: the modules in it. A module may import its own layer and every layer above it in this table.
LAYERS = [
    ("leaves", ["moderation.policy", "moderation.config", "moderation.runfiles"]),
    ("data", ["moderation.data"]),
    ("encoders", ["moderation.encoders"]),
    ("model", ["moderation.features", "moderation.fusion", "moderation.model", "moderation.zeroshot",
               "moderation.losses", "moderation.lexical"]),
    ("scoring", ["moderation.scoring"]),
    ("training", ["moderation.train", "moderation.training"]),
    ("api", ["moderation.moderator", "moderation.registry", "moderation"]),  # `moderation` itself: the public API
    ("eval", ["eval"]),
    ("serve", ["serve"]),
    ("cli", ["moderation.cli"]),  # the composition root: may import everything
]
RANK = {prefix: rank for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}
NEVER = {("eval", "serve"), ("serve", "eval")}  # neither side imports the other, whatever the order says

MODULE_ATTR = re.compile(r"^([A-Za-z_]\w*(?:\.\w+)*):[A-Za-z_]\w*$")  # "serve.app:build_app"
IMPORT_FUNCTIONS = {"import_module", "__import__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    prefix = max((p for p in RANK if module == p or module.startswith(p + ".")), key=len, default=None)
    if prefix is None:
        raise KeyError(f"{module} is in no layer of LAYERS: add it to the table")
    return prefix


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def resolve(base: str, level: int, package: str) -> str:
    """The absolute name of a relative import `from .{base}` (level dots) inside `package`."""
    parts = package.split(".")
    return ".".join(parts[:len(parts) - level + 1] + ([base] if base else []))


def ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def string_target(node: ast.Call, package: str) -> str | None:
    """The module an `importlib.import_module(...)` call names: a literal, or an f-string's literal prefix."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in IMPORT_FUNCTIONS or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        text = arg.value
    elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        text = arg.values[0].value.rsplit(".", 1)[0]  # f"eval.benchmarks.{name}" -> eval.benchmarks
    else:
        return None
    if text.startswith("."):
        dots = len(text) - len(text.lstrip("."))
        return resolve(text.lstrip("."), dots, package)
    return text


@cache
def imports_of(path: Path) -> dict[str, str]:
    """{imported module of ours: how (the source line)} for one file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = docstrings(tree)
    found = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            base = resolve(base, node.level, package) if node.level else base
            # `from pkg import mod` imports the module pkg.mod; `from pkg import name` imports pkg.
            targets = [f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names]
        elif isinstance(node, ast.Call):
            targets = [t for t in [string_target(node, package)] if t]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            match = MODULE_ATTR.match(node.value)
            targets = [match.group(1)] if match else []
        for target in targets:
            if ours(target):
                found.setdefault(target, f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def violation(importer: str, imported: str) -> str | None:
    a, b = layer(importer), layer(imported)
    top = lambda prefix: prefix.split(".")[0] if prefix in ("eval", "serve") else prefix
    if (top(a), top(b)) in NEVER:
        return f"{a} never imports {b}"
    if RANK[b] > RANK[a]:
        return f"layer {LAYERS[RANK[a]][0]!r} imports the higher layer {LAYERS[RANK[b]][0]!r}"
    return None


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_follow_the_layers(path):
    importer = module_name(path)
    offenders = [f"{where}: {importer} imports {target} ({why})" for target, where in imports_of(path).items()
                 if (why := violation(importer, target))]
    assert not offenders, "\n".join(offenders)


def test_every_module_has_a_layer():
    assert all(layer(module_name(p)) for p in source_files())


def test_the_checker_sees_string_imports_and_resolves_relative_ones(tmp_path, monkeypatch):
    """The checker itself: a forbidden import hidden in a string or behind a relative name is still found."""
    sample = REPO / "eval" / "monitoring" / "monitor.py"
    assert "eval.monitoring.drift" in imports_of(sample)  # `from .drift import ...`
    cli = imports_of(REPO / "moderation" / "cli" / "bench.py")
    assert "eval.benchmarks" in cli and "serve.app" in cli  # f-string import_module, plain import
    assert violation("eval.benchmarks.serving", "serve.app") == "eval never imports serve"
    assert violation("serve.app", "eval.metrics") == "serve never imports eval"
    assert violation("moderation.scoring", "moderation.moderator").startswith("layer 'scoring' imports")
    assert violation("moderation.cli.serve", "serve.local") is None
    fake = tmp_path / "fake.py"
    fake.write_text('"""Docs may say serve.app:build_app."""\nimport importlib\n'
                    'importlib.import_module("serve.app")\nAPP = "serve.app:build_app"\n')
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    imports_of.cache_clear()
    assert set(imports_of(fake)) == {"serve.app"}
    assert imports_of(fake)["serve.app"] == "fake.py:3"
    imports_of.cache_clear()


def test_no_bare_import_of_our_eval_or_serve_shadowing():
    for path in REPO.glob("*/**/*.py"):
        if ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert all(a.name != "eval" for a in node.names), f"{path}: bare `import eval` shadows the builtin"
