"""Imports point down the layers only: twin <- scenarios <- agents <- experiments (docs/architecture.md, Layers).

The code of each layer imports no layer above it, and twin/ none of the heavy libraries (torch, ray, hydra,
omegaconf); the tests of each layer (tests/twin, tests/scenarios, tests/agents) import only their own layer and
the layers below it, so `pytest tests/twin` tests the twin without agents/ or experiments/ (tests of the
experiments' entry points live in tests/experiments). tests/twin also uses no third-party library but numpy,
simpy, pytest, hypothesis and yaml.

Imports are read with `ast`, nothing is imported: every `import` and `from ... import` (inside functions too;
relative imports stay inside their package), and every string that names a project module, such as
`python -m experiments.tune` run as a subprocess or a lazy registry entry `"agents.forecasting.tree:Model"`.

The serving side (agents/deploy) must run without torch and ray: neither it nor any project module it imports,
followed through every `import` statement, imports them (or hydra, omegaconf, agents.rl, agents.envs.rllib);
a subprocess that imports it confirms none of them is loaded. Lazy registry strings are not followed: they
load a module only when that entry is asked for by name.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("twin", "scenarios", "agents", "experiments")  # bottom to top
HEAVY = frozenset({"torch", "ray", "hydra", "omegaconf"})

# package -> the top-level modules its code must not import
CODE_FORBIDDEN = {
    "twin": HEAVY | {"scenarios", "agents", "experiments"},
    "scenarios": frozenset({"agents", "experiments"}),
    "agents": frozenset({"experiments"}),
}
# test folder -> the project packages its tests may import
TESTS_ALLOWED = {
    "tests/twin": frozenset({"twin"}),
    "tests/scenarios": frozenset({"twin", "scenarios"}),
    "tests/agents": frozenset({"twin", "scenarios", "agents"}),
}
# the third-party libraries tests/twin may import besides the standard library
TWIN_TEST_LIBRARIES = frozenset({"numpy", "simpy", "pytest", "hypothesis", "yaml"})
# serving packages -> the modules (and their submodules) that they, and every project module they import, must not
# import
SERVING_FORBIDDEN = {"agents.deploy": HEAVY | {"agents.rl", "agents.envs.rllib"}}

MODULE_STRING = re.compile(rf"(?:{'|'.join(LAYERS)})(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*)?")


def _is_project_module(dotted: str) -> bool:
    return _module_file(dotted) is not None


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, dotted module) for every absolute import in `source` and every string that names a project module
    (a whole string such as "experiments.tune" or "agents.forecasting.tree:GradientBoosting")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            if MODULE_STRING.fullmatch(node.value):
                dotted = node.value.partition(":")[0]
                if _is_project_module(dotted):
                    found.append((node.lineno, dotted))
    return found


def violations(source: str, where: str, *, forbidden: Iterable[str] = (), allowed_project: Iterable[str] | None = None,
               allowed_libraries: Iterable[str] | None = None) -> list[str]:
    """The imports of `source` (labelled `where`) that break a rule, one message each.

    `forbidden`: top-level modules not to import. `allowed_project`: the only project packages allowed (the others
    of LAYERS are forbidden). `allowed_libraries`: if given, the only non-project modules allowed besides the
    standard library.
    """
    forbidden = set(forbidden)
    if allowed_project is not None:
        forbidden |= set(LAYERS) - set(allowed_project)
    found = []
    for line, module in imported_modules(source):
        top = module.partition(".")[0]
        if top in forbidden:
            found.append(f"{where}:{line}: imports {module}")
        elif (allowed_libraries is not None and top not in LAYERS and top not in sys.stdlib_module_names
              and top not in allowed_libraries):
            found.append(f"{where}:{line}: imports {module} (a third-party library not allowed here)")
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_folders_checked_hold_python_files():
    for folder in [*CODE_FORBIDDEN, *TESTS_ALLOWED]:
        assert python_files(folder), f"no .py files under {folder}: the layer rules check nothing there"


@pytest.mark.parametrize("package", sorted(CODE_FORBIDDEN))
def test_code_imports_no_layer_above_it(package):
    found = []
    for path in python_files(package):
        found += violations(path.read_text(), str(path.relative_to(ROOT)), forbidden=CODE_FORBIDDEN[package])
    assert not found, f"{package}/ may not import {', '.join(sorted(CODE_FORBIDDEN[package]))}:\n" + "\n".join(found)


@pytest.mark.parametrize("folder", sorted(TESTS_ALLOWED))
def test_tests_import_only_their_layer_and_below(folder):
    libraries = TWIN_TEST_LIBRARIES if folder == "tests/twin" else None
    found = []
    for path in python_files(folder):
        found += violations(path.read_text(), str(path.relative_to(ROOT)), allowed_project=TESTS_ALLOWED[folder],
                            allowed_libraries=libraries)
    assert not found, (f"{folder} may import only {', '.join(sorted(TESTS_ALLOWED[folder]))} of the project "
                       f"(move the test to the folder of the highest layer it needs):\n" + "\n".join(found))


# ------------------------------------------------------------------ the checker itself catches what it should

@pytest.mark.parametrize(("source", "rule", "expected"), [
    ("from agents.baselines import BaseStock\n", "tests/twin", "t.py:1: imports agents.baselines"),
    ("import numpy\n\ndef f():\n    import scenarios.reference\n", "tests/twin", "t.py:4: imports scenarios.reference"),
    ("import scipy.stats\n", "tests/twin", "t.py:1: imports scipy.stats (a third-party library"),
    ("import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'experiments.tune'])\n", "tests/agents",
     "t.py:2: imports experiments.tune"),
    ("from experiments.validate import main\n", "tests/scenarios", "t.py:1: imports experiments.validate"),
    ("def f():\n    import torch\n", "twin", "t.py:2: imports torch"),
    ("from omegaconf import OmegaConf\n", "twin", "t.py:1: imports omegaconf"),
    ("ENTRIES = {'x': 'agents.forecasting.tree:GradientBoosting'}\n", "scenarios",
     "t.py:1: imports agents.forecasting.tree"),
    ("import experiments\n", "agents", "t.py:1: imports experiments"),
])
def test_the_checker_reports_an_import_from_above(source, rule, expected):
    if rule in TESTS_ALLOWED:
        libraries = TWIN_TEST_LIBRARIES if rule == "tests/twin" else None
        found = violations(source, "t.py", allowed_project=TESTS_ALLOWED[rule], allowed_libraries=libraries)
    else:
        found = violations(source, "t.py", forbidden=CODE_FORBIDDEN[rule])
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_checker_passes_imports_from_below():
    source = ("from __future__ import annotations\nimport json\nimport numpy as np\nfrom twin import Engine\n"
              "from . import helpers\nNAME = 'twin.engine'\nKEY = 'scenario.severity'\nTEXT = 'see agents.md'\n")
    assert violations(source, "t.py", allowed_project={"twin"}, allowed_libraries=TWIN_TEST_LIBRARIES) == []
    assert violations("import scenarios\nfrom agents.envs import core\n", "t.py",
                      allowed_project={"twin", "scenarios", "agents"}) == []


# ------------------------------------------------------------------ the serving side: no torch or ray, even indirectly

def _module_file(dotted: str) -> Path | None:
    path = ROOT.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_statements(source: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every absolute import statement, anywhere in `source` (strings are not followed);
    `from a import b` gives a.b too where that is a project module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if _module_file(f"{node.module}.{alias.name}") is not None]
    return found


def _forbidden(module: str, forbidden: Iterable[str]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


def transitive_violations(package: str, forbidden: Iterable[str]) -> list[str]:
    """Imports of `forbidden` modules by the code of `package` or by any project module it reaches through import
    statements (a package's `__init__` counts as imported with it), one message each with the chain."""
    forbidden = set(forbidden)
    folder = ROOT.joinpath(*package.split("."))
    queue = [(str(p.relative_to(ROOT).with_suffix("")).replace("/", "."), p, package)
             for p in sorted(folder.rglob("*.py"))]
    seen = {name for name, _, _ in queue}
    found = []
    while queue:
        name, path, chain = queue.pop()
        for line, module in import_statements(path.read_text()):
            if _forbidden(module, forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line}: imports {module} (reached from {chain})")
                continue
            parts = module.split(".")
            if parts[0] not in LAYERS:
                continue
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
                dotted = ".".join(parts[:depth])
                target = _module_file(dotted)
                if target is not None and dotted not in seen:
                    seen.add(dotted)
                    queue.append((dotted, target, f"{chain} -> {dotted}"))
    return found


@pytest.mark.parametrize("package", sorted(SERVING_FORBIDDEN))
def test_the_serving_side_imports_no_heavy_library_even_indirectly(package):
    found = transitive_violations(package, SERVING_FORBIDDEN[package])
    assert not found, (f"{package} must run without {', '.join(sorted(SERVING_FORBIDDEN[package]))}, directly or "
                       f"through what it imports:\n" + "\n".join(found))


def test_importing_the_serving_side_loads_no_heavy_library():
    modules = sorted(str(p.relative_to(ROOT).with_suffix("")).replace("/", ".")
                     for package in SERVING_FORBIDDEN for p in ROOT.joinpath(*package.split(".")).rglob("*.py"))
    forbidden = sorted(set().union(*SERVING_FORBIDDEN.values()))
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
            f"print(sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {forbidden!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing {', '.join(SERVING_FORBIDDEN)} loaded: {out.stdout.strip()}"


def test_the_erp_state_models_need_pydantic_only():
    source = (ROOT / "agents/deploy/erp_state.py").read_text()
    assert violations(source, "erp_state.py", allowed_project=(), allowed_libraries={"pydantic"}) == []


def test_the_transitive_check_follows_project_imports(tmp_path, monkeypatch):
    (tmp_path / "agents" / "serve").mkdir(parents=True)
    (tmp_path / "agents" / "__init__.py").write_text("")
    (tmp_path / "agents" / "serve" / "__init__.py").write_text("from agents import helper\n")
    (tmp_path / "agents" / "helper.py").write_text("def f():\n    import agents.rl.policy\n")
    (tmp_path / "agents" / "clean").mkdir()
    (tmp_path / "agents" / "clean" / "__init__.py").write_text("NAME = 'agents.rl.policy:Policy'\nimport numpy\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    found = transitive_violations("agents.serve", {"torch", "agents.rl"})
    assert len(found) == 1 and found[0].startswith("agents/helper.py:2: imports agents.rl.policy"), found
    assert "agents.serve -> agents.helper" in found[0]
    assert transitive_violations("agents.clean", {"agents.rl"}) == []  # strings are lazy: not followed
