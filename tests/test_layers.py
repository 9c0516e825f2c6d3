"""The import rule of the package (README "Architecture"): verb packages never import each
other, lower layers never import a verb or the command line, verbs never import the command
line or the experiment drivers. Read from the source with ``ast``, function-local imports
included."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "masktwins_cli"
VERBS = {"training", "inference", "evaluation", "prepare"}
TOP = {"cli", "cli_options", "cli_prepare", "cli_support", "experiments", "terminal"}
LOWER = {"errors", "models", "method", "config", "io", "data", "synapse", "synthetic", "scoring",
         "runtime", "recipes"}


def component(module: str) -> str | None:
    """``masktwins_cli.training.run`` -> ``training``; None outside the package."""
    parts = module.split(".")
    return parts[1] if parts[0] == "masktwins_cli" and len(parts) > 1 else None


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def edges() -> list[tuple[str, str, str]]:
    """(file, importer component, imported component) for every import inside the package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = component(module_name(path))
        for name in imports_of(path):
            theirs = component(name)
            if mine and theirs and theirs != mine:
                out.append((str(path.relative_to(PACKAGE)), mine, theirs))
    return out


def test_every_component_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    names.discard("__init__")
    assert names <= VERBS | TOP | LOWER, names - (VERBS | TOP | LOWER)


def test_verb_packages_never_import_each_other():
    bad = [e for e in edges() if e[1] in VERBS and e[2] in VERBS]
    assert not bad, bad


def test_lower_layers_never_import_verbs_or_the_command_line():
    bad = [e for e in edges() if e[1] in LOWER and e[2] in VERBS | TOP]
    assert not bad, bad


def test_verbs_never_import_the_command_line_or_the_drivers():
    bad = [e for e in edges() if e[1] in VERBS and e[2] in TOP]
    assert not bad, bad


@pytest.mark.parametrize("source, expected", [
    ("from ..inference.windows import x\n", "masktwins_cli.inference.windows"),
    ("from . import step\n", "masktwins_cli.training.step"),
    ("def f():\n    from ..evaluation import metrics\n", "masktwins_cli.evaluation.metrics"),
])
def test_relative_and_local_imports_are_resolved(tmp_path, source, expected, monkeypatch):
    folder = tmp_path / "masktwins_cli" / "training"
    folder.mkdir(parents=True)
    path = folder / "run.py"
    path.write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "masktwins_cli")
    assert expected in imports_of(path)
