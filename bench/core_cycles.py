# amaranth: UnusedElaboratable=no
"""Whole-core cycles of the digits net's training on a board's core, measured in Verilator.

``bench/core_density.py`` counts the compute loop only (``TrainingCore.run_cycles``,
the exact cycle model of the MAC array).  A request costs more than its compute:
its bytes (one a cycle at the core's port), unpacking the vectors (or making
them from the feature map) into the engine, moving the values out (into the
reply, the activation stage or the batch sums), the checks.  This bench runs
real training steps on the board preset's own core (``boards.top.CORE_PRESETS``)
compiled by Verilator and served on a pty (:class:`sim.verilator_bridge.VerilatorBridge`,
the ``sim`` backend's bridge) and reads the cycles the simulation ran
(:meth:`~sim.verilator_bridge.CoreBridge.stats`) after every request:

* per command (LOAD_MATRIX, LOAD_FMAP, RUN, ACCUMULATE, READ_SUMS, ...): requests,
  simulated cycles, bytes in and out, and for RUN and ACCUMULATE the compute
  cycles of ``run_cycles``;
* one training step (``--batches`` batches of 32 of the digits net at W,A,G = 1,2,6,
  full width, batch 32, as ``bench/core_density.py`` records them), and the
  evaluation of the 360 test samples;
* the epoch (44 batches of 32, one of 29, the evaluation) scaled from them
  (a batch of 29 counted as 29/32 of one of 32), in seconds at the build
  report's Fmax (``boards/reports/<board>.json``), beside the compute-only
  figure and the host's torch epoch measured in the same run.

The simulated cycles are the core's work with its link at one byte a cycle
(the pty's bytes reach it as fast as it takes them) plus up to 32 idle cycles
each time it waits for the host (the harness's settle time): the board's own
link (a UART at 3 Mbaud: 25 to 27 cycles a byte) comes on top and
``bench/link_bytes.py`` counts its bytes.  The steps' weights are checked
against the ``model`` backend's after the same steps (bit-identical, as
``--backend sim`` is).

Usage::

    python bench/core_cycles.py [--board ulx3s] [--batches 1] [--baseline PATH ...] [--out STEM]

writes ``bench/reports/core_cycles.{json,md}`` and prints the tables; a
``--baseline`` is an earlier report of this bench (an earlier core), shown beside.
A first Verilator build of a board preset takes minutes (cached in ``sim_build/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python bench/core_cycles.py`
    sys.path.insert(0, str(ROOT))

from bench.core_density import (BOARD_REPORTS, EVALUATION, RecordingClient, RecordingEngine,  # noqa: E402
                                batch_sizes, core_clocks, digits_session, model_params, torch_epochs)
from bench.reporting import write_report  # noqa: E402
from boards.top import CORE_PRESETS  # noqa: E402
from sw import protocol as P  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "reports" / "core_cycles"
TRAINING = "training"
#: Seconds the host waits for one reply of the simulated core (a full-width
#: batch's largest ACCUMULATE takes seconds under Verilator).
REPLY_TIMEOUT_S = 600.0


class CyclesClient(RecordingClient):
    """A :class:`~bench.core_density.RecordingClient` that also reads the simulation's
    counters after every request: ``cycles[(phase, command)]`` = ``[requests, cycles,
    bytes in, bytes out]`` (``phase`` set by the caller: :data:`TRAINING` or
    :data:`~bench.core_density.EVALUATION`)."""

    def __init__(self, transport, bridge, *args, **kwargs):
        super().__init__(transport, *args, **kwargs)
        self.bridge = bridge
        self.phase = None
        self.cycles: dict[tuple, list[int]] = {}
        self._last = bridge.stats()

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        reply = super().request(cmd, payload)
        now = self.bridge.stats()
        row = self.cycles.setdefault((self.phase, P.Cmd(cmd).name), [0, 0, 0, 0])
        for i, key in enumerate(("cycles", "bytes_in", "bytes_out"), 1):
            row[i] += now[key] - self._last[key]
        row[0] += 1
        self._last = now
        return reply


def _steps(model, optimizer, data, shuffle, batches: int, batch_size: int, client=None) -> list[int]:
    """Train the first ``batches`` minibatches of ``batch_size`` (``client.batch`` set to
    each batch's index); the sizes trained."""
    import torch.nn.functional as F

    from sw.data import iterate_minibatches

    model.train()
    sizes = []
    for index, (xb, yb) in enumerate(iterate_minibatches(data.train_x, data.train_y, batch_size, shuffle=True,
                                                         generator=shuffle)):
        if index >= batches:
            break
        if client is not None:
            client.batch = index
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sizes.append(xb.shape[0])
    return sizes


def flow(runs) -> dict:
    """Per phase, what the RUN and ACCUMULATE requests ``runs`` (a
    :attr:`~bench.core_density.RecordingClient.runs` counter) moved through the engine:
    ``vector_codes`` in (``count * cols`` a request: the vectors, unpacked or made by the
    window generator, one code a cycle), ``values`` out (``count * rows``: replies, batch
    sums or the activation stage) and, of them, ``activated`` (through the threshold unit)."""
    moved = {TRAINING: Counter(), EVALUATION: Counter()}
    for (batch, _, count, rows, cols, _, _, act_bits), n in runs.items():
        phase = moved[TRAINING if batch != EVALUATION else EVALUATION]
        phase["vector_codes"] += n * count * cols
        phase["values"] += n * count * rows
        phase["activated"] += n * count * rows if act_bits else 0
    return {phase: {key: counter[key] for key in ("vector_codes", "values", "activated")}
            for phase, counter in moved.items()}


def board_report(board: str) -> dict:
    """The committed build report of ``board`` (its Fmax), which must be of the preset's core."""
    report = json.loads((BOARD_REPORTS / f"{board}.json").read_text())
    if report["core_params"] != CORE_PRESETS[board]:
        raise ValueError(f"boards/reports/{board}.json was built from other core parameters than the {board} "
                         f"preset; rebuild it (dorefa build --board {board} --report boards/reports/{board})")
    return report


def measure(board: str, batches: int, torch_repeats: int, log=print) -> dict:
    """Train ``batches`` steps and evaluate the test set on ``board``'s simulated core."""
    import torch

    from hw.core import TrainingCore
    from sim.verilator_bridge import SimulatedSerialTransport
    from sw.core_engine import CoreEngine
    from sw.core_model import CoreModel
    from sw.driver import CoreClient, LoopbackTransport
    from sw.train import evaluate

    params = dict(CORE_PRESETS[board])
    report = board_report(board)
    log(f"building (or reusing) the {board} preset's core in Verilator ...")
    started = time.perf_counter()
    transport = SimulatedSerialTransport(params, timeout=REPLY_TIMEOUT_S)
    build_s = time.perf_counter() - started
    try:
        client = CyclesClient(transport, transport.bridge)
        config, data, model, optimizer, shuffle = digits_session()
        engine = RecordingEngine(client)
        model.set_engine(engine)
        client.phase = TRAINING
        log(f"training {batches} batch(es) of {config.batch_size} on the simulated core ...")
        started = time.perf_counter()
        sizes = _steps(model, optimizer, data, shuffle, batches, config.batch_size, client)
        client.phase = client.batch = EVALUATION
        log("evaluating the test set on the simulated core ...")
        test = evaluate(model, data.test_x, data.test_y, engine=engine)
        sim_s = time.perf_counter() - started
        engine.close()
    finally:
        transport.close()

    # The same steps on the model backend: the weights must agree bit for bit.
    _, _, reference, ref_optimizer, ref_shuffle = digits_session()
    reference.set_engine(CoreEngine(CoreClient(LoopbackTransport(CoreModel(**model_params(params))))))
    _steps(reference, ref_optimizer, data, ref_shuffle, batches, config.batch_size)
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    if not same:
        raise AssertionError(f"the simulated {board} core's steps ended with other weights than the model backend's")

    core = TrainingCore(**params)
    compute = Counter()
    for (batch, _, count, rows, cols, m_bits, v_bits, _), n in client.runs.items():
        compute[TRAINING if batch != EVALUATION else EVALUATION] += n * core.run_cycles(count, rows, cols, m_bits,
                                                                                        v_bits)
    fmax = min(c["fmax_mhz"] for c in core_clocks(report))
    log("timing the host's torch epoch ...")
    return {
        "board": board, "core_params": params, "fmax_mhz": fmax, "batches": batches,
        "batch_size": config.batch_size, "batch_sizes": sizes,
        "train_samples": int(data.train_x.shape[0]), "test_samples": int(data.test_x.shape[0]),
        "commands": [{"phase": phase, "command": cmd, "requests": r, "cycles": c, "bytes_in": i, "bytes_out": o}
                     for (phase, cmd), (r, c, i, o) in sorted(client.cycles.items())],
        "compute_cycles": dict(compute), "flow": flow(client.runs), "weights_match_model": same, "test_acc": test.accuracy,
        "build_s": build_s, "simulate_s": sim_s, "torch_epoch": torch_epochs(torch_repeats),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def summarise(result: dict) -> dict:
    """Per phase: cycles, compute cycles; per training sample; the epoch's cycles and seconds."""
    totals = {}
    for phase in (TRAINING, EVALUATION):
        rows = [r for r in result["commands"] if r["phase"] == phase]
        totals[phase] = {"cycles": sum(r["cycles"] for r in rows),
                         "bytes": sum(r["bytes_in"] + r["bytes_out"] for r in rows),
                         "compute": result["compute_cycles"].get(phase, 0)}
    trained = sum(result["batch_sizes"])
    per_sample = {k: v / trained for k, v in totals[TRAINING].items()}
    samples = result["train_samples"]
    epoch = {k: per_sample[k] * samples + totals[EVALUATION][k] for k in per_sample}
    hz = result["fmax_mhz"] * 1e6
    return {"totals": totals, "per_sample": per_sample, "epoch_cycles": epoch,
            "epoch_s": epoch["cycles"] / hz, "epoch_compute_s": epoch["compute"] / hz,
            "epoch_batches": len(batch_sizes(samples, result.get("batch_size", 32)))}


def _c(n: float) -> str:
    return f"{n:,.0f}"


def table(result: dict, baselines=()) -> str:
    s = summarise(result)
    lines = [
        "# Whole-core cycles of a digits epoch",
        "",
        f"Written by `{result.get('command', 'python bench/core_cycles.py')}`. The {result['board']} preset's core "
        f"({' '.join(f'{k}={v}' for k, v in result['core_params'].items())}) compiled by Verilator and served on a pty "
        f"(the `sim` backend's bridge); {result['batches']} training step(s) of {result.get('batch_size', 32)} "
        "samples of the digits net "
        "(W,A,G = 1,2,6, full width) and the evaluation of the test set run on it, and the simulation's cycle "
        "counter read after every request. Cycles include the request's and reply's bytes at one a cycle and up "
        "to 32 idle cycles per request (the bridge's settle time); the board's UART comes on top "
        "(`bench/link_bytes.py`). Compute = `TrainingCore.run_cycles` of the RUN and ACCUMULATE requests "
        f"(`bench/core_density.py`'s figure). The steps' weights equal the model backend's after the same steps: "
        f"{'checked' if result['weights_match_model'] else 'DIFFERENT'}.",
        "",
        "## Cycles by command",
        "",
        "| phase | command | requests | cycles | bytes in + out | cycles per request |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["commands"]:
        lines.append(f"| {r['phase']} | {r['command']} | {_c(r['requests'])} | {_c(r['cycles'])} "
                     f"| {_c(r['bytes_in'] + r['bytes_out'])} | {_c(r['cycles'] / r['requests'])} |")
    t = s["totals"]
    lines += [
        "",
        "## Totals",
        "",
        "| | cycles | of them compute | compute / cycles | bytes in + out |" + "".join(
            f" cycles, {b['label']} | fewer |" for b in baselines),
        "|---|---:|---:|---:|---:|" + "---:|---:|" * len(baselines),
    ]

    def row(label, value, compute, n_bytes, key):
        cells = "".join(f" {_c(b['value'](key))} | {b['value'](key) / value:.2f}x |" for b in baselines)
        return f"| {label} | {_c(value)} | {_c(compute)} | {100 * compute / value:.1f} % | {_c(n_bytes)} |{cells}"

    lines.append(row(f"training, {sum(result['batch_sizes'])} samples", t[TRAINING]["cycles"],
                     t[TRAINING]["compute"], t[TRAINING]["bytes"], "training"))
    lines.append(row(f"evaluation, {result['test_samples']} samples", t[EVALUATION]["cycles"],
                     t[EVALUATION]["compute"], t[EVALUATION]["bytes"], "evaluation"))
    e = s["epoch_cycles"]
    lines.append(row(f"epoch ({result['train_samples']:,} training samples, scaled, + evaluation)", e["cycles"],
                     e["compute"], e["bytes"], "epoch"))
    torch_s = result["torch_epoch"]["median_s"]
    lines += [
        "",
        f"One digits epoch on the core at its Fmax ({result['fmax_mhz']:.2f} MHz, `boards/reports/"
        f"{result['board']}.json`): **{s['epoch_s']:.2f} s** of core cycles (compute alone: "
        f"{s['epoch_compute_s']:.2f} s), against the host's `--backend torch` epoch, one thread, "
        f"{torch_s:.2f} s (median of {', '.join(f'{x:.2f}' for x in result['torch_epoch']['seconds'])} s, same run): "
        f"{s['epoch_s'] / torch_s:.2f}x the host's time. Test accuracy after the step(s): "
        f"{100 * result['test_acc']:.2f} %. Simulated in {result['simulate_s']:.0f} s (Verilator build "
        f"{result['build_s']:.0f} s); host: {result['machine']}.",
    ]
    if "flow" in result:
        lines += [
            "",
            "## What the RUN and ACCUMULATE requests move",
            "",
            "Vector codes in (count x cols a request: unpacked from the request or made by the window "
            "generator, one a cycle) and values out (count x rows: the reply, the batch sums or the "
            "activation stage), beside the requests' cycles and their compute:",
            "",
            "| phase | RUN + ACCUMULATE cycles | vector codes in | values out | of them activated "
            "| compute |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for phase in (TRAINING, EVALUATION):
            moved = result["flow"][phase]
            cycles = sum(r["cycles"] for r in result["commands"]
                         if r["phase"] == phase and r["command"] in ("RUN", "ACCUMULATE"))
            lines.append(f"| {phase} | {_c(cycles)} | {_c(moved['vector_codes'])} | {_c(moved['values'])} "
                         f"| {_c(moved['activated'])} | {_c(t[phase]['compute'])} |")
    for b in baselines:
        lines += ["", f"Baseline `{b['path']}`: {b['note']}"]
    return "\n".join(lines) + "\n"


def _baseline(path: Path) -> dict:
    data = json.loads(path.read_text())
    s = summarise(data)
    values = {"training": s["totals"][TRAINING]["cycles"], "evaluation": s["totals"][EVALUATION]["cycles"],
              "epoch": s["epoch_cycles"]["cycles"]}
    return {"label": data.get("label", path.stem), "path": os.path.relpath(path, ROOT), "value": values.__getitem__,
            "note": data.get("note", "")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", choices=sorted(CORE_PRESETS), default="ulx3s")
    parser.add_argument("--batches", type=int, default=1, metavar="N", help="training steps of 32 (default 1)")
    parser.add_argument("--torch-repeats", type=int, default=3, metavar="N")
    parser.add_argument("--baseline", type=Path, nargs="*", default=[], metavar="PATH",
                        help="earlier reports of this bench, shown beside")
    parser.add_argument("--label", default=None, help="this run's name where it serves as a baseline")
    parser.add_argument("--note", default="", help="what this run's core is, where it serves as a baseline")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="STEM")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.torch_repeats < 1:
        parser.error("--batches and --torch-repeats must be >= 1")
    import torch
    torch.set_num_threads(1)  # as every dorefa command by default
    try:
        board_report(args.board)
    except ValueError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    result = measure(args.board, args.batches, args.torch_repeats)
    result["command"] = " ".join(["python bench/core_cycles.py", *(argv if argv is not None else sys.argv[1:])])
    if args.label:
        result["label"] = args.label
    result["note"] = args.note
    write_report(args.out, result, table(result, [_baseline(p) for p in args.baseline]))


if __name__ == "__main__":
    main()
