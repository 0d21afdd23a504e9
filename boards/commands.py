"""``dorefa build``: synthesise, place and route the training core for a board.

::

    dorefa build --board icebreaker [--max-bits N] [--pe P] [--simd S] [--out DIR]

runs :func:`boards.build.build` (YoWASP Yosys + nextpnr) and prints its
resource / timing report (also written to ``DIR/report.txt`` and
``DIR/report.json``; ``DIR`` defaults to ``build/<board>``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from sw.cli import UsageError, command

from .top import BOARDS

EXIT_TOOL_FAILED = 1


@command("build", help="synthesise, place and route the training core for a board")
def _build_command(parser):
    parser.add_argument("--board", help=f"target board: {' | '.join(BOARDS)}")
    parser.add_argument("--max-bits", dest="max_bits", help="widest code the core handles (1..8)")
    parser.add_argument("--pe", help="processing elements (rows computed in parallel)")
    parser.add_argument("--simd", help="columns per processing element per cycle")
    parser.add_argument("--bits", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="build directory (default build/<board>)")

    def run(args):
        if args.bits is not None:
            raise UsageError("dorefa build: error: --bits is not a build parameter (the core serves "
                             "every W,A,G up to --max-bits); use --max-bits N")
        if args.board is None:
            raise UsageError(f"dorefa build: error: name the board with --board {' | '.join(BOARDS)}")
        if args.board not in BOARDS:
            raise UsageError(f"dorefa build: error: unknown board {args.board!r}; allowed: {', '.join(BOARDS)}")
        params = {}
        for name in ("max_bits", "pe", "simd"):
            text = getattr(args, name)
            if text is None:
                continue
            try:
                params[name] = int(text)
            except ValueError:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"dorefa build: error: {flag} must be an integer, got {text!r}") from None
        out = args.out if args.out is not None else Path("build") / args.board
        # build() checks the core parameters (ValueError -> exit 2) before running any tool.
        from .build import build
        try:
            report = build(args.board, out, core_params=params)
        except subprocess.CalledProcessError as exc:
            print(f"dorefa build: error: the toolchain failed (exit {exc.returncode}); see the logs in {out}",
                  file=sys.stderr)
            return EXIT_TOOL_FAILED
        print(report.to_text(), end="")
        print(f"(written to {out / 'report.txt'} and {out / 'report.json'})")
        return 0

    return run

