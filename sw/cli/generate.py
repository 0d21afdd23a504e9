"""``dorefa generate``: Verilog for any unit of the catalogue (:mod:`hw.catalog`).

::

    dorefa generate UNIT [--bits ...] [--width ...] [--max-bits N] [--pe P] [--simd S]
                    [--set NAME=VALUE ...] [--top NAME] -o FILE.v [--lint]
    dorefa generate core --board icebreaker|ulx3s [--bits W,A,G] [--max-bits N] [--pe P] [--simd S]
                    [--top NAME] -o FILE.v

With ``--board`` it writes the board top that ``dorefa build --board
BOARD`` synthesises (:func:`boards.build.board_verilog`: the UART core on
the board's pins, module ``top`` by default) without running any tool;
:mod:`boards` is imported only then, and :mod:`sim.lint` only for ``--lint``.
Nothing here loads torch or numpy.

Every parameter is range-checked before anything is built (the ranges are
in ``--list``), ``--top`` must be a module name, and a failure of a tool
(Yosys converting the design, ``verilator --lint-only``) is a one-line
error, exit status 2, like a bad flag.  The file is written through
``FILE.v.tmp``, which never outlives a failure.
"""

from __future__ import annotations

from pathlib import Path

from amaranth._toolchain.yosys import YosysError

from hw.catalog import UNITS, generate_verilog, is_module_name, parse_assignments

from . import UsageError, command

#: The unit ``--board`` applies to (the board top wraps it behind a UART).
BOARD_UNIT = "core"


def _describe_units() -> str:
    lines = []
    for spec in UNITS.values():
        lines.append(f"{spec.name}: {spec.summary}")
        for name, param in spec.params.items():
            lines.append(f"    {name}={param.default} ({param.allowed()})  {param.help}")
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


def _first_line(text: str) -> str:
    """A tool's report in one line: its first error line (``%Error``, ``ERROR``), else its first line."""
    for line in str(text).splitlines():
        if line.strip().startswith("%Error") or line.strip().startswith("ERROR"):
            return line.strip()
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "no message")


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``path.tmp``; on any failure the temporary
    file is removed, and an ``OSError`` becomes a :class:`UsageError` naming ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


@command("generate")
def _generate_command(parser):
    parser.add_argument("unit", nargs="?", help=f"one of: {', '.join(UNITS)}")
    parser.add_argument("--bits", help="the unit's bitwidth(s), e.g. 2 or 1,2; for the core the widths to "
                                       "serve, N or W,A,G (see --list)")
    parser.add_argument("--width", help="the unit's main width/length (see --list)")
    parser.add_argument("--max-bits", dest="max_bits", metavar="N", help="the core's widest code (1..8)")
    parser.add_argument("--pe", metavar="P", help="processing elements (rows in parallel) of the core or MAC array")
    parser.add_argument("--simd", metavar="S", help="columns per PE per cycle of the core or MAC array")
    parser.add_argument("--vectors", metavar="V", help="vectors of a tile of the core or MAC array")
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
        if args.output.is_dir():
            raise UsageError(f"-o {args.output} is a directory; give a file to write, "
                             f"e.g. -o {args.output / (args.unit + '.v')}")
        if args.top is not None and not is_module_name(args.top):
            raise UsageError(f"--top {args.top!r} is not a Verilog module name: letters, digits and '_', "
                             f"not starting with a digit")
        try:
            if args.board is not None:
                from .build import board_core_spec  # the board's preset as the defaults (imports boards)
                spec = board_core_spec(args.board)
            else:
                spec = UNITS[args.unit]
            params = parse_assignments(spec, args.assignments, bits=args.bits, width=args.width,
                                       max_bits=args.max_bits, pe=args.pe, simd=args.simd,
                                       vectors=args.vectors)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            if args.board is not None:
                from boards.build import board_verilog  # only for --board
                top = args.top or "top"
                text = board_verilog(args.board, core_params=params, name=top)
            else:
                top = args.top or f"dorefa_{args.unit}"
                text = generate_verilog(args.unit, toplevel=top, **params)
        except YosysError as exc:
            raise UsageError(f"Yosys could not convert {args.unit} to Verilog: {_first_line(exc)}") from None
        _write(args.output, text)
        if args.lint:
            from sim.lint import LintError, lint_verilog
            try:
                lint_verilog(args.output, top)
            except LintError as exc:
                raise UsageError(f"verilator --lint-only rejected {args.output} (kept): "
                                 f"{_first_line(str(exc).split(chr(10), 1)[-1])}") from None
        settings = ", ".join(f"{k}={v}" for k, v in params.items())
        where = f" on {args.board}" if args.board is not None else ""
        print(f"wrote {args.output} ({args.unit}{where}: {settings})")
        return 0

    return run
