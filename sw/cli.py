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
DISTRIBUTION = "dorefa-hw"  # the package whose version --version prints
MAX_WIDTH = 8.0  # largest --width (channel multiplier); sw.models.DoReFaNet checks the same (0, 8]
EXIT_INTERRUPTED = 130

# Modules that register more subcommands with @command (imported lazily).
COMMAND_MODULES: tuple[str, ...] = ("hw.commands", "boards.commands")


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit status 2.

    The message says what is wrong, without a prefix: :func:`main` prints it
    as ``dorefa <command>: error: <message>``.  ``prog`` names the program in
    that prefix when it is not the command being run (argparse's errors name
    their own parser's).
    """

    def __init__(self, message: str, *, prog: str | None = None):
        super().__init__(message)
        self.prog = prog


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
        raise UsageError(f"{message} (see '{self.prog} --help')", prog=self.prog)


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


def _int_in(minimum: int, maximum: int) -> Callable[[str], int]:
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


def _width(text: str) -> float:
    """An argparse type: a channel-width multiplier in ``(0, MAX_WIDTH]``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"width multiplier must be in (0, {MAX_WIDTH:g}], got {text!r}")
    return value


def _infer_backend(text: str) -> str:
    """An argparse type: a backend ``dorefa infer`` runs on, one of
    :data:`sw.inference.INFER_BACKENDS` (``serial:DEVICE`` for any device)."""
    from .inference import INFER_BACKENDS
    for allowed in INFER_BACKENDS:
        prefix, device = allowed.split(":DEVICE")[0], allowed.endswith(":DEVICE")
        if text == allowed if not device else (text.startswith(prefix + ":") and len(text) > len(prefix) + 1):
            return text
    why = " (it computes float convolutions: no integer inference)" if text == "torch" else ""
    raise argparse.ArgumentTypeError(f"unknown backend {text!r}{why}; allowed: {', '.join(INFER_BACKENDS)}")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


# torch CPU threads of every command that computes (one default for all): these small
# networks run fastest on 1, and more threads than free cores is very slow on a busy machine.
DEFAULT_THREADS = 1


def _add_threads(parser) -> None:
    """Add ``--threads N`` (default :data:`DEFAULT_THREADS`) to a command's parser."""
    parser.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, metavar="N",
                        help=f"torch CPU threads (default {DEFAULT_THREADS}: small networks run fastest on 1, "
                             f"and more threads than free cores is very slow on a busy machine). Exact "
                             f"figures depend on the thread count (and the CPU's kernel set).")


def _set_threads(args) -> None:
    """Set torch's CPU thread count to ``args.threads``."""
    import torch
    torch.set_num_threads(args.threads)


# --------------------------------------------------------------------------- train

