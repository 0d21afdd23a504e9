"""``dorefa demo``: the digits network at several (W, A, G) settings and seeds, trained
in parallel worker processes, summarised like the paper's Table 1 (table, JSON, figure).

:data:`DEMO` is what the command trains (tests replace it with a tiny one).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from sw.contract.codes import check_bits

from . import command
from .train import DEFAULT_THREADS, add_threads, positive_int


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
                check_bits(b, name)
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
    from sw.train import train
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
    from sw.train import TrainConfig
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
        from sw.train import train
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
    from sw.plots import SUMMARY_NAME, plot_summary
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


@command("demo")
def _demo_command(parser):
    parser.description = ("Train the small digits network (scikit-learn's 8x8 digits, no download) at "
                          + ", ".join("(" + ",".join(map(str, s)) + ")" for s in DEMO.settings)
                          + " (W,A,G), once per seed, and print the test accuracies like the paper's Table 1: "
                            "mean and min..max over the seeds.  Writes results.json, results.md and "
                            "summary.png (a figure of the table), and each run under DIR/W-A-G/seed-S.")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help=f"epochs per run (default {DEMO.epochs})")
    parser.add_argument("--seeds", type=_seed_list, default=None, metavar="S,S,...",
                        help=f"seeds of each setting (default {','.join(map(str, DEMO.seeds))})")
    parser.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                        help="runs trained at once, in worker processes of --threads torch threads each "
                             "(default: the number of CPU cores, here %d); any N gives the same figures"
                             % default_jobs())
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="output directory (default runs/demo)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (with --jobs 1)")
    add_threads(parser)

    def run(args):
        from sw.plots import SUMMARY_NAME
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
