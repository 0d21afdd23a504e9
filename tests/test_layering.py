"""The house rules: which package may import which, and what importing the gateware loads.

Two checks, per the layering table of the design notes (README, "What is where"):

1. **An AST scan** of every ``.py`` file under ``sw hw sim tb boards bench
   tests`` (and the root ``conftest.py``).  Every import counts: at module
   level, inside functions, relative ones, and ``importlib.import_module`` /
   ``__import__`` with a constant name.  Each imported module is mapped to a
   layer, and each edge must be allowed:

   ========  ===============================================================
   layer     may import
   ========  ===============================================================
   contract  ``sw/contract``: the standard library only
   hw        Amaranth, the contract
   boards    hw, the contract, Amaranth, amaranth-boards
   host      ``sw`` but the contract and the CLI: the contract, torch, numpy
             and the host's other packages; never hw, sim, boards, tb, the
             CLI, nor Amaranth or cocotb
   sim       hw, the contract, the host modules that reach no torch (the
             driver and protocol codecs), Amaranth, cocotb, numpy; never
             torch
   tb        sim, host, hw, boards (the board presets' cores), the
             contract, anything third-party
   cli       ``sw/cli``: everything but tb and tests (tb is not installed)
   bench     everything but the CLI and tests
   tests     everything but tb
   ========  ===============================================================

   A host module "reaches torch" if torch is among its imports, followed
   through the project's modules (imports inside functions included): that
   is what ``sim`` calling into it could load.  A violation reads
   ``file:line imports X (layer A may not import layer B)``.

2. **Fresh interpreters** (``python -X importtime``): importing every ``hw``
   module, ``boards.top`` and ``boards.build`` loads neither torch nor numpy,
   and each contract module loads nothing but the standard library.  The
   import log names every module loaded, so nothing this test process already
   imported can hide a dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The folders scanned (the project's top-level packages, the benchmarks and the tests).
SCANNED = ("sw", "hw", "sim", "tb", "boards", "bench", "tests")
LAYERS = ("contract", "hw", "boards", "host", "sim", "tb", "cli", "bench", "tests")
HOST_STACK = frozenset({"torch", "numpy"})
GATEWARE_TOOLS = frozenset({"amaranth", "amaranth_boards", "cocotb", "cocotb_tools"})


@dataclass(frozen=True)
class Rule:
    """What one layer may import: project ``layers``; third-party packages
    either only ``third_party`` (when given) or anything but ``not_third_party``."""
    layers: frozenset
    third_party: frozenset | None = None
    not_third_party: frozenset = frozenset()


EVERYTHING = frozenset(LAYERS)
RULES = {
    "contract": Rule(frozenset({"contract"}), third_party=frozenset()),
    "hw": Rule(frozenset({"hw", "contract"}), third_party=frozenset({"amaranth"})),
    "boards": Rule(frozenset({"boards", "hw", "contract"}), third_party=frozenset({"amaranth", "amaranth_boards"})),
    "host": Rule(frozenset({"host", "contract"}), not_third_party=GATEWARE_TOOLS),
    # "host" here means the host modules that reach no torch (see torch_path); the others are refused.
    "sim": Rule(frozenset({"sim", "hw", "contract", "host"}), not_third_party=frozenset({"torch"})),
    "tb": Rule(frozenset({"tb", "sim", "host", "hw", "boards", "contract"})),
    "cli": Rule(EVERYTHING - {"tb", "tests"}),
    "bench": Rule(EVERYTHING - {"cli", "tests"}),
    "tests": Rule(EVERYTHING - {"tb"}),
}


def layer_of(module: str) -> str | None:
    """The project layer of dotted ``module``, or ``None`` for the standard library and third parties."""
    parts = module.split(".")
    top = parts[0]
    if top == "sw":
        if parts[1:2] == ["contract"]:
            return "contract"
        if parts[1:2] == ["cli"]:
            return "cli"
        return "host"
    if top == "conftest":
        return "tests"
    return top if top in LAYERS else None


def is_stdlib(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top == "__future__"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every scanned ``.py`` file under ``root``."""
    files = {}
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[module_name(path, root)] = path
    if (root / "conftest.py").exists():
        files["conftest"] = root / "conftest.py"
    return files


@dataclass(frozen=True)
class Import:
    line: int
    module: str


