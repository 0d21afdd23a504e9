"""``sim`` and the host driver do not need torch (numpy is allowed).

Every module of ``sim`` and the torch-free host driver (transports, client,
protocol codecs) is imported in a fresh interpreter under ``-X importtime``;
no ``torch`` module may appear.  A failure names the chain of imports that
pulled torch in.
"""

import subprocess
import sys
from pathlib import Path

import sim

#: The host driver's torch-free modules; the torch engine over a client is
#: :mod:`sw.core_engine`, outside this list.
DRIVER_MODULES = ("sw.driver", "sw.protocol")


def sim_modules() -> list[str]:
    """Every module of the ``sim`` package (found on disk, so a new one is covered)."""
    return sorted(f"sim.{path.stem}" for path in Path(sim.__file__).parent.glob("*.py") if path.stem != "__init__")


def import_tree(modules) -> list[tuple[int, str]]:
    """``(depth, module)`` for every module ``import modules`` loads, in
    ``-X importtime`` order (a module after the modules it imported)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import " + ", ".join(modules)],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    tree = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1]
            stripped = name.lstrip(" ")
            if stripped != "imported package":  # the header line
                tree.append(((len(name) - len(stripped) - 1) // 2, stripped))
    return tree


def chain_to(tree, index: int) -> list[str]:
    """The import chain from a top-level module down to ``tree[index]``."""
    depth, name = tree[index]
    chain = [name]
    for parent_depth, parent in tree[index + 1:]:
        if parent_depth < depth:
            chain.append(parent)
            depth = parent_depth
    return chain[::-1]


def test_the_module_list_covers_sim():
    modules = sim_modules()
    assert {"sim.transports", "sim.verilator_bridge", "sim.core_transport", "sim.cocotb_bridge"} <= set(modules)


def test_sim_and_the_host_driver_import_no_torch():
    modules = [*sim_modules(), *DRIVER_MODULES]
    tree = import_tree(modules)
    loaded = {name for _, name in tree}
    assert set(modules) <= loaded  # the parse saw the imports
    torch_at = [i for i, (_, name) in enumerate(tree) if name.split(".")[0] == "torch"]
    assert not torch_at, "torch is imported: " + " -> ".join(chain_to(tree, min(torch_at, key=lambda i: tree[i][0])))
