"""Where a board build's logic goes: LUT4s and flip-flops of the core, unit by unit.

The board reports (``boards/reports/<board>.json``) give the whole chip's
counts; this bench splits them over the core's units, so that the cost of
the array can be told from that of the link, the request checks and the
activation stage (the cost the issue's ops-per-LUT target counts whole).

It reads the synthesised netlist a board build leaves behind (``dorefa build
--board B --out DIR`` writes yosys's ``DIR/top.json``) and attributes every
cell to a unit by its name: ``synth_ecp5`` / ``synth_ice40`` name each cell
after the net it drives (yosys's ``autoname``), and a net's name carries the
Amaranth hierarchy (``core.core.gemm.array.unit3_1...``), so a cell counts
to the unit whose net it drives (logic on a boundary counts to the driven
side; cells with no hierarchical name are counted as ``(unnamed)``).

Counted, per unit:

* **ECP5**: ``LUT4-eq = LUT4 + 2 x CCU2C`` (a carry cell is two LUT4s: the
  count :mod:`bench.popcount_luts` uses), flip-flops (``TRELLIS_FF``), LUT
  RAM (``TRELLIS_DPR16X4``); ``PFUMX`` / ``L6MUX21`` add no LUT4s.  nextpnr's
  ``TRELLIS_COMB`` (the board report's LUT4s) is a little higher: it packs a
  feed-in and a feed-out cell per carry chain.
* **iCE40**: ``SB_LUT4`` (a logic cell each; an ``SB_CARRY`` whose LUT is
  unused takes a cell of its own at packing, not counted here) and flip-flops
  (``SB_DFF*``).

Usage::

    python bench/core_area.py BOARD=DIR [BOARD=DIR ...] [--depth N] [--out STEM]

e.g. ``python bench/core_area.py ulx3s=build/ulx3s icebreaker=build/icebreaker``
writes ``STEM.json`` and ``STEM.md`` (default ``bench/reports/core_area``).
``--depth`` is how many levels of the hierarchy below the core are split out
(default 2: ``gemm.array``, ``gemm.writer``, ...); the array's units are
summed as one row (``unit*``), with the count of units and the cost of one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python bench/core_area.py`
    sys.path.insert(0, str(ROOT))

from bench.reporting import write_report  # noqa: E402

__all__ = ["CELL_WEIGHTS", "attribute", "unit_of"]

DEFAULT_OUT = ROOT / "bench" / "reports" / "core_area"

#: Per family: cell type -> (column, weight); a type ending in ``*`` is a prefix (the
#: iCE40's flip-flops: ``SB_DFF``, ``SB_DFFE``, ``SB_DFFESR``, ...).  Other cells are not counted.
CELL_WEIGHTS: dict[str, dict[str, tuple[str, int]]] = {
    "ecp5": {"LUT4": ("lut4_eq", 1), "CCU2C": ("lut4_eq", 2), "TRELLIS_FF": ("ff", 1),
             "TRELLIS_DPR16X4": ("lutram", 1)},
    "ice40": {"SB_LUT4": ("lut4_eq", 1), "SB_DFF*": ("ff", 1)},
}

CORE_PREFIX = ("core", "core")  # the TrainingCore inside the board top's UARTCore


def _part(part: str) -> str | None:
    """A hierarchy level as the report groups it: Amaranth's ``$N`` de-duplication suffix
    dropped, numbered siblings as one (``correction``, ``correction1`` .. ``correction7`` ->
    ``correction``; the array's ``unit0_0`` .. ``unit7_3`` -> ``unit``), a memory port's bare
    index (``.0``) dropped."""
    part = part.split("$", 1)[0]
    if part.isdigit():
        return None
    return re.sub(r"\d+(_\d+)?$", "", part) or part


def unit_of(cell_name: str, depth: int) -> str:
    """The unit a cell counts to: its name's hierarchy (the part before any ``[``, less the
    last level, which names the net), grouped by :func:`_part`, the core's prefix removed and
    cut to ``depth`` levels below it; the array's dot-product units are always their own row
    (``gemm.array.unit``).  ``(board: ...)`` outside the core, ``(unnamed)`` for yosys's
    own names."""
    name = cell_name.lstrip("\\")
    if name.startswith("$"):
        return "(unnamed)"
    path = [p for p in map(_part, name.split("[", 1)[0].split(".")[:-1]) if p is not None]
    if tuple(path[:2]) != CORE_PREFIX:
        return f"(board: {'.'.join(path[:2])})" if path else "(board)"
    inner = path[2:]
    if "unit" in inner:
        return ".".join(inner[:inner.index("unit") + 1])
    return ".".join(inner[:depth]) or "(core)"


def attribute(netlist: dict, family: str, depth: int = 2, top: str = "top") -> dict[str, dict[str, int]]:
    """Counts per unit of the flattened module ``top`` of a yosys JSON ``netlist``:
    ``{unit: {"lut4_eq": .., "ff": .., "lutram": .., "instances": ..}}``, where
    ``instances`` is how many numbered siblings (``unit0_0`` .., ``correction`` ..) were summed."""
    if family not in CELL_WEIGHTS:
        raise ValueError(f"family must be one of {', '.join(CELL_WEIGHTS)}, got {family!r}")
    weights = CELL_WEIGHTS[family]
    prefixes = [(t[:-1], w) for t, w in weights.items() if t.endswith("*")]
    try:
        cells = netlist["modules"][top]["cells"]
    except KeyError:
        raise ValueError(f"the netlist has no module {top!r} with cells") from None
    counts: dict[str, Counter] = {}
    siblings: dict[str, set] = {}
    for name, cell in cells.items():
        column = weights.get(cell["type"]) or next((w for p, w in prefixes if cell["type"].startswith(p)), None)
        if column is None:
            continue
        unit = unit_of(name, depth)
        counts.setdefault(unit, Counter())[column[0]] += column[1]
        raw = name.lstrip("\\").split("[", 1)[0].split(".")[:-1]
        level = unit.count(".") + len(CORE_PREFIX)  # the raw name's level of the unit's last
        if unit[0] != "(" and level < len(raw):
            siblings.setdefault(unit, set()).add(raw[level])
    return {unit: {"lut4_eq": c["lut4_eq"], "ff": c["ff"], "lutram": c["lutram"],
                   "instances": len(siblings.get(unit, ())) or 1} for unit, c in counts.items()}


def table(result: dict) -> str:
    lines = ["# Where the logic goes: the board builds' netlists, unit by unit", "",
             f"Written by `{result['command']}`.  {__doc__.split(chr(10) + chr(10))[2].strip()}".replace("\n", " "),
             ""]
    for board, entry in result["boards"].items():
        units = entry["units"]
        total = sum(u["lut4_eq"] for u in units.values())
        lines += [f"## {board} ({entry['family']}, `{entry['netlist']}`)", "",
                  f"{total:,} LUT4-eq in all; the core's parameters: "
                  + (" ".join(f"{k}={v}" for k, v in entry["core_params"].items()) if entry["core_params"]
                     else "not recorded (no report.json: the build stopped before its report)"), "",
                  "| unit | LUT4-eq | share | flip-flops | LUT RAM | LUT4-eq each (instances) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for unit, u in sorted(units.items(), key=lambda kv: -kv[1]["lut4_eq"]):
            if u["lut4_eq"] == 0 and u["ff"] == 0 and u["lutram"] == 0:
                continue
            per = f"{u['lut4_eq'] / u['instances']:,.1f} ({u['instances']})" if u["instances"] > 1 else ""
            lines.append(f"| {unit} | {u['lut4_eq']:,} | {100 * u['lut4_eq'] / total:.1f} % | {u['ff']:,} "
                         f"| {u['lutram']:,} | {per} |")
        lines.append("")
    return "\n".join(lines)


def _board_dir(text: str) -> tuple[str, Path]:
    board, sep, directory = text.partition("=")
    if not sep or not board or not directory:
        raise argparse.ArgumentTypeError(f"expected BOARD=DIR (a `dorefa build --out DIR`), got {text!r}")
    return board, Path(directory)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+", type=_board_dir, metavar="BOARD=DIR",
                        help="a board and the directory of its `dorefa build --out DIR`")
    parser.add_argument("--depth", type=int, default=2, help="levels below the core split out (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="STEM",
                        help="write STEM.json and STEM.md (default: bench/reports/core_area)")
    args = parser.parse_args(argv)
    if args.depth < 1:
        parser.error(f"--depth must be >= 1, got {args.depth}")
    from boards.top import BOARDS
    result = {"command": " ".join(["python bench/core_area.py", *(argv if argv is not None else sys.argv[1:])]),
              "boards": {}}
    for board, directory in args.builds:
        if board not in BOARDS:
            parser.error(f"unknown board {board!r}; allowed: {', '.join(BOARDS)}")
        netlist_path, report_path = directory / "top.json", directory / "report.json"
        if not netlist_path.is_file():
            parser.error(f"{netlist_path} not found: run `dorefa build --board {board} --out {directory}` first")
        # The build's report (written once nextpnr is done) names the core's parameters; a build
        # stopped after synthesis has the netlist alone.
        params = json.loads(report_path.read_text())["core_params"] if report_path.is_file() else None
        family = BOARDS[board].family
        result["boards"][board] = {
            "family": family, "netlist": str(netlist_path), "core_params": params,
            "units": attribute(json.loads(netlist_path.read_text()), family, args.depth),
        }
    write_report(args.out, result, table(result))


if __name__ == "__main__":
    main()
