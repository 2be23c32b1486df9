"""The house's floors hold: imports run one way, down the floors of DESIGN.md, and no
module reads another module's private names.

The floors are import-linter contracts in pyproject.toml (``[tool.importlinter]``); they
see imports inside functions too. Tests may use private names; the package may not.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gdlphys"

LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def lint(project: Path) -> subprocess.CompletedProcess:
    """import-linter with the contracts of ``project``/pyproject.toml, on the gdlphys in ``project``."""
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_floors_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def pristine_copy(tmp_path_factory) -> Path:
    """The package and its pyproject.toml, copied: a floor is broken in a copy of it, never here."""
    target = tmp_path_factory.mktemp("house")
    shutil.copytree(PACKAGE, target / "gdlphys", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


@pytest.mark.parametrize(
    "module, line, broken",
    [
        # a lazy import, the kind a floor-crossing hides in
        ("models/config.py", "def _reach_up():\n    import gdlphys.train\n", "gdlphys.models.config -> gdlphys.train"),
        ("nn/scatter.py", "from gdlphys.models.potential import Potential\n", "gdlphys.nn.scatter -> gdlphys.models.potential"),
        ("graph/edges.py", "from gdlphys.nn.scatter import scatter_sum\n", "gdlphys.graph.edges -> gdlphys.nn.scatter"),
        ("calculator.py", "from gdlphys.train.config import FitConfig\n", "gdlphys.calculator -> gdlphys.train.config"),
        ("predict.py", "from gdlphys.train.config import FitConfig\n", "gdlphys.predict -> gdlphys.train.config"),
        ("keys.py", "def _reach_up():\n    from gdlphys.cli import main\n", "gdlphys.keys -> gdlphys.cli"),
        ("data/hdf5.py", "from gdlphys.models.config import ModelConfig\n", "gdlphys.data.hdf5 -> gdlphys.models.config"),
    ],
)
def test_a_broken_floor_is_caught(pristine_copy, tmp_path, module, line, broken):
    project = tmp_path / "project"
    shutil.copytree(pristine_copy, project)
    path = project / "gdlphys" / module
    path.write_text(path.read_text() + "\n\n" + line)
    done = lint(project)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "BROKEN" in done.stdout and broken in done.stdout, done.stdout + done.stderr


def test_a_new_module_needs_a_floor(pristine_copy, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(pristine_copy, project)
    (project / "gdlphys" / "attic.py").write_text('"""A module nobody gave a floor."""\n')
    done = lint(project)
    assert done.returncode != 0 and "attic" in done.stdout, done.stdout + done.stderr


# --- private names -----------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reads(module: str, source: str, modules: set[str]) -> list[str]:
    """Where ``module`` reads a private name of another gdlphys module: ``from gdlphys.x import _y``
    or ``x._y`` with ``x`` bound to a gdlphys module (``modules``: every module of the package)."""
    found: list[str] = []
    bound: dict[str, str] = {}  # local name -> the gdlphys module it is bound to
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "gdlphys":
            for alias in node.names:
                if _is_private(alias.name) and node.module != module:
                    found.append(f"{module}:{node.lineno}: from {node.module} import {alias.name}")
                if f"{node.module}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gdlphys":
                    bound[alias.asname or "gdlphys"] = alias.name if alias.asname else "gdlphys"
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        chain, base = [], node.value
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name) and base.id in bound:
            owner = ".".join([bound[base.id], *chain])
            if owner in modules and owner != module:
                found.append(f"{module}:{node.lineno}: {owner}.{node.attr}")
    return found


def package_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_private_name_scan_sees_both_forms():
    modules = {"gdlphys", "gdlphys.keys", "gdlphys.graph", "gdlphys.graph.edges"}
    source = (
        "import gdlphys.graph.edges\nimport gdlphys.graph as g\nfrom gdlphys import keys\n"
        "from gdlphys.graph.edges import _hidden, public\n"
        "keys._X\ng.edges._y\ngdlphys.graph.edges._z\npublic._fine\nkeys.__doc__\n"
    )
    found = private_reads("gdlphys.nn.geometry", source, modules)
    assert [f.split(": ", 1)[1] for f in found] == [
        "from gdlphys.graph.edges import _hidden", "gdlphys.keys._X", "gdlphys.graph.edges._y", "gdlphys.graph.edges._z",
    ]


def test_no_module_reads_another_modules_private_names():
    modules = package_modules()
    found = [hit for name, path in modules.items() for hit in private_reads(name, path.read_text(), set(modules))]
    assert not found, "private names read across modules (make them public or move the code):\n" + "\n".join(found)
