"""Imports flow one way (docs/ARCHITECTURE.md, "Layers"): a module imports only from its own layer
or the ones below, at the top of a file or inside a function alike (a function-level import hides a
circle; it does not remove it). The test parses src/doracle with ``ast``; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from project import ROOT

PACKAGE = ROOT / "src" / "doracle"

#: lowest first; a module's layer is its longest matching prefix
LAYERS: dict[str, int] = {
    # 0: the foundation, imported by everything: errors, registries and the names they know, the
    # params schema, artifact I/O, code provenance, artifact paths, the job table, devices and seeds
    "doracle": 0, "doracle.errors": 0, "doracle.registry": 0, "doracle.config": 0, "doracle.artifacts": 0,
    "doracle.provenance": 0, "doracle.paths": 0, "doracle.jobtable": 0, "doracle.runtime": 0,
    # 1: the double-oracle engine (payoff matrices, meta-solvers, pruning): numpy and scipy only
    "doracle.engine": 1,
    # 2: the torch rooms
    "doracle.compute": 2, "doracle.models": 2, "doracle.data": 2, "doracle.attacks": 2, "doracle.defenses": 2,
    # 3: evaluation and reports take loaded models and arrays, never a game's loader
    "doracle.evaluation": 3, "doracle.report": 3,
    # 4: the games, their jobs and the job graph they define
    "doracle.games": 4,
    # 5: the pipeline adapters (Snakemake, DVC), 6: sweeps over them, 7: the command line
    "doracle.pipeline": 5, "doracle.sweep": 6, "doracle.cli": 7, "doracle.__main__": 7,
    "doracle.forkserver": 7,
}


def layer(module: str) -> tuple[str, int]:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best, LAYERS[best]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def doracle_imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, imported module) of every doracle import in ``path``, relative ones resolved; ``from
    doracle import x`` yields ``doracle.x`` (a submodule, or a name of the package)."""
    mod = module_name(path, package)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "doracle"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "doracle":
                continue
            if base == "doracle":
                out += [(node.lineno, f"doracle.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, base))
    return out


def violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        src_key, src = layer(name)
        for line, target in doracle_imports(path, package):
            dst_key, dst = layer(target)
            if dst > src:
                found.append(f"{path.relative_to(package.parent)}:{line}: {name} (layer {src}, {src_key}) "
                             f"imports {target} (layer {dst}, {dst_key})")
    return found


def test_every_module_has_a_layer():
    assert all(layer(module_name(p)) for p in PACKAGE.rglob("*.py"))
    top = {module_name(p).split(".")[1] for p in PACKAGE.rglob("*.py") if module_name(p) != "doracle"}
    assert {f"doracle.{t}" for t in top} <= set(LAYERS), "a new top-level module: give it a layer"


def test_imports_flow_one_way():
    assert violations() == [], "\n".join(violations())


@pytest.mark.parametrize("source, bad", [
    ("from doracle.games import game_of\n", "doracle.games"),                 # config importing a game
    ("def f():\n    from doracle import pipeline\n", "doracle.pipeline"),    # hidden in a function
    ("from ..games.population import read_population\n", "doracle.games.population"),  # relative
])
def test_the_check_sees_an_upward_import(tmp_path, source, bad):
    pkg = tmp_path / "doracle"
    (pkg / "evaluation").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "evaluation" / "__init__.py").write_text("")
    (pkg / "evaluation" / "x.py").write_text(source)
    (pkg / "config.py").write_text(source if source.startswith("from doracle") else "")
    found = violations(pkg)
    assert found and all(bad in f for f in found), found
    assert violations(pkg) != [] and not violations(PACKAGE)


def unexplained_function_level_imports(package: Path = PACKAGE) -> list[str]:
    """Imports inside functions without a reason: a comment on the import's lines, or above the
    block of imports it belongs to. Such an import is kept only for start-up cost (torch, timm,
    matplotlib, optuna, a game's job module in a light job); anything else belongs at the top of
    the file."""
    found = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        lines = text.split("\n")
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                above = node.lineno - 2
                while above >= 0 and lines[above].strip().startswith(("import ", "from ")):
                    above -= 1  # a block of imports under one comment
                span = [*lines[node.lineno - 1:node.end_lineno], lines[above] if above >= 0 else ""]
                if not any("#" in line for line in span):
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(found))


def test_function_level_imports_say_why():
    assert unexplained_function_level_imports() == [], "\n".join(unexplained_function_level_imports())
