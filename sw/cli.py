"""The ``dorefa`` command line.

Subcommands live in a registry: each is a function decorated with
:func:`command`, which receives its ``argparse`` sub-parser to fill in and
returns the handler ``handler(args) -> exit code``.  To add one (``generate``,
``build``...) write such a function here or in a module listed in
:data:`COMMAND_MODULES` (imported when the parser is built)::

    @command("generate", help="emit Verilog for a core")
    def _generate(parser):
        parser.add_argument(...)
        return lambda args: ...

Errors a user can fix (a bad ``--bits``, missing data, a corrupt checkpoint:
every ``ValueError``, ``OSError`` and argparse error) print one line on stderr
and exit with status 2, no traceback (set ``DOREFA_DEBUG=1`` to get it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from . import numeric
from .protocol import ProtocolError

__all__ = ["main", "build_parser", "command", "COMMANDS", "COMMAND_MODULES",
           "DemoConfig", "DEMO", "run_demo", "UsageError"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Modules that register more subcommands with @command (imported lazily).
COMMAND_MODULES: tuple[str, ...] = ("hw.commands", "boards.commands")


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int | None]]


COMMANDS: dict[str, _Command] = {}


def command(name: str, *, help: str):
    """Register ``configure(parser) -> handler`` as subcommand ``name``."""
    def register(configure):
        COMMANDS[name] = _Command(name, help, configure)
        return configure
    return register


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def _bits(text: str) -> tuple[int, int, int]:
    try:
        return numeric.parse_bits(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_threads(parser, default: int | None = None) -> None:
    choice = "torch's choice" if default is None else str(default)
    parser.add_argument("--threads", type=_positive_int, default=default, metavar="N",
                        help=f"torch CPU threads (default: {choice}; small networks run best on 1, and on a "
                             f"busy machine more threads than free cores is very slow). Results are "
                             f"reproducible for a given thread count.")


def _set_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)


# --------------------------------------------------------------------------- train

@command("train", help="train a DoReFa network on a data set")
def _train_command(parser):
    from .data import DATASETS
    from .train import MODEL_NAMES, SCHEDULES, TrainConfig

    d = TrainConfig()
    parser.description = ("Train a DoReFa network with W-bit weights, A-bit activations and G-bit gradients. "
                          "Default model: 'digits' (a small 5-conv network at the data set's native size: "
                          "8x8 digits, 28x28 MNIST) for digits and mnist, 'svhn' for svhn; svhn networks "
                          "get their inputs resized to 40x40.")
    parser.add_argument("--bits", type=_bits, required=True, metavar="W,A,G",
                        help="bitwidths of weights, activations, gradients: each 1..8, or 32 (not quantized)")
    parser.add_argument("--dataset", choices=DATASETS, default=d.dataset)
    parser.add_argument("--data", metavar="PATH", help="directory holding the data files (svhn, mnist)")
    parser.add_argument("--model", choices=MODEL_NAMES, default=None,
                        help="network (default: digits for digits/mnist, svhn for svhn)")
    parser.add_argument("--width", type=_positive_float, default=d.width, metavar="F",
                        help=f"channel-width multiplier (default {d.width})")
    parser.add_argument("--quantize-first", action="store_true", help="quantize the first conv too")
    parser.add_argument("--quantize-last", action="store_true", help="quantize the last FC too")
    parser.add_argument("--epochs", type=_positive_int, default=d.epochs, metavar="N", help=f"default {d.epochs}")
    parser.add_argument("--batch-size", type=_positive_int, default=d.batch_size, metavar="B",
                        help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=_positive_float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    parser.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                        help=f"learning-rate schedule over the epochs (default {d.schedule})")
    parser.add_argument("--seed", type=_nonnegative_int, default=d.seed, help=f"default {d.seed}")
    parser.add_argument("--train-limit", type=_positive_int, default=None, metavar="N",
                        help="train on only the first N training samples (quick checks)")
    parser.add_argument("--test-limit", type=_positive_int, default=None, metavar="N",
                        help="evaluate on only the first N test samples")
    parser.add_argument("--out", default=d.out, metavar="DIR",
                        help=f"output directory: metrics.jsonl, checkpoint.pt (default {d.out})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt if it exists")
    group.add_argument("--overwrite", action="store_true", help="start over even if DIR/checkpoint.pt exists")
    parser.add_argument("--backend", default=d.backend, metavar="NAME",
                        help="where the integer products run: torch (golden model), ref (integer reference), "
                             "model (core model over the host protocol), sim (the hw core built by Verilator, "
                             "on a pseudo-terminal: short runs), sim:amaranth (the hw core in the Amaranth "
                             "simulator: a few products only), serial:DEVICE (a core on a serial port); "
                             f"all bit-identical (default {d.backend})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads(parser)

    def run(args):
        from .train import train
        if args.dataset in ("svhn", "mnist") and args.data is None:
            raise UsageError(f"dorefa train: error: --dataset {args.dataset} is read from files: "
                             f"pass --data PATH (the directory that holds them)")
        config = TrainConfig(dataset=args.dataset, data=args.data, model=args.model, bits=args.bits,
                             width=args.width, quantize_first=args.quantize_first,
                             quantize_last=args.quantize_last, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, schedule=args.schedule, seed=args.seed,
                             train_limit=args.train_limit, test_limit=args.test_limit, out=args.out,
                             resume=args.resume, overwrite=args.overwrite, backend=args.backend)
        _set_threads(args)
        result = train(config, progress=not args.no_progress)
        print(f"test accuracy {result.test_acc:.2%} after {len(result.history)} epochs; "
              f"metrics in {Path(config.out) / 'metrics.jsonl'}")
        return 0

    return run


# --------------------------------------------------------------------------- infer

@command("infer", help="run a checkpoint's test set as integer inference on a backend, "
                       "checked bit for bit against the float model")
def _infer_command(parser):
    from .inference import INFER_BACKENDS

    parser.description = ("Rebuild the network of a training checkpoint and run its test set twice: on the "
                           "float golden model, and as integer inference on a backend (products on codes, "
                           "BN + clip + quantize as thresholds -- on the core's activation stage for a core "
                           "backend -- max-pool on codes). Every activation code and logit is compared; "
                           "exit status 1 if any differs.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.pt written by 'dorefa train'")
    parser.add_argument("--backend", default="ref", metavar="NAME",
                        help=f"where the products and thresholds run: {', '.join(INFER_BACKENDS)} "
                             "(default ref; see 'dorefa train --help')")
    parser.add_argument("--data", metavar="PATH", help="directory of the data files (default: the checkpoint's)")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="only the first N test samples")
    _add_threads(parser, default=1)

    def run(args):
        from .inference import verify_inference
        _set_threads(args)
        report = verify_inference(args.checkpoint, args.backend, data=args.data, limit=args.limit)
        print(report.summary())
        return 0 if report.bit_exact else 1

    return run


# --------------------------------------------------------------------------- demo

@dataclass(frozen=True)
class DemoConfig:
    """What ``dorefa demo`` trains: the digits network at each of ``settings``.

    ``base`` holds the :class:`sw.train.TrainConfig` fields shared by every
    run (tests shrink it through :data:`DEMO`).
    """

    settings: tuple[tuple[int, int, int], ...] = ((32, 32, 32), (1, 2, 32), (1, 2, 6), (1, 1, 2))
    epochs: int = 25
    base: dict = field(default_factory=dict)


DEMO = DemoConfig()


def run_demo(demo: DemoConfig, out: str | Path, *, progress: bool = True, log=print) -> list[dict]:
    """Train every setting of ``demo`` under ``out/W-A-G``; write ``out/results.json``
    and ``out/results.md``; return the table rows."""
    from .train import TrainConfig, train

    out = Path(out)
    rows = []
    for bits in demo.settings:
        config = TrainConfig(**{"dataset": "digits", **demo.base, "bits": tuple(bits), "epochs": demo.epochs,
                                "out": str(out / "-".join(map(str, bits))), "overwrite": True})
        result = train(config, progress=progress, log=log)
        rows.append({"bits": list(config.bits), "test_acc": result.test_acc,
                     "epochs": len(result.history), "seconds": round(result.seconds, 1),
                     "model": config.model, "dataset": config.dataset, "seed": config.seed})
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "results.md").write_text(demo_table(rows) + "\n")
    return rows


def demo_table(rows: list[dict]) -> str:
    """A markdown table in the style of the paper's Table 1."""
    lines = ["| W | A | G | test accuracy | epochs | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        w, a, g = r["bits"]
        lines.append(f"| {w} | {a} | {g} | {r['test_acc']:.2%} | {r['epochs']} | {r['seconds']:.0f} |")
    return "\n".join(lines)


@command("demo", help="train the digits network at several bitwidths and print a Table 1-style summary")
def _demo_command(parser):
    parser.description = ("Train the small digits network (scikit-learn's 8x8 digits, no download) at "
                          + ", ".join("(" + ",".join(map(str, s)) + ")" for s in DEMO.settings)
                          + " (W,A,G) and print test accuracies like the paper's Table 1.")
    parser.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                        help=f"epochs per setting (default {DEMO.epochs})")
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="output directory (default runs/demo): results.json, results.md, one run per setting")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_threads(parser, default=1)

    def run(args):
        demo = DEMO if args.epochs is None else replace(DEMO, epochs=args.epochs)
        _set_threads(args)
        start = time.perf_counter()
        rows = run_demo(demo, args.out, progress=not args.no_progress)
        print()
        print(demo_table(rows))
        print(f"\n{len(rows)} runs in {time.perf_counter() - start:.0f} s; "
              f"table in {Path(args.out) / 'results.md'} and results.json")
        return 0

    return run


# --------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = _Parser(prog="dorefa", description="DoReFa-HW: low-bitwidth DoReFa-Net training, "
                                                "golden model and hardware.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.set_defaults(handler=cmd.configure(p))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dorefa`` console script; returns the exit status."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        status = args.handler(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        status = EXIT_USAGE
    except (ValueError, OSError, ProtocolError) as exc:  # bad data/checkpoint/settings, files, the core link
        if os.environ.get("DOREFA_DEBUG"):
            raise
        name = getattr(args, "command", None)
        print(f"dorefa{' ' + name if name else ''}: error: {_one_line(exc)}", file=sys.stderr)
        status = EXIT_USAGE
    except KeyboardInterrupt:
        print("dorefa: interrupted (the last finished epoch's checkpoint is kept; continue with --resume)",
              file=sys.stderr)
        status = EXIT_INTERRUPTED
    return int(status or 0)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
