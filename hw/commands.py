"""``dorefa generate``: Verilog for any unit of the catalogue (:mod:`hw.catalog`)."""

from __future__ import annotations

import sys
from pathlib import Path

from sw.cli import UsageError, command

from .catalog import UNITS, generate_verilog, parse_assignments


def _describe_units() -> str:
    lines = []
    for spec in UNITS.values():
        lines.append(f"{spec.name}: {spec.summary}")
        for name, param in spec.params.items():
            choices = f" ({'|'.join(param.choices)})" if param.choices else ""
            lines.append(f"    {name}={param.default}{choices}  {param.help}")
        if spec.shorthands:
            short = ", ".join(f"--{flag} -> {','.join(targets)}" for flag, targets in spec.shorthands.items())
            lines.append(f"    shorthands: {short}")
    return "\n".join(lines)


@command("generate", help="write Verilog for a hardware unit")
def _generate_command(parser):
    parser.add_argument("unit", nargs="?", help=f"one of: {', '.join(UNITS)}")
    parser.add_argument("--bits", help="the unit's bitwidth(s), e.g. 2 or 1,2 (see --list)")
    parser.add_argument("--width", help="the unit's main width/length (see --list)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
                        help="any constructor parameter (repeatable; see --list)")
    parser.add_argument("--top", help="top module name (default dorefa_<unit>)")
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
        if args.output is None:
            raise UsageError("give the output file with -o FILE.v")
        params = parse_assignments(UNITS[args.unit], args.assignments, bits=args.bits, width=args.width)
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
        print(f"wrote {args.output} ({args.unit}: {settings})")
        return 0

    return run