@command("train", help="train a DoReFa network on a data set")
def _train_command(parser):
    from .data import DATASETS
    from .train import MAX_SEED, MODEL_NAMES, SCHEDULES, TrainConfig

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
    parser.add_argument("--width", type=_width, default=d.width, metavar="F",
                        help=f"channel-width multiplier, in (0, {MAX_WIDTH:g}] (default {d.width})")
    parser.add_argument("--quantize-first", action="store_true", help="quantize the first conv too")
    parser.add_argument("--quantize-last", action="store_true", help="quantize the last FC too")
    parser.add_argument("--epochs", type=_positive_int, default=d.epochs, metavar="N",
                        help=f"total epochs (default {d.epochs}); with --resume, may exceed the checkpoint's "
                             f"to extend the run, never fall below the epochs it has finished")
    parser.add_argument("--batch-size", type=_positive_int, default=d.batch_size, metavar="B",
                        help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=_positive_float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    parser.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                        help=f"learning-rate schedule over the epochs (default {d.schedule})")
    parser.add_argument("--seed", type=_int_in(0, MAX_SEED), default=d.seed, metavar="S",
                        help=f"random seed, 0..{MAX_SEED} (default {d.seed})")
    parser.add_argument("--train-limit", type=_positive_int, default=None, metavar="N",
                        help="train on only the first N training samples (quick checks)")
    parser.add_argument("--test-limit", type=_positive_int, default=None, metavar="N",
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
                             "simulator: a few products only), serial:DEVICE (a core on a serial port); "
                             f"all bit-identical (default {d.backend})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads(parser)

    def run(args):
        from .train import CURVES_NAME, train
        if args.dataset in ("svhn", "mnist") and args.data is None:
            raise UsageError(f"--dataset {args.dataset} is read from files: "
                             f"pass --data PATH (the directory that holds them)")
        config = TrainConfig(dataset=args.dataset, data=args.data, model=args.model, bits=args.bits,
                             width=args.width, quantize_first=args.quantize_first,
                             quantize_last=args.quantize_last, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, schedule=args.schedule, seed=args.seed,
                             train_limit=args.train_limit, test_limit=args.test_limit, out=args.out,
                             resume=args.resume, overwrite=args.overwrite, backend=args.backend)
        _set_threads(args)
        result = train(config, progress=not args.no_progress,
                       on_epoch_end=_curves_after_each_epoch(config.out))
        print(f"test accuracy {result.test_acc:.2%} after {len(result.history)} epochs; "
              f"metrics in {Path(config.out) / 'metrics.jsonl'}, curves in {Path(config.out) / CURVES_NAME}")
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
    parser.add_argument("--backend", type=_infer_backend, default="ref", metavar="NAME",
                        help=f"where the products and thresholds run: {', '.join(INFER_BACKENDS)} "
                             "(default ref; see 'dorefa train --help')")
    parser.add_argument("--data", metavar="PATH", help="directory of the data files (default: the checkpoint's)")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="only the first N test samples")
    _add_threads(parser)

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
    """What ``dorefa demo`` trains: the digits network at each of ``settings``,
    once per seed of ``seeds``.

    ``base`` holds the :class:`sw.train.TrainConfig` fields shared by every
    run (tests shrink it through :data:`DEMO`).
    """

    settings: tuple[tuple[int, int, int], ...] = ((32, 32, 32), (1, 2, 32), (1, 2, 6), (1, 1, 2))
    epochs: int = 25
    seeds: tuple[int, ...] = (0, 1, 2)
    base: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.settings:
            raise ValueError("a demo needs at least one (W, A, G) setting")
        for bits in self.settings:
            if len(tuple(bits)) != 3:
                raise ValueError(f"a demo setting must be (W, A, G), got {bits!r}")
            for b, name in zip(bits, "WAG"):
                numeric.check_bits(b, name)
        if len(set(map(tuple, self.settings))) != len(self.settings):
            raise ValueError(f"demo settings repeat: {self.settings!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be one or more integers >= 0, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {','.join(map(str, self.seeds))}")

    def runs(self) -> list[tuple[tuple[int, int, int], int]]:
        """Every (setting, seed) to train, settings first."""
        return [(tuple(bits), seed) for bits in self.settings for seed in self.seeds]


DEMO = DemoConfig()
DEMO_RESULTS_JSON = "results.json"  # every run's figures and each setting's summary
DEMO_RESULTS_MD = "results.md"      # the table


