"""The gateware imports only Amaranth and the contract: importing ``hw`` (and the
board tops) loads neither torch nor numpy.

Each check runs a fresh interpreter (``python -X importtime``), whose import log
names every module loaded, so nothing this test process already imported hides
a dependency.  ``hw.commands`` (the ``dorefa generate`` command, a CLI module
that imports the CLI) is left out until it moves to the CLI.
"""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import hw

ROOT = Path(__file__).resolve().parents[2]
HOST_STACK = {"torch", "numpy"}
HW_MODULES = sorted(info.name for info in pkgutil.iter_modules(hw.__path__, "hw.") if info.name != "hw.commands")
CONTRACT_MODULES = ["sw.contract", "sw.contract.codes", "sw.contract.prng", "sw.contract.link", "sw.contract.core"]


def loaded_modules(*modules: str) -> set:
    """Every module a fresh interpreter loads to import ``modules`` (from ``-X importtime``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = "; ".join(f"import {name}" for name in modules)
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name)
    assert modules[0] in names  # the log was read
    return names


def top_level(names) -> set:
    return {name.split(".")[0] for name in names}


def test_hw_core_loads_no_host_stack():
    loaded = top_level(loaded_modules("hw.core"))
    assert not loaded & HOST_STACK, sorted(loaded & HOST_STACK)


def test_gateware_and_board_tops_load_no_host_stack():
    assert len(HW_MODULES) > 10
    loaded = top_level(loaded_modules(*HW_MODULES, "boards.top"))
    assert not loaded & HOST_STACK, sorted(loaded & HOST_STACK)


@pytest.mark.parametrize("module", CONTRACT_MODULES)
def test_contract_is_plain_python(module):
    loaded = loaded_modules(module)
    assert not top_level(loaded) & (HOST_STACK | {"amaranth"})
    assert {name for name in loaded if name.split(".")[0] in ("sw", "hw", "sim", "tb", "boards")} <= set(
        CONTRACT_MODULES) | {"sw"}
