"""Every third-party module imported under src/doracle is provided by a declared dependency.

A package that arrives only by chance (installed by hand, or pulled in by another package) breaks
the product on a fresh machine. The check parses every module with ``ast`` (the standard library
and doracle itself excluded) and maps imported modules to distributions with
``importlib.metadata.packages_distributions()``. A module imported at the top of a file must come
from a runtime dependency; a module imported lazily (inside a function) may come from an optional
extra instead. Every declared runtime dependency must also be installed: the pipeline's tools
(Snakemake, DVC) are run, not imported.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

from project import ROOT


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    return norm(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])


def declared(pyproject: Path) -> tuple[set[str], dict[str, set[str]]]:
    proj = tomllib.loads(pyproject.read_text())["project"]
    runtime = {requirement_name(r) for r in proj.get("dependencies", [])}
    extras = {k: {requirement_name(r) for r in v} for k, v in proj.get("optional-dependencies", {}).items()}
    return runtime, extras


def imports(src: Path) -> list[tuple[str, Path, int, bool]]:
    """(top-level module, file, line, imported at module level) for every absolute import."""
    own = {p.name for p in src.iterdir() if p.is_dir()}
    out = []
    for f in sorted(src.rglob("*.py")):
        tree = ast.parse(f.read_text(), filename=str(f))
        top_level = {id(n) for n in tree.body}
        # imports directly under `if TYPE_CHECKING:` / `try:` at module level count as top level
        for n in tree.body:
            if isinstance(n, ast.If | ast.Try):
                top_level |= {id(c) for c in ast.walk(n)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in own or top == "__future__":
                    continue
                out.append((top, f, node.lineno, id(node) in top_level))
    return out


def undeclared(src: Path, pyproject: Path, dists: dict[str, list[str]]) -> list[str]:
    """Problems, one line each, naming the module and the file that imports it."""
    runtime, extras = declared(pyproject)
    optional = set().union(*extras.values()) if extras else set()
    problems = []
    for mod, f, line, at_top in imports(src):
        provided_by = {norm(d) for d in dists.get(mod, [])}
        where = f"{f.relative_to(pyproject.parent)}:{line}"
        if not provided_by:
            problems.append(f"module {mod!r} (imported in {where}) is not provided by any installed "
                            "distribution: declare it in pyproject.toml and install it")
        elif not provided_by & (runtime if at_top else runtime | optional):
            kind = "runtime dependency" if at_top else "dependency or optional extra"
            problems.append(f"module {mod!r} (imported in {where}) comes from {sorted(provided_by)}, "
                            f"which is not a declared {kind} in pyproject.toml")
    return problems


def missing_runtime(pyproject: Path) -> list[str]:
    runtime, _ = declared(pyproject)
    out = []
    for dist in sorted(runtime):
        try:
            md.version(dist)
        except md.PackageNotFoundError:
            out.append(f"declared runtime dependency {dist!r} is not installed")
    return out


def test_every_imported_module_is_a_declared_dependency():
    problems = undeclared(ROOT / "src", ROOT / "pyproject.toml", md.packages_distributions())
    assert not problems, "\n".join(problems)


def test_every_declared_runtime_dependency_is_installed():
    problems = missing_runtime(ROOT / "pyproject.toml")
    assert not problems, "\n".join(problems)


@pytest.fixture
def fake_project(tmp_path):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "a.py").write_text(
        "import os\nimport numpy as np\nfrom pkg import b\n\ndef f():\n    import scipy.linalg\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "pkg"\ndependencies = ["numpy>=1"]\n'
        '[project.optional-dependencies]\nextra = ["scipy>=1"]\n')
    return tmp_path


def test_the_check_names_module_and_file_of_an_uninstalled_dependency(fake_project):
    """What a fresh machine without numpy would see: the module is mapped to no distribution."""
    dists = md.packages_distributions()
    ok = undeclared(fake_project / "src", fake_project / "pyproject.toml", dists)
    assert ok == []
    gone = {k: v for k, v in dists.items() if k != "numpy"}
    problems = undeclared(fake_project / "src", fake_project / "pyproject.toml", gone)
    assert len(problems) == 1 and "'numpy'" in problems[0] and "src/pkg/a.py:2" in problems[0]


def test_an_extra_only_covers_lazy_imports(fake_project):
    a = fake_project / "src" / "pkg" / "a.py"
    a.write_text("import scipy\nimport numpy\n")
    problems = undeclared(fake_project / "src", fake_project / "pyproject.toml", md.packages_distributions())
    assert len(problems) == 1 and "'scipy'" in problems[0] and "not a declared runtime dependency" in problems[0]


def test_a_module_declared_nowhere_is_reported(fake_project):
    (fake_project / "pyproject.toml").write_text('[project]\nname = "pkg"\ndependencies = ["scipy>=1"]\n')
    problems = undeclared(fake_project / "src", fake_project / "pyproject.toml", md.packages_distributions())
    assert any("'numpy'" in p and "src/pkg/a.py:2" in p for p in problems)
