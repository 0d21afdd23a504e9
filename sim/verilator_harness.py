"""Build the simulated board: the training core compiled by Verilator with a C++ main loop.

:func:`build_harness` converts a :class:`hw.core.TrainingCore`, behind the
registers of :class:`sim.harness_top.HarnessTop`, to Verilog and compiles
it with Verilator together with ``sim/native/harness.cpp`` (the loop that
clocks the core flat out and moves its bytes to and from a pseudo-terminal;
see that file) into one executable.  The build is cached under
``sim_build/harness-<digest>/``, keyed by the Verilog, the harness source,
the flags and the Verilator version, and locked, so concurrent users share
one build.  Only the core's top-level ports are read by the
loop; nothing is made public (no ``--public``), so Verilator optimises the
whole design.

Run the executable as ``harness WORKDIR IDLE_CYCLES SILENCE_MS``;
:class:`sim.verilator_bridge.VerilatorBridge` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from .cocotb_runner import SIM_BUILD, _locked, _verilator_version, verilator_env

__all__ = ["build_harness", "HARNESS_SOURCE", "VERILATOR_FLAGS", "TOP"]

#: The C++ main loop.
HARNESS_SOURCE = Path(__file__).resolve().parent / "native" / "harness.cpp"

#: The harness's top (:class:`sim.harness_top.HarnessTop`), part of the cache's key.
HARNESS_TOP_SOURCE = Path(__file__).resolve().parent / "harness_top.py"

#: Verilog module name of the core inside the harness.
TOP = "dorefa_core"

#: Verilator's flags: a fast model (the same optimisation as the cocotb bridge's
#: ``VERILATOR_OPTIMIZE``), warnings of Amaranth's output not fatal.
VERILATOR_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style"]

#: The C++ compiler's optimisation of the model and the loop.
CXX_FLAGS = "-O2"

EXECUTABLE = "harness"


def build_harness(core_params: dict, *, build_root: "str | os.PathLike | None" = None, jobs: int | None = None,
                  on_build: "Callable[[float | None], None] | None" = None, bare: bool = False) -> Path:
    """The harness executable for a :class:`hw.core.TrainingCore` with ``core_params``,
    built if not cached; with ``bare``, of the core without :class:`sim.harness_top.HarnessTop`
    (the baseline ``bench/sim_bridge.py`` measures the top against).

    The cache is keyed twice: by what the Verilog is made from (the parameters,
    ``bare``, the sources of the gateware, the contract and the top, the
    Amaranth version), which finds a build without converting anything
    (Amaranth's conversion takes seconds), and by the Verilog itself, the
    harness and the flags, which names the build.  ``on_build(None)`` is called before a build that is not
    cached and ``on_build(seconds)`` after it; a cached build calls nothing.
    Raises ``RuntimeError`` with the end of Verilator's log if the build fails.
    """
    from amaranth.back import verilog

    from hw.core import TrainingCore

    from .harness_top import HarnessTop

    root = Path(build_root if build_root is not None else SIM_BUILD).resolve()
    index = root / "harness-index" / _source_key(core_params, bare)
    if index.exists():
        executable = root / index.read_text().strip() / EXECUTABLE
        if executable.exists():
            return executable
    source = verilog.convert(TrainingCore(**core_params) if bare else HarnessTop(core_params), name=TOP)
    harness = HARNESS_SOURCE.read_text()
    cxx_flags = f"{CXX_FLAGS} -DBARE_TOP" if bare else CXX_FLAGS
    digest = hashlib.sha256(json.dumps(
        [source, harness, VERILATOR_FLAGS, cxx_flags, _verilator_version()]).encode()).hexdigest()[:12]
    build_dir = root / f"harness-{digest}"
    executable = build_dir / EXECUTABLE
    build_dir.mkdir(parents=True, exist_ok=True)
    with _locked(build_dir / ".lock"):
        if not executable.exists():
            _build(build_dir, source, cxx_flags, jobs, on_build)
    index.parent.mkdir(parents=True, exist_ok=True)
    staged = index.with_name(f"{index.name}.{os.getpid()}.tmp")
    staged.write_text(build_dir.name)
    os.replace(staged, index)
    return executable


def _source_key(core_params: dict, bare: bool) -> str:
    """What the core's Verilog is a function of: its parameters, the sources of the
    gateware, the contract and the harness's top, and the Amaranth version (with its Yosys)."""
    from importlib import metadata

    sources = Path(__file__).resolve().parent.parent
    files = sorted([*(sources / "hw").glob("*.py"), *(sources / "sw" / "contract").glob("*.py"), HARNESS_SOURCE,
                    HARNESS_TOP_SOURCE])
    digest = hashlib.sha256(json.dumps([sorted(core_params.items()), bare, metadata.version("amaranth"),
                                        VERILATOR_FLAGS, CXX_FLAGS, _verilator_version()]).encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def _build(build_dir: Path, source: str, cxx_flags: str, jobs: int | None, on_build) -> None:
    """Compile ``source`` and the harness into ``build_dir/harness`` (whole or not at all)."""
    if on_build is not None:
        on_build(None)
    started = time.monotonic()
    (build_dir / f"{TOP}.v").write_text(source)
    jobs = jobs or len(os.sched_getaffinity(0))
    command = ["verilator", "--cc", "--exe", "--build", "-j", str(jobs), *VERILATOR_FLAGS,
               "--top-module", TOP, "-CFLAGS", f"{cxx_flags} -DTOP={TOP}", "-Mdir", "obj",
               "-o", f"../{EXECUTABLE}.tmp", f"{TOP}.v", str(HARNESS_SOURCE)]
    env = {**os.environ, **verilator_env()}
    with open(build_dir / "build.log", "wb") as log:
        result = subprocess.run(command, cwd=build_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    staged = build_dir / f"{EXECUTABLE}.tmp"
    if result.returncode != 0 or not staged.exists():
        tail = "\n".join((build_dir / "build.log").read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"Verilator could not build the simulated board (exit {result.returncode}); "
                           f"{build_dir / 'build.log'} ends:\n{tail}")
    os.replace(staged, build_dir / EXECUTABLE)  # should a build be interrupted, nothing is left half-made
    if on_build is not None:
        on_build(time.monotonic() - started)