def imports_of(path: Path, module: str, known: set) -> list[Import]:
    """Every module ``path`` (module ``module``) imports, wherever the statement is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module
            for alias in node.names:
                # ``from sw import protocol`` imports the module sw.protocol; ``from sw.x import f``, sw.x.
                child = f"{parent}.{alias.name}"
                found.append(Import(node.lineno, child if child in known else parent))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and not node.args[0].value.startswith("."):
                found.append(Import(node.lineno, node.args[0].value))
    return sorted(set(found), key=lambda imp: (imp.line, imp.module))  # one per module and line


class Graph:
    """The project's import graph under ``root``."""

    def __init__(self, root: Path = ROOT):
        self.root = root
        self.files = project_files(root)
        known = set(self.files)
        self.imports = {name: imports_of(path, name, known) for name, path in self.files.items()}

    def target(self, module: str) -> str | None:
        """The project module an import of ``module`` loads (``sw.x.f`` -> ``sw.x``), if any."""
        while module and module not in self.files:
            module = module.rpartition(".")[0]
        return module or None

    def torch_path(self, module: str) -> list[str] | None:
        """The chain ``module -> ... -> torch`` through the project's imports, or ``None``."""
        parent = {module: None}
        queue = deque([module])
        while queue:
            name = queue.popleft()
            for imp in self.imports.get(name, ()):
                if imp.module.split(".")[0] == "torch":
                    chain = [name]
                    while parent[chain[-1]] is not None:
                        chain.append(parent[chain[-1]])
                    return chain[::-1] + ["torch"]
                nxt = self.target(imp.module)
                if nxt is not None and nxt not in parent:
                    parent[nxt] = name
                    queue.append(nxt)
        return None

    def violations(self, folders=SCANNED) -> list[str]:
        """``file:line imports X (layer A may not import layer B)`` for every edge the rules refuse."""
        out = []
        for name, path in self.files.items():
            if name.split(".")[0] not in folders and not (name == "conftest" and "tests" in folders):
                continue
            layer = layer_of(name)
            rule = RULES[layer]
            where = path.relative_to(self.root).as_posix()
            for imp in self.imports[name]:
                if is_stdlib(imp.module):
                    continue
                other = layer_of(imp.module)
                if other is None:  # third party
                    top = imp.module.split(".")[0]
                    refused = top not in rule.third_party if rule.third_party is not None \
                        else top in rule.not_third_party
                    if refused:
                        out.append(f"{where}:{imp.line} imports {imp.module} (layer {layer} may not import {top})")
                elif other not in rule.layers:
                    out.append(f"{where}:{imp.line} imports {imp.module} (layer {layer} may not import layer {other})")
                elif layer == "sim" and other == "host":
                    chain = self.torch_path(self.target(imp.module) or imp.module)
                    if chain:
                        out.append(f"{where}:{imp.line} imports {imp.module} (layer {layer} may not import "
                                   f"layer {other} where it reaches torch: {' -> '.join(chain)})")
        return out


@pytest.fixture(scope="module")
def graph():
    return Graph()


# --------------------------------------------------------------------------- the scan

@pytest.mark.parametrize("folder", SCANNED)
def test_imports_follow_the_layering(graph, folder):
    violations = graph.violations((folder,))
    if violations:
        pytest.fail(f"{len(violations)} import(s) break the layering:\n" + "\n".join(violations), pytrace=False)