def default_jobs() -> int:
    """The demo's default number of worker processes: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def demo_run_dir(out: str | Path, bits, seed: int) -> Path:
    """Where the demo trains ``bits`` with ``seed``: ``out/W-A-G/seed-S``."""
    return Path(out) / "-".join(map(str, bits)) / f"seed-{seed}"


def _demo_record(result) -> dict:
    """One finished demo run (a :class:`sw.train.TrainResult`) as a JSON-ready dict."""
    config, last = result.config, (result.history[-1] if result.history else {})
    return {"seed": config.seed, "test_acc": result.test_acc, "test_loss": last.get("test_loss"),
            "train_acc": last.get("train_acc"), "train_loss": last.get("train_loss"),
            "epochs": len(result.history), "seconds": round(result.seconds, 1), "out": config.out}


def _demo_worker(config, threads: int) -> dict:
    """Train one demo run in a worker process with ``threads`` torch threads (quietly)."""
    import torch
    from .train import train
    torch.set_num_threads(threads)
    return _demo_record(train(config, progress=False, log=lambda line: None))


def run_demo(demo: DemoConfig, out: str | Path, *, jobs: int = 1, threads: int = DEFAULT_THREADS,
             progress: bool = True, log=print) -> list[dict]:
    """Train every (setting, seed) of ``demo`` under ``out/W-A-G/seed-S``; write
    ``out/results.json`` (every seed's figures and each setting's summary),
    ``out/results.md`` (the table) and ``out/summary.png`` (its figure); return
    the table rows.

    The runs are independent: with ``jobs`` > 1 they run in that many worker
    processes (spawned), each with ``threads`` torch threads, and give exactly
    the figures of ``jobs=1``, which trains them one after the other in this
    process (with progress bars and per-epoch lines).  Each row holds ``bits``,
    the seeds' ``test_acc`` mean, ``min`` and ``max``, and ``runs`` (one record
    per seed).
    """
    from .train import TrainConfig
    for name, value in (("jobs", jobs), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    out = Path(out)
    configs = {(bits, seed): TrainConfig(**{"dataset": "digits", **demo.base, "bits": bits, "epochs": demo.epochs,
                                            "seed": seed, "out": str(demo_run_dir(out, bits, seed)),
                                            "overwrite": True})
               for bits, seed in demo.runs()}
    jobs = min(jobs, len(configs))
    log(f"demo: {len(configs)} runs ({len(demo.settings)} settings x seeds {','.join(map(str, demo.seeds))}, "
        f"{demo.epochs} epochs each) in {jobs} process{'es' if jobs > 1 else ''}, {threads} torch "
        f"thread{'s' if threads > 1 else ''} each")
    records = {}

    def done(key, record):
        records[key] = record
        log(f"[{len(records)}/{len(configs)}] W,A,G={','.join(map(str, key[0]))} seed {key[1]}: "
            f"test accuracy {record['test_acc']:.2%} ({record['epochs']} epochs, {record['seconds']:.0f} s)")

    if jobs == 1:
        import torch
        from .train import train
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for key, config in configs.items():
                done(key, _demo_record(train(config, progress=progress, log=log)))
        finally:
            torch.set_num_threads(before)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        # spawn, not fork: a forked torch (OpenMP pools already started) can hang.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_demo_worker, config, threads): key for key, config in configs.items()}
            try:
                for future in as_completed(futures):
                    done(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    rows = []
    for bits in demo.settings:
        runs = [records[(tuple(bits), seed)] for seed in demo.seeds]
        accs = [r["test_acc"] for r in runs]
        config = configs[(tuple(bits), demo.seeds[0])]
        rows.append({"bits": list(bits), "test_acc": sum(accs) / len(accs), "min": min(accs), "max": max(accs),
                     "seeds": list(demo.seeds), "epochs": demo.epochs,
                     "seconds": round(sum(r["seconds"] for r in runs) / len(runs), 1),
                     "model": config.model, "dataset": config.dataset, "runs": runs})
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_RESULTS_JSON).write_text(json.dumps(rows, indent=2) + "\n")
    (out / DEMO_RESULTS_MD).write_text(demo_table(rows) + "\n")
    from .plots import SUMMARY_NAME, plot_summary
    plot_summary(rows, out / SUMMARY_NAME,
                 title=f"'{rows[0]['model']}' network on {rows[0]['dataset']}: test accuracy, "
                       f"{demo.epochs} epochs, seeds {','.join(map(str, demo.seeds))}")
    return rows


def demo_table(rows: list[dict]) -> str:
    """A markdown table in the style of the paper's Table 1: per (W, A, G) the mean
    test accuracy over the seeds and their min..max."""
    lines = ["| W | A | G | test accuracy, mean | min..max | seeds | epochs | seconds per run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w, a, g = r["bits"]
        lines.append(f"| {w} | {a} | {g} | {100 * r['test_acc']:.2f} % | "
                     f"{100 * r['min']:.2f}..{100 * r['max']:.2f} % | "
                     f"{','.join(map(str, r['seeds']))} | {r['epochs']} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def _seed_list(text: str) -> tuple[int, ...]:
    """``0,1,2`` -> (0, 1, 2): distinct integers >= 0."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0 separated by commas, got {text!r}")
    return seeds


@command("demo", help="train the digits network at several bitwidths and seeds and print a Table 1-style summary")
def _demo_command(parser):
    parser.description = ("Train the small digits network (scikit-learn's 8x8 digits, no download) at "
                          + ", ".join("(" + ",".join(map(str, s)) + ")" for s in DEMO.settings)
                          + " (W,A,G), once per seed, and print the test accuracies like the paper's Table 1: "
                            "mean and min..max over the seeds.  Writes results.json, results.md and "
                            "summary.png (a figure of the table), and each run under DIR/W-A-G/seed-S.")
    parser.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                        help=f"epochs per run (default {DEMO.epochs})")
    parser.add_argument("--seeds", type=_seed_list, default=None, metavar="S,S,...",
                        help=f"seeds of each setting (default {','.join(map(str, DEMO.seeds))})")
    parser.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                        help="runs trained at once, in worker processes of --threads torch threads each "
                             "(default: the number of CPU cores, here %d); any N gives the same figures"
                             % default_jobs())
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="output directory (default runs/demo)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (with --jobs 1)")
    _add_threads(parser)

    def run(args):
        from .plots import SUMMARY_NAME
        demo = DEMO
        if args.epochs is not None:
            demo = replace(demo, epochs=args.epochs)
        if args.seeds is not None:
            demo = replace(demo, seeds=args.seeds)
        jobs = default_jobs() if args.jobs is None else args.jobs
        start = time.perf_counter()
        rows = run_demo(demo, args.out, jobs=jobs, threads=args.threads, progress=not args.no_progress)
        print()
        print(demo_table(rows))
        out = Path(args.out)
        print(f"\n{len(demo.runs())} runs in {time.perf_counter() - start:.0f} s; table in "
              f"{out / DEMO_RESULTS_MD} and {DEMO_RESULTS_JSON}, figure in {out / SUMMARY_NAME}")
        return 0

    return run


