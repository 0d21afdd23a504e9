"""``dorefa generate``: Verilog for any unit of the catalogue (:mod:`hw.catalog`).

::

    dorefa generate UNIT [--bits ...] [--width ...] [--max-bits N] [--pe P] [--simd S]
                    [--set NAME=VALUE ...] [--top NAME] -o FILE.v [--lint]
    dorefa generate core --board icebreaker|ulx3s [--bits W,A,G] [--max-bits N] [--pe P] [--simd S]
                    [--top NAME] -o FILE.v

With ``--board`` it writes the board top that ``dorefa build --board
BOARD`` synthesises (:func:`boards.build.board_verilog`: the UART core on
the board's pins, module ``top`` by default) without running any tool.
:mod:`boards` is imported only then, so ``hw`` does not depend on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sw.cli import UsageError, command

from .catalog import UNITS, generate_verilog, parse_assignments

#: The unit ``--board`` applies to (the board top wraps it behind a UART).
BOARD_UNIT = "core"


def _describe_units() -> str:
    lines = []
    for spec in UNITS.values():
        lines.append(f"{spec.name}: {spec.summary}")
        for name, param in spec.params.items():
            choices = f" ({'|'.join(param.choices)})" if param.choices else ""
            lines.append(f"    {name}={param.default}{choices}  {param.help}")
        if spec.shorthands:
            def describe(flag, targets):
                widest = " (widest of N or W,A,G)" if flag == "bits" and spec.bits_widest else ""
                return f"--{flag.replace('_', '-')} -> {','.join(targets)}{widest}"
            short = ", ".join(describe(flag, targets) for flag, targets in spec.shorthands.items())
            lines.append(f"    shorthands: {short}")
        if spec.name == BOARD_UNIT:
            lines.append("    --board BOARD: the board top `dorefa build --board BOARD` synthesises "
                         "(UART pins, LED; module top)")
    return "\n".join(lines)


def _check_board_request(args) -> None:
    """Usage errors of ``--board`` that need no parameters (raised before anything is built)."""
    if args.unit != BOARD_UNIT:
        raise UsageError(f"--board applies only to the training core: dorefa generate {BOARD_UNIT} "
                         f"--board {args.board} (got unit {args.unit!r})")
    if args.lint:
        raise UsageError("--lint does not apply to --board: the board top instantiates the FPGA's I/O "
                         "primitives (SB_IO, ...), which Verilator does not model; lint the core with "
                         "'dorefa generate uart_core --lint'")


@command("generate", help="write Verilog for a hardware unit")
def _generate_command(parser):
    parser.add_argument("unit", nargs="?", help=f"one of: {', '.join(UNITS)}")
    parser.add_argument("--bits", help="the unit's bitwidth(s), e.g. 2 or 1,2; for the core the widths to "
                                       "serve, N or W,A,G (see --list)")
    parser.add_argument("--width", help="the unit's main width/length (see --list)")
    parser.add_argument("--max-bits", dest="max_bits", metavar="N", help="the core's widest code (1..8)")
    parser.add_argument("--pe", metavar="P", help="processing elements (rows in parallel) of the core or MAC array")
    parser.add_argument("--simd", metavar="S", help="columns per PE per cycle of the core or MAC array")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
                        help="any constructor parameter (repeatable; see --list)")
    parser.add_argument("--board", help="core only: the board top that 'dorefa build --board BOARD' "
                                        "synthesises (see 'dorefa build --help' for the boards)")
    parser.add_argument("--top", help="top module name (default dorefa_<unit>; top with --board)")
    parser.add_argument("-o", "--output", type=Path, help="Verilog file to write")
    parser.add_argument("--lint", action="store_true", help="run verilator --lint-only on the result")
    parser.add_argument("--list", action="store_true", help="list the units and their parameters")

    def run(args):
        if args.list:
            print(_describe_units())
            return 0
        if args.unit is None:
            raise UsageError(f"name a unit to generate: {', '.join(UNITS)} (or --list)")
        if args.unit not in UNITS:
            raise UsageError(f"unknown unit {args.unit!r}; allowed: {', '.join(UNITS)}")
        if args.board is not None:
            _check_board_request(args)
        if args.output is None:
            raise UsageError("give the output file with -o FILE.v")
        params = parse_assignments(UNITS[args.unit], args.assignments, bits=args.bits, width=args.width,
                                   max_bits=args.max_bits, pe=args.pe, simd=args.simd)
        if args.board is not None:
            from boards.build import board_verilog  # lazily: hw does not depend on boards
            top = args.top or "top"
            text = board_verilog(args.board, core_params=params, name=top)
        else:
            top = args.top or f"dorefa_{args.unit}"
            text = generate_verilog(args.unit, toplevel=top, **params)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.output)
        if args.lint:
            from sim.lint import LintError, lint_verilog
            try:
                lint_verilog(args.output, top)
            except LintError as exc:
                print(f"dorefa generate: {exc}", file=sys.stderr)
                return 1
        settings = ", ".join(f"{k}={v}" for k, v in params.items())
        where = f" on {args.board}" if args.board is not None else ""
        print(f"wrote {args.output} ({args.unit}{where}: {settings})")
        return 0

    return run
