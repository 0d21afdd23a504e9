"""The simulated board against the cocotb bridge, and a digits epoch on it (issue 11's figures).

Run in one go on one machine, every figure beside its baseline:

1. **First build** of the simulated board (:func:`sim.verilator_harness.build_harness`
   into an empty folder): wall seconds.
2. **The same GEMM** (``--vectors`` vectors against a 32 x 144 matrix, W,A = 1,2: the
   digits net's second conv) on :class:`sim.verilator_bridge.CocotbBridge` (cocotb,
   Verilator) and :class:`sim.verilator_bridge.VerilatorBridge` (the C++ loop), the
   latter twice: on the bare core (``bare=True``, the baseline) and behind
   :class:`sim.harness_top.HarnessTop` (what ``--backend sim`` runs); all on the ``sim``
   backend's core: wall time, and the cycles and bytes each bridge counted itself
   (:meth:`~sim.verilator_bridge.CoreBridge.stats`), hence simulated cycles per wall
   second, end to end (host driver and pty included) and, for the native bridges, per
   second spent in the model.
3. **The same training steps** (``--steps`` steps of 32 samples of the quarter-width
   digits net, W,A,G = 1,2,4, no evaluation) on the three: wall time, cycles, cycles/s.
4. **One digits training epoch plus evaluation** (1,437 training samples, 360 test
   samples, batch 32, W,A,G = 1,2,4) at ``--width 0.25`` and ``1`` on ``--backend sim``,
   beside ``--backend ref`` and ``--backend torch`` for the same epoch: wall seconds
   (and the cycles of the sim runs).

Usage::

    python -m bench.sim_bridge [--vectors 512] [--steps 4] [--skip-full-width]

writes ``bench/reports/sim_bridge.{json,md}`` and prints the table.  The bridges'
Verilator builds are made (and cached) before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from sim.transports import SIM_CORE, SIM_TIMEOUT_S
from sim.verilator_bridge import CocotbBridge, SimulatedSerialTransport, VerilatorBridge
from sim.verilator_harness import build_harness
from sw.bitplanes import signed_matmul
from sw.driver import CoreClient, SerialTransport
from sw.train import TrainConfig, train

REPORTS = Path(__file__).resolve().parent / "reports"
#: The bridges compared, by name: the cocotb one, and the C++ loop on the bare core and
#: behind :class:`sim.harness_top.HarnessTop`.
BRIDGES = {"cocotb": CocotbBridge, "bare": partial(VerilatorBridge, bare=True), "native": VerilatorBridge}
BITS = (1, 2, 4)


def first_build() -> float:
    """Seconds to build the simulated board from nothing (an empty build folder)."""
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        build_harness(SIM_CORE, build_root=root)
        return time.perf_counter() - started


def gemm(bridge: str, vectors: int) -> dict:
    """One GEMM over the pty of bridge ``bridge`` (a name in :data:`BRIDGES`): wall time and
    what the bridge counted."""
    rng = np.random.default_rng(0)
    rows, cols, m_bits, v_bits = 32, 144, 1, 2
    v = rng.integers(0, 1 << v_bits, (vectors, cols))
    m = rng.integers(0, 1 << m_bits, (rows, cols))
    with BRIDGES[bridge](SIM_CORE) as served:
        client = CoreClient(SerialTransport(served.device, timeout=SIM_TIMEOUT_S), timeout=SIM_TIMEOUT_S)
        try:
            client.ping()
            before = served.stats()
            started = time.perf_counter()
            out = client.matmul(v, v_bits, False, m, m_bits, True)
            seconds = time.perf_counter() - started
            after = served.stats()
        finally:
            client.close()
    if not np.array_equal(out, signed_matmul(v, None, v_bits, m, (1 << m_bits) - 1, m_bits)):
        raise AssertionError(f"the {bridge} bridge's GEMM differs from signed_matmul")
    return {"vectors": vectors, "rows": rows, "cols": cols, "m_bits": m_bits, "v_bits": v_bits,
            "seconds": seconds, **_counted(before, after, seconds)}


def _counted(before: dict, after: dict, seconds: float) -> dict:
    cycles = after["cycles"] - before["cycles"]
    result = {"cycles": cycles, "bytes_in": after["bytes_in"] - before["bytes_in"],
              "bytes_out": after["bytes_out"] - before["bytes_out"], "cycles_per_s": cycles / seconds}
    if after.get("simulating_s") is not None:
        simulating = after["simulating_s"] - before["simulating_s"]
        result.update(simulating_s=simulating, model_cycles_per_s=cycles / simulating)
    return result


class _CountingTransport(SimulatedSerialTransport):
    """The sim backend's transport on a chosen bridge, keeping the bridge's counts at close
    (``counts``: before, after, and the seconds the link was open)."""

    def __init__(self, bridge_class):
        super().__init__(SIM_CORE, timeout=SIM_TIMEOUT_S, bridge=bridge_class)
        self.started = self.bridge.stats()
        self.opened = time.perf_counter()

    def close(self) -> None:
        if self.bridge.process is not None and self.bridge.process.poll() is None:
            self.counts = {"before": self.started, "after": self.bridge.stats(),
                           "seconds": time.perf_counter() - self.opened}
        super().close()


def training(backend: str, *, width: float, train_limit: int | None, test_limit: int | None,
             bridge: str = "native") -> dict:
    """Wall time of one epoch of the digits net on ``backend`` (for sim, on bridge ``bridge``,
    a name in :data:`BRIDGES`, with its counts)."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(bits=BITS, width=width, epochs=1, batch_size=32, seed=0, train_limit=train_limit,
                             test_limit=test_limit, out=out, backend=backend)
        opened = []

        def opener(spec):
            opened.append(_CountingTransport(BRIDGES[bridge]))
            return opened[-1]
        started = time.perf_counter()
        result = train(config, progress=False, log=lambda line: None,
                       open_transport=opener if backend == "sim" else None)
        seconds = time.perf_counter() - started
    row = {"backend": backend, "width": width, "seconds": seconds, "test_acc": result.test_acc,
           "train_samples": train_limit or 1437, "test_samples": test_limit or 360}
    if backend == "sim":
        (transport,) = opened
        counts = transport.counts
        # Cycles per second while the link was open (the bridge's start-up excluded).
        row.update(bridge=bridge, linked_s=counts["seconds"],
                   **_counted(counts["before"], counts["after"], counts["seconds"]))
    return row


