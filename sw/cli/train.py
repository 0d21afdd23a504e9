"""``dorefa train``, and the argument types and helpers the computing commands share
(``--bits``, ``--threads``, the simulator's transports for a ``sim`` backend).

Importing this module loads no torch: the training code is imported when the
command is configured (its choices and defaults come from :mod:`sw.train`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable

from . import UsageError, command, one_line


# torch CPU threads of every command that computes (one default for all): these small
# networks run fastest on 1, and more threads than free cores is very slow on a busy machine.
DEFAULT_THREADS = 1


def _bits(text: str) -> tuple[int, int, int]:
    """An argparse type: ``W,A,G`` (:func:`sw.numeric.parse_bits`)."""
    from sw.numeric import parse_bits
    try:
        return parse_bits(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def int_in(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: an integer in ``minimum .. maximum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected an integer in {minimum}..{maximum}, got {text!r}")
        return value
    return parse


def positive_float(maximum: float = math.inf, name: str | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number in ``(0, maximum]``; the error names ``name``
    and the range if given."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 < value <= maximum and math.isfinite(value)):
            wanted = f"{name} must be in (0, {maximum:g}]" if name else "expected a positive number"
            raise argparse.ArgumentTypeError(f"{wanted}, got {text!r}")
        return value
    return parse


def add_threads(parser) -> None:
    """Add ``--threads N`` (default :data:`DEFAULT_THREADS`) to a command's parser."""
    parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS, metavar="N",
                        help=f"torch CPU threads (default {DEFAULT_THREADS}: small networks run fastest on 1, "
                             f"and more threads than free cores is very slow on a busy machine). Exact "
                             f"figures depend on the thread count (and the CPU's kernel set).")


def set_threads(args) -> None:
    """Set torch's CPU thread count to ``args.threads``."""
    import torch
    torch.set_num_threads(args.threads)


def transport_opener(backend: str):
    """The ``open_transport`` that :func:`sw.train.train` and
    :func:`sw.inference.verify_inference` get for ``backend``.

    ``sw`` never imports ``sim``: for a backend on the simulated core
    (:data:`sw.contract.backends.SIM_BACKENDS`: ``sim``, ``sim:amaranth``) this
    composition root hands it :func:`sim.transports.open_transport`, imported
    only then; every other backend needs none (``None``).
    """
    from sw.contract.backends import SIM_BACKENDS
    if backend not in SIM_BACKENDS:
        return None
    from sim.transports import open_transport
    return open_transport


# --------------------------------------------------------------------------- train

