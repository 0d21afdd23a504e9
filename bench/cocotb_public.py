"""What making only the top module public saves the cocotb Verilator models (issue 11, item 2).

cocotb's runner builds Verilator models with ``--public-flat-rw``: every signal
of the design stays visible to VPI, which keeps Verilator from optimising it.
``sim.cocotb_runner`` now makes only the top module's signals public
(``PUBLIC_TOP_ONLY``), which is all the benches and the cocotb bridge read.
This runs the same GEMM (``--vectors`` vectors, a 32 x 144 matrix, W,A = 1,2)
on :class:`sim.verilator_bridge.CocotbBridge` under Verilator built both ways
(``DOREFA_VERILATOR_PUBLIC=all`` is cocotb's default), and one cocotb bench
(the core's, ``tb/test_core_tb.py``'s small Verilator case), and reports wall
times, the bridge's counted cycles per second and the ratios.

Usage::

    python -m bench.cocotb_public [--vectors 512]

writes ``bench/reports/cocotb_public.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPORTS = Path(__file__).resolve().parent / "reports"
ROOT = Path(__file__).resolve().parent.parent
MODES = {"all": "every signal (cocotb's default)", "top": "the top module only"}

_GEMM = """
import json, sys, time
import numpy as np
from sim.transports import SIM_CORE
from sim.verilator_bridge import CocotbBridge
from sw.driver import CoreClient, SerialTransport
vectors = int(sys.argv[1])
rng = np.random.default_rng(0)
v, m = rng.integers(0, 4, (vectors, 144)), rng.integers(0, 2, (32, 144))
started = time.perf_counter()
with CocotbBridge(SIM_CORE, log=lambda line: None) as bridge:
    built = time.perf_counter() - started
    client = CoreClient(SerialTransport(bridge.device, timeout=600), timeout=600)
    client.ping()
    before = bridge.stats()
    t = time.perf_counter()
    client.matmul(v, 2, False, m, 1, True)
    seconds = time.perf_counter() - t
    cycles = bridge.stats()["cycles"] - before["cycles"]
    client.close()
print(json.dumps({"start_s": built, "gemm_s": seconds, "cycles": cycles, "cycles_per_s": cycles / seconds}))
"""


def run(mode: str, vectors: int) -> dict:
    env = dict(os.environ, DOREFA_VERILATOR_PUBLIC=mode, PYTHONPATH=str(ROOT))
    gemm = subprocess.run([sys.executable, "-c", _GEMM, str(vectors)], env=env, cwd=ROOT, check=True,
                          capture_output=True, text=True)
    row = json.loads(gemm.stdout.strip().splitlines()[-1])
    started = time.perf_counter()  # the build is cached by now (the bridge made it)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                    "tb/test_core_tb.py", "-k", "verilator and not slow"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    row["core_bench_s"] = time.perf_counter() - started
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=512)
    args = parser.parse_args(argv)
    for mode in MODES:  # builds first, so that the timed runs below find them cached
        run(mode, 8)
    rows = {mode: run(mode, args.vectors) for mode in MODES}
    result = {"vectors": args.vectors, "rows": rows,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}
    lines = [f"cocotb's Verilator models, public signals: {result['machine']}.", "",
             f"| public | cocotb bridge GEMM ({args.vectors} x 144 against 32 x 144) | cycles/s | "
             f"core cocotb bench (small, Verilator) |", "|---|---|---|---|"]
    for mode, r in rows.items():
        lines.append(f"| {MODES[mode]} | {r['gemm_s']:.2f} s | {r['cycles_per_s'] / 1e3:.0f} k | "
                     f"{r['core_bench_s']:.1f} s |")
    speed = rows["top"]["cycles_per_s"] / rows["all"]["cycles_per_s"]
    bench = rows["all"]["core_bench_s"] / rows["top"]["core_bench_s"]
    lines += [f"| **ratio** | | **{speed:.2f}x** | **{bench:.2f}x** |", ""]
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "cocotb_public.json").write_text(json.dumps(result, indent=2) + "\n")
    (REPORTS / "cocotb_public.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