def measure(vectors: int, steps: int, full_width: bool) -> dict:
    # Builds first (cached), so that no timing below includes one.
    build_s = first_build()
    for bridge_class in BRIDGES.values():
        with bridge_class(SIM_CORE):
            pass
    gemms = {name: gemm(name, vectors) for name in BRIDGES}
    steps_rows = {name: training("sim", width=0.25, train_limit=32 * steps, test_limit=1, bridge=name)
                  for name in BRIDGES}
    epochs = []
    for width in (0.25, 1.0) if full_width else (0.25,):
        epochs.append(training("sim", width=width, train_limit=None, test_limit=None))
        for backend in ("ref", "torch"):
            epochs.append(training(backend, width=width, train_limit=None, test_limit=None))
    return {"core": SIM_CORE, "first_build_s": build_s, "gemm": gemms, "steps": steps,
            "training_steps": steps_rows, "epochs": epochs,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}


#: How each bridge is named in the tables.
LABELS = {"cocotb": "cocotb bridge", "bare": "native bridge, bare core", "native": "native bridge (HarnessTop)"}


def _ratios(rows: dict, columns: int) -> list[str]:
    """The ratio rows of a table: the native bridge's end-to-end cycles/s over the others'."""
    pad = "| " * (columns - 2)
    return [f"| **native / {name}** {pad}| **{rows['native']['cycles_per_s'] / rows[name]['cycles_per_s']:.2f}x** |"
            for name in BRIDGES if name != "native"]


def table(result: dict) -> str:
    g, s = result["gemm"], result["training_steps"]
    n = g["native"]

    def model(r):
        return f"{r['model_cycles_per_s'] / 1e6:.2f} M" if "model_cycles_per_s" in r else "-"
    lines = [
        f"Simulated board (`sim.transports.SIM_CORE`: {result['core']}); {result['machine']}. "
        f"Cycles and bytes as counted by each bridge.",
        "",
        f"First build of the simulated board (Verilator + C++ loop, empty folder): {result['first_build_s']:.0f} s.",
        "",
        f"| GEMM {n['vectors']} x {n['cols']} against {n['rows']} x {n['cols']} (W,A = {n['m_bits']},{n['v_bits']}) "
        f"| seconds | cycles | bytes in / out | cycles/s in the model | cycles/s end to end |",
        "|---|---|---|---|---|---|",
    ]
    for name in BRIDGES:
        r = g[name]
        lines.append(f"| {LABELS[name]} | {r['seconds']:.2f} | {r['cycles']} | {r['bytes_in']} / {r['bytes_out']} "
                     f"| {model(r)} | {r['cycles_per_s'] / 1e6:.3f} M |")
    lines += [*_ratios(g, 6), "",
              f"| {result['steps']} training steps (32 samples, width 0.25, W,A,G = 1,2,4) | seconds | cycles "
              f"| cycles/s in the model | cycles/s end to end |", "|---|---|---|---|---|"]
    for name in BRIDGES:
        r = s[name]
        lines.append(f"| {LABELS[name]} | {r['seconds']:.1f} | {r['cycles']} | {model(r)} "
                     f"| {r['cycles_per_s'] / 1e6:.3f} M |")
    lines += [*_ratios(s, 5), "",
              "| one digits epoch + evaluation (1,437 + 360 samples, batch 32, W,A,G = 1,2,4) | width "
              "| seconds | test accuracy | cycles |", "|---|---|---|---|---|"]
    for r in result["epochs"]:
        cycles = str(r["cycles"]) if "cycles" in r else "-"
        lines.append(f"| `--backend {r['backend']}` | {r['width']} | {r['seconds']:.1f} | {r['test_acc']:.2%} "
                     f"| {cycles} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--skip-full-width", action="store_true", help="only the quarter-width epoch")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)  # as every dorefa command
    result = measure(args.vectors, args.steps, not args.skip_full_width)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "sim_bridge.json").write_text(json.dumps(result, indent=2) + "\n")
    (REPORTS / "sim_bridge.md").write_text(table(result))
    print(table(result), end="")


if __name__ == "__main__":
    main()
