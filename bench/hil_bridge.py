"""Speed of the simulated core behind its pty (``--backend sim``): round trips, GEMM throughput.

Starts a :class:`sim.verilator_bridge.VerilatorBridge` on the ``sim``
backend's core (:data:`sim.transports.SIM_CORE`: the default core's array) and
drives it through :class:`sw.driver.SerialTransport`, as training does:

* PING round trip (host -> tty -> simulation -> tty -> host);
* one GEMM of ``--vectors`` vectors against a 32 x 144 matrix (the shape of
  the digits net's second conv, W,A = 1,2): wall time, host requests, bytes
  each way, and the cycles the bridge simulated for it (counted by the
  bridge, :meth:`sim.verilator_bridge.CoreBridge.stats`; the compute alone,
  :meth:`hw.core.TrainingCore.run_cycles`, is its lower bound), hence
  simulated cycles per wall second;
* the same GEMM through the activation stage (thresholds for 2-bit
  activations loaded with the matrix, codes back instead of int32
  accumulators): wall time and bytes, and for both the time the bytes alone
  would take on a board's 115,200-baud UART (10 bits a byte).

Usage::

    python -m bench.hil_bridge [--vectors 512] [--pings 200]

writes ``bench/reports/hil_bridge.{json,md}`` and prints the table.  The
first run includes the Verilator build of the core (cached afterwards);
the numbers exclude it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from hw.core import TrainingCore
from sim.verilator_bridge import VerilatorBridge
from sim.transports import SIM_CORE
from sw.bitplanes import signed_matmul
from sw.driver import CoreClient, SerialTransport

REPORTS = Path(__file__).resolve().parent / "reports"


def measure(vectors: int, pings: int) -> dict:
    started = time.perf_counter()
    with VerilatorBridge(SIM_CORE) as bridge:
        startup = time.perf_counter() - started
        client = CoreClient(SerialTransport(bridge.device, timeout=60.0), timeout=60.0)
        try:
            client.ping()
            t = time.perf_counter()
            for _ in range(pings):
                client.ping()
            rtt = (time.perf_counter() - t) / pings

            rng = np.random.default_rng(0)
            rows, cols, m_bits, v_bits = 32, 144, 1, 2
            v = rng.integers(0, 1 << v_bits, (vectors, cols))
            m = rng.integers(0, 1 << m_bits, (rows, cols))
            before = dict(client.stats)
            counted = bridge.stats()
            t = time.perf_counter()
            out = client.matmul(v, v_bits, False, m, m_bits, True)
            seconds = time.perf_counter() - t
            cycles = bridge.stats()["cycles"] - counted["cycles"]
            if not np.array_equal(out, signed_matmul(v, None, v_bits, m, (1 << m_bits) - 1, m_bits)):
                raise AssertionError("the simulated core's GEMM differs from signed_matmul")
            stats = {k: client.stats[k] - before[k] for k in ("requests", "bytes_out", "bytes_in")}

            act_bits = 2
            thresholds = np.sort(rng.integers(out.min(), out.max() + 1, (rows, (1 << act_bits) - 1)), axis=1)
            direction = np.ones(rows, dtype=np.int64)
            before = dict(client.stats)
            t = time.perf_counter()
            codes = client.activations(v, v_bits, False, m, m_bits, True, thresholds, direction, act_bits)
            act_seconds = time.perf_counter() - t
            if not np.array_equal(codes, (out[:, :, None] >= thresholds[None]).sum(axis=2)):
                raise AssertionError("the simulated core's activation codes differ from the thresholds passed")
            act_stats = {k: client.stats[k] - before[k] for k in ("requests", "bytes_out", "bytes_in")}
        finally:
            client.close()
    compute = TrainingCore(**SIM_CORE).run_cycles(vectors, rows, cols, m_bits, v_bits)
    return {
        "core": SIM_CORE, "startup_s": startup, "ping_rtt_ms": rtt * 1e3,
        "gemm": {"vectors": vectors, "rows": rows, "cols": cols, "m_bits": m_bits, "v_bits": v_bits,
                 "seconds": seconds, **stats, "compute_cycles": compute, "cycles": cycles,
                 "cycles_per_s": cycles / seconds, "vectors_per_s": vectors / seconds,
                 "uart_s": _uart_seconds(stats)},
        "activated": {"act_bits": act_bits, "seconds": act_seconds, **act_stats,
                      "vectors_per_s": vectors / act_seconds, "uart_s": _uart_seconds(act_stats)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def _uart_seconds(stats: dict, baud: int = 115200) -> float:
    """Seconds the request and reply bytes take on an 8N1 UART (10 bits a byte)."""
    return 10 * (stats["bytes_out"] + stats["bytes_in"]) / baud


def table(result: dict) -> str:
    g, a = result["gemm"], result["activated"]
    return "\n".join([
        f"Simulated core (`sim.transports.SIM_CORE`: {result['core']}) behind a pty, Verilator with its C++ loop; "
        f"{result['machine']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| bridge start (build cached) | {result['startup_s']:.1f} s |",
        f"| PING round trip | {result['ping_rtt_ms']:.2f} ms |",
        f"| GEMM {g['vectors']} x {g['cols']} against {g['rows']} x {g['cols']} (W,A = {g['m_bits']},{g['v_bits']}) "
        f"| {g['seconds']:.2f} s, {g['requests']} requests, {g['bytes_out']} B out, {g['bytes_in']} B in |",
        f"| simulated cycles (counted by the bridge) | {g['cycles']} ({g['compute_cycles']} of them compute) |",
        f"| simulated cycles per second | {g['cycles_per_s'] / 1e3:.0f} k |",
        f"| vectors per second | {g['vectors_per_s']:.0f} |",
        f"| the same bytes on a 115,200-baud UART | {g['uart_s']:.1f} s |",
        f"| same GEMM, thresholds on the core ({a['act_bits']}-bit codes back) "
        f"| {a['seconds']:.2f} s, {a['requests']} requests, {a['bytes_out']} B out, {a['bytes_in']} B in |",
        f"| ... vectors per second | {a['vectors_per_s']:.0f} |",
        f"| ... the same bytes on a 115,200-baud UART | {a['uart_s']:.1f} s |",
        "",
    ])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=512)
    parser.add_argument("--pings", type=int, default=200)
    args = parser.parse_args(argv)
    result = measure(args.vectors, args.pings)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "hil_bridge.json").write_text(json.dumps(result, indent=2) + "\n")
    (REPORTS / "hil_bridge.md").write_text(table(result))
    print(table(result), end="")


if __name__ == "__main__":
    main()