@command("train")
def _train_command(parser):
    from sw.data import DATASETS
    from sw.models import MAX_WIDTH
    from sw.train import MAX_SEED, MODEL_NAMES, SCHEDULES, TrainConfig

    d = TrainConfig()
    parser.description = ("Train a DoReFa network with W-bit weights, A-bit activations and G-bit gradients. "
                          "Default model: 'digits' (a small 5-conv network at the data set's native size: "
                          "8x8 digits, 28x28 MNIST) for digits and mnist, 'svhn' for svhn; svhn networks "
                          "get their inputs resized to 40x40. --resume continues bit-exactly; a larger "
                          "--epochs with --resume extends a run (the learning-rate schedule is recomputed for "
                          "the new total from the next epoch on; the output says when the result can then no "
                          "longer equal an uninterrupted run). Nothing saved is touched until the data, the "
                          "network and the backend are ready; --overwrite then replaces the old run's files.")
    parser.add_argument("--bits", type=_bits, required=True, metavar="W,A,G",
                        help="bitwidths of weights, activations, gradients: each 1..8, or 32 (not quantized)")
    parser.add_argument("--dataset", choices=DATASETS, default=d.dataset)
    parser.add_argument("--data", metavar="PATH", help="directory holding the data files (svhn, mnist)")
    parser.add_argument("--model", choices=MODEL_NAMES, default=None,
                        help="network (default: digits for digits/mnist, svhn for svhn)")
    parser.add_argument("--width", type=positive_float(MAX_WIDTH, "width multiplier"), default=d.width, metavar="F",
                        help=f"channel-width multiplier, in (0, {MAX_WIDTH:g}] (default {d.width})")
    parser.add_argument("--quantize-first", action="store_true", help="quantize the first conv too")
    parser.add_argument("--quantize-last", action="store_true", help="quantize the last FC too")
    parser.add_argument("--epochs", type=positive_int, default=d.epochs, metavar="N",
                        help=f"total epochs (default {d.epochs}); with --resume, may exceed the checkpoint's "
                             f"to extend the run, never fall below the epochs it has finished")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="B",
                        help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=positive_float(), default=d.lr, help=f"Adam learning rate (default {d.lr})")
    parser.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                        help=f"learning-rate schedule over the epochs (default {d.schedule})")
    parser.add_argument("--seed", type=int_in(0, MAX_SEED), default=d.seed, metavar="S",
                        help=f"random seed, 0..{MAX_SEED} (default {d.seed})")
    parser.add_argument("--train-limit", type=positive_int, default=None, metavar="N",
                        help="train on only the first N training samples (quick checks)")
    parser.add_argument("--test-limit", type=positive_int, default=None, metavar="N",
                        help="evaluate on only the first N test samples")
    parser.add_argument("--out", default=d.out, metavar="DIR",
                        help=f"output directory: metrics.jsonl, checkpoint.pt, config.json, curves.png (default {d.out})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue from DIR/checkpoint.pt if it exists; every setting that changes the "
                            "numbers (bits, model, width, seed, lr, batch size, schedule, ...) must match it, "
                            "except --epochs (see above)")
    group.add_argument("--overwrite", action="store_true",
                       help="start over even if DIR/checkpoint.pt exists: once the new run is ready, its "
                            "checkpoint, metrics, config and curves replace the old run's")
    parser.add_argument("--backend", default=d.backend, metavar="NAME",
                        help="where the integer products run: torch (golden model), ref (integer reference), "
                             "model (core model over the host protocol), sim (the hw core built by Verilator, "
                             "on a pseudo-terminal: short runs), sim:amaranth (the hw core in the Amaranth "
                             "simulator: a few products only), serial:DEVICE[@BAUD] (a core on a serial port, "
                             "3,000,000 baud unless @BAUD); "
                             f"all bit-identical (default {d.backend})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads(parser)

    def run(args):
        from sw.train import CURVES_NAME, train
        if args.dataset in ("svhn", "mnist") and args.data is None:
            raise UsageError(f"--dataset {args.dataset} is read from files: "
                             f"pass --data PATH (the directory that holds them)")
        config = TrainConfig(dataset=args.dataset, data=args.data, model=args.model, bits=args.bits,
                             width=args.width, quantize_first=args.quantize_first,
                             quantize_last=args.quantize_last, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, schedule=args.schedule, seed=args.seed,
                             train_limit=args.train_limit, test_limit=args.test_limit, out=args.out,
                             resume=args.resume, overwrite=args.overwrite, backend=args.backend)
        set_threads(args)
        result = train(config, progress=not args.no_progress, on_epoch_end=curves_after_each_epoch(config.out),
                       open_transport=transport_opener(config.backend))
        print(f"test accuracy {result.test_acc:.2%} after {len(result.history)} epochs; "
              f"metrics in {Path(config.out) / 'metrics.jsonl'}, curves in {Path(config.out) / CURVES_NAME}")
        return 0

    return run


def curves_after_each_epoch(out: str | Path) -> Callable[[dict], None]:
    """``train``'s ``on_epoch_end``: redraw ``out/curves.png`` from ``out/metrics.jsonl``,
    so the figure is there even if a later epoch crashes.  A figure that cannot be
    drawn is a one-line warning on stderr (once), never the end of a training run."""
    failed = []

    def draw(row: dict) -> None:
        from sw.plots import write_run_curves
        try:
            write_run_curves(out)
        except Exception as exc:  # noqa: BLE001 -- a figure is not worth a training run
            if not failed:
                print(f"dorefa train: warning: cannot draw the curves figure: {one_line(exc)}", file=sys.stderr)
            failed.append(exc)

    return draw