# --------------------------------------------------------------------------- plot

@command("plot", help="draw the loss and accuracy curves of training runs side by side (PNG)")
def _plot_command(parser):
    parser.description = ("Draw the loss and accuracy curves (train and test, per epoch) of one or more "
                          "'dorefa train' output directories side by side, one column a run, from each "
                          "RUN_DIR/metrics.jsonl.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a 'dorefa train' output directory")
    parser.add_argument("-o", "--output", default="curves.png", metavar="FILE.png",
                        help="the PNG to write (default curves.png in the current directory)")

    def run(args):
        from .plots import plot_runs
        path = plot_runs(args.run_dirs, args.output)
        print(f"curves of {len(args.run_dirs)} run{'s' if len(args.run_dirs) > 1 else ''} in {path}")
        return 0

    return run


def _curves_after_each_epoch(out: str | Path) -> Callable[[dict], None]:
    """``train``'s ``on_epoch_end``: redraw ``out/curves.png`` from ``out/metrics.jsonl``,
    so the figure is there even if a later epoch crashes.  A figure that cannot be
    drawn is a one-line warning on stderr (once), never the end of a training run."""
    failed = []

    def draw(row: dict) -> None:
        from .plots import write_run_curves
        try:
            write_run_curves(out)
        except Exception as exc:  # noqa: BLE001 -- a figure is not worth a training run
            if not failed:
                print(f"dorefa train: warning: cannot draw the curves figure: {_one_line(exc)}", file=sys.stderr)
            failed.append(exc)

    return draw


# --------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = _Parser(prog="dorefa", description="DoReFa-HW: low-bitwidth DoReFa-Net training, "
                                                "golden model and hardware.")
    parser.add_argument("--version", action="version", version=f"dorefa {version()}",
                        help="print the version of dorefa-hw and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.set_defaults(handler=cmd.configure(p))
    return parser


def version() -> str:
    """The installed version of the ``dorefa-hw`` distribution (``"unknown"`` if it is not installed)."""
    from importlib import metadata
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (dorefa-hw is not installed)"


def _error_line(prog: str, exc: BaseException) -> str:
    """``<prog>: error: <message>`` on one line; a message that already starts
    with that prefix does not get it twice."""
    prefix = f"{prog}: error: "
    message = _one_line(exc)
    return message if message.startswith(prefix) else prefix + message


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dorefa`` console script; returns the exit status.

    Every error a user can fix (:class:`UsageError`, argparse's, ``ValueError``,
    ``OSError``, a protocol error) is one line on stderr, ``dorefa <command>:
    error: ...``, and exit status 2.
    """
    args = None
    try:
        args, extras = build_parser().parse_known_args(argv)
        if extras:  # argparse would name the top-level parser: name the command
            raise UsageError(f"unrecognized arguments: {' '.join(extras)} (see 'dorefa {args.command} --help')")
        status = args.handler(args)
    except UsageError as exc:
        name = getattr(args, "command", None)
        print(_error_line(exc.prog or f"dorefa{' ' + name if name else ''}", exc), file=sys.stderr)
        status = EXIT_USAGE
    except (ValueError, OSError, ProtocolError) as exc:  # bad data/checkpoint/settings, files, the core link
        if os.environ.get("DOREFA_DEBUG"):
            raise
        name = getattr(args, "command", None)
        print(_error_line(f"dorefa{' ' + name if name else ''}", exc), file=sys.stderr)
        status = EXIT_USAGE
    except KeyboardInterrupt:
        print("dorefa: interrupted (the last finished epoch's checkpoint is kept; continue with --resume)",
              file=sys.stderr)
        status = EXIT_INTERRUPTED
    return int(status or 0)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
