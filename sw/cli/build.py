"""``dorefa build``: synthesise, place and route the training core for a board.

::

    dorefa build --board icebreaker|ulx3s [--freq MHZ] [--baud BAUD] [--bits W,A,G] [--max-bits N] [--pe P]
                 [--simd S] [--vectors V] [--set NAME=VALUE ...] [--out DIR] [--report STEM]

runs :func:`boards.build.build` (YoWASP Yosys + nextpnr) and prints its
resource / timing report (also written to ``DIR/report.txt`` and
``DIR/report.json``; ``DIR`` defaults to ``build/<board>``; with ``--report
STEM`` also to ``STEM.txt`` and ``STEM.json``, e.g. ``--report
boards/reports/icebreaker`` refreshes the committed report).

The core runs from the FPGA's PLL: ``--freq MHZ`` asks for its clock
(default: the board's, :data:`boards.top.DEFAULT_FREQ_MHZ`) and the PLL makes
the highest frequency it can at or below it (:mod:`boards.pll`); the report
says both, and the Fmax nextpnr closed against the achieved one.  A
frequency the PLL cannot make is a one-line error naming the range allowed.

The host link is a UART at ``--baud BAUD`` bits per second (default
3,000,000, what both boards' USB-UARTs run; ``--baud 115200`` is the slow
fallback): its divisor is the achieved core clock over the rate, rounded
(:func:`boards.top.uart_rate`).  A rate that needs fewer than 4 clock cycles a
bit, or that the divisor misses by more than
:data:`sw.contract.backends.BAUD_TOLERANCE` (2.5 %), is a one-line error.  The
report says the rate asked, the rate achieved (what PING reports, and what the
host must open the port at: ``serial:DEVICE@BAUD``) and the error.

The core's parameters start from the board's preset
(:data:`boards.top.CORE_PRESETS`); ``--pe``, ``--simd``, ``--max-bits`` ...
override single keys of it.

The core serves every bitwidth up to ``max_bits`` at run time, so ``--bits
W,A,G`` (or ``--bits N``) builds it with ``max_bits = max(W, A, G)`` and
records the widths in the report; ``--bits`` and ``--max-bits`` must agree
if both are given.  The flags are read by :func:`hw.catalog.parse_assignments`
on the ``core`` unit with the board's preset as its defaults
(:func:`board_core_spec`), as ``dorefa generate core --board BOARD`` reads
them on the catalogue's defaults: the same design while the presets are
``CORE_DEFAULTS``.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from boards.pll import MHZ
from boards.top import BOARDS, CORE_PRESETS, DEFAULT_FREQ_MHZ, board_pll, freq_hz, uart_rate
from hw.catalog import UNITS, UnitSpec, parse_assignments, widest_bits
from sw.contract.backends import BAUD_TOLERANCE, DEFAULT_BAUD, FALLBACK_BAUD

from . import UsageError, command

EXIT_TOOL_FAILED = 1

_PROG = "dorefa build"


def _report_stem(text: str) -> Path:
    stem = Path(text)
    if stem.suffix in (".json", ".txt"):
        raise UsageError(f"--report takes a file stem (STEM.json and STEM.txt are written), "
                         f"got {text!r}; use --report {stem.with_suffix('')}")
    if stem.name in ("", ".", ".."):
        raise UsageError(f"--report takes a file stem such as boards/reports/icebreaker, "
                         f"got {text!r}")
    return stem


def board_core_spec(board: str) -> UnitSpec:
    """The catalogue's ``core`` unit with the board's preset (:data:`CORE_PRESETS`) as its
    defaults: the flags then override the preset, key by key."""
    if board not in CORE_PRESETS:
        raise ValueError(f"unknown board {board!r}; allowed: {', '.join(BOARDS)}")
    spec = UNITS["core"]
    preset = CORE_PRESETS[board]
    params = {name: dataclasses.replace(param, default=preset[name]) if name in preset else param
              for name, param in spec.params.items()}
    return dataclasses.replace(spec, params=params)


def _freq(board: str, text: str):
    """``--freq``'s MHz, exactly (a :class:`fractions.Fraction`), once the board's PLL can make it."""
    try:
        freq = freq_hz(text) / MHZ
        board_pll(board, freq)
    except ValueError as exc:
        raise UsageError(f"--freq {text}: {exc}") from None
    return freq


def _baud(board: str, freq, text: str | None) -> int:
    """``--baud``'s rate (default :data:`DEFAULT_BAUD`), once the UART can make it of the core
    clock the PLL achieves for ``freq``."""
    try:
        return uart_rate(board_pll(board, freq).f_out, DEFAULT_BAUD if text is None else text).asked
    except ValueError as exc:
        flag = f"--baud {text}" if text is not None else f"the default --baud {DEFAULT_BAUD}"
        raise UsageError(f"{flag}: {exc}") from None


@command("build")
def _build_command(parser):
    parser.add_argument("--board", metavar="BOARD", help=f"target board: {' | '.join(BOARDS)}")
    defaults = ", ".join(f"{board} {freq}" for board, freq in DEFAULT_FREQ_MHZ.items())
    parser.add_argument("--freq", metavar="MHZ",
                        help=f"core clock asked of the FPGA's PLL, MHz (default: {defaults}); the PLL makes "
                             f"the highest frequency it can at or below it")
    parser.add_argument("--baud", metavar="BAUD",
                        help=f"the UART's bit rate (default {DEFAULT_BAUD}; {FALLBACK_BAUD} the fallback): the "
                             f"divisor is the PLL's clock over it, at most {100 * BAUD_TOLERANCE:g} %% off; open "
                             f"the board as serial:DEVICE@BAUD")
    parser.add_argument("--bits", metavar="W,A,G",
                        help="bitwidths the core must serve (or one width N): sets --max-bits to the widest "
                             "(each 1..8)")
    parser.add_argument("--max-bits", dest="max_bits", metavar="N", help="widest code the core handles (1..8)")
    parser.add_argument("--max-act-bits", dest="max_act_bits", metavar="N",
                        help="widest activation code of the core's threshold stage (0..8; 0: no stage; "
                             "default 4)")
    parser.add_argument("--pe", metavar="P", help="processing elements (rows computed in parallel)")
    parser.add_argument("--simd", metavar="S", help="columns per processing element per cycle")
    parser.add_argument("--vectors", metavar="V", help="vectors of a tile: the core does pe x vectors x simd "
                                                       "AND+popcount bit pairs per cycle")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
                        help="any core parameter over the board's preset (repeatable; e.g. drains=4; "
                             "see 'dorefa generate --list')")
    seeds = ", ".join(f"{board} {spec.seed}" for board, spec in BOARDS.items())
    parser.add_argument("--seed", metavar="N",
                        help=f"nextpnr's placement seed (default: {seeds}); Fmax moves with it, and on an "
                             f"unlucky seed nextpnr's router may never finish: try another")
    parser.add_argument("--step-timeout", dest="step_timeout", metavar="MINUTES",
                        help="stop a tool step (synthesis, place and route, packing) that runs longer "
                             "(default: no limit)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="build directory (default build/<board>)")
    parser.add_argument("--report", metavar="STEM",
                        help="also write the report to STEM.json and STEM.txt "
                             "(e.g. boards/reports/icebreaker)")

    def run(args):
        if args.board is None:
            raise UsageError(f"name the board with --board {' | '.join(BOARDS)}")
        if args.board not in BOARDS:
            raise UsageError(f"unknown board {args.board!r}; allowed: {', '.join(BOARDS)}")
        stem = _report_stem(args.report) if args.report is not None else None
        freq = _freq(args.board, args.freq) if args.freq is not None else None
        baud = _baud(args.board, freq, args.baud)
        try:
            assignments = list(args.assignments)
            if args.max_act_bits is not None:
                assignments.append(f"max_act_bits={args.max_act_bits}")
            params = parse_assignments(board_core_spec(args.board), assignments, bits=args.bits,
                                       max_bits=args.max_bits, pe=args.pe, simd=args.simd, vectors=args.vectors)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        bits = widest_bits(args.bits)[1] if args.bits is not None else None
        seed = None
        if args.seed is not None:
            if not re.fullmatch(r"[0-9]+", args.seed):
                raise UsageError(f"--seed takes an integer >= 0, got {args.seed!r}")
            seed = int(args.seed)
        step_timeout = None
        if args.step_timeout is not None:
            try:
                step_timeout = 60 * float(args.step_timeout)
            except ValueError:
                step_timeout = float("nan")  # refused below with the rest
            if not 0 < step_timeout < float("inf"):
                raise UsageError(f"--step-timeout takes a number of minutes > 0, got {args.step_timeout!r}")
        out = args.out if args.out is not None else Path("build") / args.board
        # build() checks the core parameters (ValueError -> exit 2) before running any tool.
        from boards.build import StepTimeout, build
        try:
            report = build(args.board, out, core_params=params, freq_mhz=freq, baud=baud, bits=bits, seed=seed,
                           step_timeout=step_timeout, report_stem=stem)
        except StepTimeout as exc:
            print(f"{_PROG}: error: {exc} (nextpnr's router can loop forever on an unlucky placement: "
                  f"try another --seed); see the logs in {out}", file=sys.stderr)
            return EXIT_TOOL_FAILED
        except subprocess.CalledProcessError as exc:
            print(f"{_PROG}: error: the toolchain failed (exit {exc.returncode}); see the logs in {out}",
                  file=sys.stderr)
            return EXIT_TOOL_FAILED
        print(report.to_text(), end="")
        written = [out / "report.txt", out / "report.json"]
        if stem is not None:
            written += [stem.with_name(stem.name + ".txt"), stem.with_name(stem.name + ".json")]
        print(f"(written to {', '.join(map(str, written))})")
        return 0

    return run
