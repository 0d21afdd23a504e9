"""Build the simulated board: the training core compiled by Verilator with a C++ main loop.

:func:`build_harness` converts a :class:`hw.core.TrainingCore` to Verilog
and compiles it with Verilator together with ``sim/native/harness.cpp`` (the
loop that clocks the core flat out and moves its bytes to and from a
pseudo-terminal; see that file) into one executable.  The build is cached
under ``sim_build/harness-<digest>/``, keyed by the Verilog, the harness
source, the flags and the Verilator version, and locked, so concurrent
users share one build.  Only the core's top-level ports are read by the
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

#: Verilog module name of the core inside the harness.
TOP = "dorefa_core"

#: Verilator's flags: a fast model (the same optimisation as the cocotb bridge's
#: ``VERILATOR_OPTIMIZE``), warnings of Amaranth's output not fatal.
VERILATOR_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style"]

#: The C++ compiler's optimisation of the model and the loop.
CXX_FLAGS = "-O2"

EXECUTABLE = "harness"


def build_harness(core, *, build_root: "str | os.PathLike | None" = None, jobs: int | None = None,
                  on_build: "Callable[[float | None], None] | None" = None) -> Path:
    """The harness executable for ``core`` (a :class:`hw.core.TrainingCore`), built if not cached.

    ``on_build(None)`` is called before a build that is not cached and
    ``on_build(seconds)`` after it; a cached build calls nothing.  Raises
    ``RuntimeError`` with the end of Verilator's log if the build fails.
    """
    from amaranth.back import verilog

    source = verilog.convert(core, name=TOP)
    harness = HARNESS_SOURCE.read_text()
    digest = hashlib.sha256(json.dumps(
        [source, harness, VERILATOR_FLAGS, CXX_FLAGS, _verilator_version()]).encode()).hexdigest()[:12]
    build_dir = Path(build_root if build_root is not None else SIM_BUILD).resolve() / f"harness-{digest}"
    executable = build_dir / EXECUTABLE
    build_dir.mkdir(parents=True, exist_ok=True)
    with _locked(build_dir / ".lock"):
        if executable.exists():
            return executable
        if on_build is not None:
            on_build(None)
        started = time.monotonic()
        (build_dir / f"{TOP}.v").write_text(source)
        jobs = jobs or len(os.sched_getaffinity(0))
        command = ["verilator", "--cc", "--exe", "--build", "-j", str(jobs), *VERILATOR_FLAGS,
                   "--top-module", TOP, "-CFLAGS", f"{CXX_FLAGS} -DTOP={TOP}", "-Mdir", "obj",
                   "-o", f"../{EXECUTABLE}.tmp", f"{TOP}.v", str(HARNESS_SOURCE)]
        env = {**os.environ, **verilator_env()}
        with open(build_dir / "build.log", "wb") as log:
            result = subprocess.run(command, cwd=build_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        staged = build_dir / f"{EXECUTABLE}.tmp"
        if result.returncode != 0 or not staged.exists():
            tail = "\n".join((build_dir / "build.log").read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"Verilator could not build the simulated board (exit {result.returncode}); "
                               f"{build_dir / 'build.log'} ends:\n{tail}")
        os.replace(staged, executable)  # whole or not at all, should a build be interrupted
        if on_build is not None:
            on_build(time.monotonic() - started)
    return executable