def test_the_scan_sees_every_kind_of_import(graph):
    """The scan finds what it must (else an empty scan would pass every rule)."""
    assert {"sw.contract.core", "hw.core", "boards.top", "sim.cocotb_runner", "tests.test_layering"} <= set(
        graph.files)
    assert {"amaranth.hdl", "sw.contract.core"} <= {imp.module for imp in graph.imports["hw.core"]}
    # an import inside a function (run_cocotb's Verilog backend)
    assert "amaranth.back" in {imp.module for imp in graph.imports["sim.cocotb_runner"]}
    # a relative import of a sibling module (``from .top import ...`` in boards.build)
    assert "boards.top" in {imp.module for imp in graph.imports["boards.build"]}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_rules_catch_each_kind_of_violation(tmp_path):
    """A small tree with one violation of each kind: each is reported, with its file and line."""
    _write(tmp_path, {
        "sw/__init__.py": "",
        "sw/contract/__init__.py": "",
        "sw/contract/codes.py": "import math\nimport numpy\n",
        "sw/cli/__init__.py": "import hw.core\nimport tb.x\n",
        "sw/driver.py": "from .contract import codes\n",
        "sw/engine.py": "from . import driver\n\n\ndef run():\n    import torch\n",
        "sw/protocol.py": "def f():\n    from hw import core\n",
        "hw/__init__.py": "",
        "hw/core.py": "from amaranth.hdl import Module\nfrom sw.contract.codes import levels\nfrom sw import driver\n",
        "hw/prng.py": "import importlib\nimportlib.import_module('sw.cli')\n",
        "boards/top.py": "from amaranth_boards.icebreaker import P\nfrom sim import lint\n",
        "sim/__init__.py": "",
        "sim/lint.py": "from sw.driver import x\nfrom sw.engine import y\nimport torch\n",
        "tb/x.py": "from sim import lint\nfrom sw import engine\nimport torch\n",
        "bench/b.py": "from sw.cli import main\n",
        "tests/test_a.py": "from tb import x\nfrom sw.cli import main\n",
    })
    found = Graph(tmp_path).violations()
    assert sorted(found) == sorted([
        "sw/contract/codes.py:2 imports numpy (layer contract may not import numpy)",
        "sw/cli/__init__.py:2 imports tb.x (layer cli may not import layer tb)",
        "sw/protocol.py:2 imports hw.core (layer host may not import layer hw)",
        "hw/core.py:3 imports sw.driver (layer hw may not import layer host)",
        "hw/prng.py:2 imports sw.cli (layer hw may not import layer cli)",
        "boards/top.py:2 imports sim.lint (layer boards may not import layer sim)",
        "sim/lint.py:2 imports sw.engine (layer sim may not import layer host where it reaches torch: "
        "sw.engine -> torch)",
        "sim/lint.py:3 imports torch (layer sim may not import torch)",
        "bench/b.py:1 imports sw.cli (layer bench may not import layer cli)",
        "tests/test_a.py:1 imports tb.x (layer tests may not import layer tb)",
    ])


def test_torch_is_found_through_the_project(tmp_path):
    _write(tmp_path, {"sw/a.py": "from . import b\n", "sw/b.py": "def f():\n    from .c import g\n",
                      "sw/c.py": "import torch.nn\n", "sw/d.py": "import numpy\n"})
    graph = Graph(tmp_path)
    assert graph.torch_path("sw.a") == ["sw.a", "sw.b", "sw.c", "torch"]
    assert graph.torch_path("sw.d") is None


# --------------------------------------------------------------------------- fresh interpreters

def gateware_modules() -> list[str]:
    """Every module of ``hw`` (found on disk, so a new one is covered), ``boards.top`` and ``boards.build``."""
    hw = sorted(module_name(path, ROOT) for path in (ROOT / "hw").glob("*.py"))
    return [*hw, "boards.top", "boards.build"]


CONTRACT_MODULES = sorted(module_name(path, ROOT) for path in (ROOT / "sw" / "contract").glob("*.py"))


def loaded_modules(*modules: str) -> set:
    """Every module a fresh interpreter loads to import ``modules`` (from ``-X importtime``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = "; ".join(f"import {name}" for name in modules)
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name)
    assert set(modules) <= names  # the log was read
    return names


def top_level(names) -> set:
    return {name.split(".")[0] for name in names}


def test_hw_core_loads_no_host_stack():
    loaded = top_level(loaded_modules("hw.core"))
    assert not loaded & HOST_STACK, sorted(loaded & HOST_STACK)


def test_gateware_and_board_builds_load_no_host_stack():
    modules = gateware_modules()
    assert len(modules) > 12 and "hw.core" in modules
    loaded = top_level(loaded_modules(*modules))
    assert not loaded & HOST_STACK, sorted(loaded & HOST_STACK)


@pytest.mark.parametrize("module", CONTRACT_MODULES)
def test_contract_is_plain_python(module):
    loaded = loaded_modules(module)
    assert not top_level(loaded) & (HOST_STACK | {"amaranth"})
    project = {name for name in loaded if name.split(".")[0] in ("sw", "hw", "sim", "tb", "boards")}
    assert project <= set(CONTRACT_MODULES) | {"sw"}, sorted(project - set(CONTRACT_MODULES) - {"sw"})


#: The host driver's torch-free modules (the torch engine over a client is sw.core_engine).
DRIVER_MODULES = ("sw.driver", "sw.protocol")


def test_sim_and_the_host_driver_load_no_torch():
    """Every ``sim`` module (found on disk) and the torch-free driver, at run time: numpy may
    load, torch may not (the scan above names the import chain if it does)."""
    sim = sorted(module_name(path, ROOT) for path in (ROOT / "sim").glob("*.py") if path.stem != "__init__")
    assert {"sim.transports", "sim.verilator_bridge", "sim.core_transport", "sim.cocotb_bridge"} <= set(sim)
    loaded = top_level(loaded_modules(*sim, *DRIVER_MODULES))
    assert "torch" not in loaded
