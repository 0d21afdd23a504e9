"""Bytes on the host link per training and per evaluation sample, and one digits epoch's link time.

The digits net at W,A,G = 1,2,6, batch 32, at full width and at width 0.25,
is trained through a :class:`sw.driver.CoreClient` on the ``model`` backend
(:class:`sw.core_model.CoreModel` with the ULX3S core's link limits,
:data:`sw.contract.core.LARGE_LIMITS`: a 64 x 1,024 matrix, 4 KiB frames, and
batch sums, backward-weight summed over the batch on the core), and
every frame that crosses the link is counted, whole (sync, header, payload,
CRC), by the product it serves (forward, backward-input, backward-weight;
the evaluation's products apart) and by direction (to the core: requests; from
the core: replies).  PING and RESET, once per session, are counted apart.
The frames of a batch depend only on its size (the net's shapes and the link's
limits), so ``--batches N`` (default :data:`DEFAULT_BATCHES`) records the
first ``N`` batches of 32, checks that they crossed the same bytes, and scales
to the epoch (44 batches of 32 and one of 29); the last batch and the 360
test samples are always recorded whole.

Link time = bytes x 10 / baud (8N1: a start and a stop bit per byte), at the
boards' 115,200 baud and at 3 Mbaud (the fastest both boards' USB-UARTs run).

Beside each figure, the baselines: this bench's committed measurements of
protocol 2 (``bench/reports/link_bytes.protocol2.json``: int32 accumulators,
im2col patches from the host, per-sample backward-weight partial sums), the
starting point of the link's issue, and of protocol 4
(``bench/reports/link_bytes.protocol4.json``: narrow accumulators, batch sums
on the core, the patches still sent by the host), the figures before the
core made the patches from feature maps (protocol 5's windows,
:mod:`sw.core_engine`), and of protocol 6
(``bench/reports/link_bytes.protocol6.json``: packed accumulators, 16,384
sums), the figures before the core max-pooled (protocol 7), and of protocol 7
(``bench/reports/link_bytes.protocol7.json``: each gradient map crossing
twice), the figures before backward-weight's matrix was made on the core from
backward-input's map (protocol 8's windowed LOAD_MATRIX,
:meth:`sw.core_engine.CoreEngine.backward_products`).

Usage::

    python bench/link_bytes.py [--batches N] [--widths W ...] [--baseline PATH ...] [--out STEM]

writes ``bench/reports/link_bytes.{json,md}`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python bench/link_bytes.py`
    sys.path.insert(0, str(ROOT))

from bench.core_density import (BITS, EVALUATION, FROM_CORE, PRODUCTS, SESSION, TO_CORE,  # noqa: E402
                                record_epoch)
from bench.reporting import write_report  # noqa: E402
from boards.top import CORE_PRESETS  # noqa: E402
from sw.contract.core import config_params  # noqa: E402
from sw.contract.link import PROTOCOL_VERSION  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "reports" / "link_bytes"
DEFAULT_BASELINES = (ROOT / "bench" / "reports" / "link_bytes.protocol2.json",
                     ROOT / "bench" / "reports" / "link_bytes.protocol4.json",
                     ROOT / "bench" / "reports" / "link_bytes.protocol6.json",
                     ROOT / "bench" / "reports" / "link_bytes.protocol7.json")
DEFAULT_BATCHES = 2
#: What each committed baseline measured.
BASELINE_NOTES = {
    "protocol 2": "int32 accumulators, im2col patches from the host, per-sample backward-weight partial sums",
    "protocol 4": "accumulators as narrow as their bound, backward-weight summed on the core, "
                  "the patches still sent by the host",
    "protocol 6": "feature maps, packed accumulators, 16,384 batch sums, max-pool on the host",
    "protocol 7": "max-pool on the core, each gradient map crossing twice (backward-input's map, "
                  "backward-weight's matrix)",
}
WIDTHS = (1.0, 0.25)
BAUDS = (115_200, 3_000_000)
BITS_PER_BYTE = 10  # 8N1
DIRECTIONS = (TO_CORE, FROM_CORE)
#: The link's targets (issue 13), per sample at full width, and an epoch at 3 Mbaud.
TARGET_TRAIN_BYTES = 40_000
TARGET_EVAL_BYTES = 2_500
TARGET_EPOCH_S = 240.0


def link_seconds(n_bytes: int, baud: int) -> float:
    """Seconds ``n_bytes`` take on an 8N1 UART at ``baud``."""
    return n_bytes * BITS_PER_BYTE / baud


def epoch_bytes(recording: dict) -> dict:
    """The epoch's bytes ``{(product, direction): n}``: each batch size's bytes times its
    batches, the evaluation's under :data:`EVALUATION`, PING/RESET under :data:`SESSION`."""
    link = recording["link_bytes"]
    total: dict[tuple, int] = {}
    for size, batches in recording["batches"].items():
        for row in link["per_batch"][size]:
            key = (row["product"], row["direction"])
            total[key] = total.get(key, 0) + row["bytes"] * batches
    for part in ("evaluation", "session"):
        for row in link[part]:
            key = (EVALUATION if part == "evaluation" else SESSION, row["direction"])
            total[key] = total.get(key, 0) + row["bytes"]
    return total


def summarise(recording: dict) -> dict:
    """Per training sample by product and direction, per evaluation sample, and the epoch."""
    total = epoch_bytes(recording)
    train, test = recording["train_samples"], recording["test_samples"]
    rows = {product: {d: total.get((product, d), 0) / train for d in DIRECTIONS} for product in PRODUCTS}
    rows["training"] = {d: sum(rows[p][d] for p in PRODUCTS) for d in DIRECTIONS}
    rows[EVALUATION] = {d: total.get((EVALUATION, d), 0) / test for d in DIRECTIONS}
    epoch = sum(total.values())
    return {
        "width": recording["width"], "per_sample": rows,
        "training_bytes_per_sample": sum(rows["training"].values()),
        "evaluation_bytes_per_sample": sum(rows[EVALUATION].values()),
        "epoch_bytes": epoch, "session_bytes": sum(total.get((SESSION, d), 0) for d in DIRECTIONS),
        "epoch_link_s": {str(baud): link_seconds(epoch, baud) for baud in BAUDS},
        "train_samples": train, "test_samples": test, "batches": recording["batches"],
        "recorded": recording["recorded"], "test_acc": recording["test_acc"],
    }


def _b(x: float) -> str:
    return f"{x:,.0f}"


def _t(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _against(measured: float, target: float) -> str:
    return "met" if measured <= target else f"{measured / target:.2f}x over"


def _baseline_row(baseline: dict, width: float) -> dict | None:
    return next((r for r in baseline["widths"] if r["width"] == width), None)


def _fewer(before: float, now: float) -> str:
    return f"{before / now:.2f}x" if now else "-"


def _beside(baselines, width: float, now: float, before) -> str:
    """The cells ``| before | fewer |`` of each baseline (``before(row)``: its figure)."""
    cells = ""
    for baseline in baselines:
        row = _baseline_row(baseline, width)
        old = before(row) if row else None
        cells += f" {_b(old) if old is not None else '-'} | {_fewer(old, now) if old is not None else '-'} |"
    return cells


def table(result: dict) -> str:
    """The report: per-sample bytes, the epoch and the targets, beside each of
    ``result["baselines"]`` (``{"name", "widths"}``, oldest first; none: no columns)."""
    baselines = result.get("baselines", [])
    lines = [
        "# Bytes on the host link",
        "",
        f"Written by `{result['command']}`. The digits net at W,A,G = {','.join(map(str, BITS))}, batch 32, "
        "trained on the `model` backend, whose core has the ULX3S core's link limits "
        f"({', '.join(f'{k} {v}' for k, v in result['link'].items())}): backward-weight is summed over "
        "the batch on the core (ACCUMULATE, READ_SUMS), and conv products send feature maps, the core "
        "making the patches (LOAD_FMAP, windowed RUN and ACCUMULATE) where that crosses fewer bytes; "
        "every frame counted whole "
        "(sync, header, payload, CRC). Link time = bytes x 10 / baud (8N1)."
        + (" Beside the figures, this bench's committed reports of earlier protocols "
           "(`bench/reports/link_bytes.protocolN.json`): " + "; ".join(
               f"{b['name']}, {BASELINE_NOTES.get(b['name'], 'an earlier report')}" for b in baselines) + "."
           if baselines else ""),
        "",
        "## Bytes per sample",
        "",
        "| width | product | to core | from core | total |" + "".join(f" {b['name']} | fewer |" for b in baselines),
        "|---|---|---:|---:|---:|" + "---:|---:|" * len(baselines),
    ]
    for row in result["widths"]:
        for product in (*PRODUCTS, "training", EVALUATION):
            cells = row["per_sample"][product]
            name = {"training": "**training, per sample**",
                    EVALUATION: "**evaluation, per test sample**"}.get(product, product)
            total = cells[TO_CORE] + cells[FROM_CORE]
            lines.append(f"| {row['width']:g} | {name} | {_b(cells[TO_CORE])} | {_b(cells[FROM_CORE])} | "
                         f"{_b(total)} |" + _beside(baselines, row["width"], total,
                                                    lambda old: sum(old["per_sample"][product].values())))
    lines += [
        "",
        "## One digits epoch (1,437 training + 360 test samples)",
        "",
        "| width | bytes | at 115,200 baud | at 3 Mbaud |" + "".join(f" {b['name']} bytes | fewer |"
                                                              for b in baselines),
        "|---|---:|---:|---:|" + "---:|---:|" * len(baselines),
    ]
    for row in result["widths"]:
        lines.append(f"| {row['width']:g} | {_b(row['epoch_bytes'])} | {_t(row['epoch_link_s'][str(BAUDS[0])])} | "
                     f"{_t(row['epoch_link_s'][str(BAUDS[1])])} |"
                     + _beside(baselines, row["width"], row["epoch_bytes"], lambda old: old["epoch_bytes"]))
    full = next((r for r in result["widths"] if r["width"] == 1.0), None)
    if full is not None:
        lines += [
            "",
            "## Against the targets (full width)",
            "",
            "| | measured | target | |",
            "|---|---:|---:|---|",
            f"| bytes per training sample | {_b(full['training_bytes_per_sample'])} | <= {_b(TARGET_TRAIN_BYTES)} | "
            f"{_against(full['training_bytes_per_sample'], TARGET_TRAIN_BYTES)} |",
            f"| bytes per evaluation sample | {_b(full['evaluation_bytes_per_sample'])} | <= {_b(TARGET_EVAL_BYTES)} | "
            f"{_against(full['evaluation_bytes_per_sample'], TARGET_EVAL_BYTES)} |",
            f"| epoch link time at 3 Mbaud | {_t(full['epoch_link_s'][str(BAUDS[1])])} | <= {_t(TARGET_EPOCH_S)} | "
            f"{_against(full['epoch_link_s'][str(BAUDS[1])], TARGET_EPOCH_S)} |",
        ]
    recorded = "; ".join(f"width {r['width']:g}: batches of 32 recorded {r['recorded'].get('32', 0)} of "
                         f"{r['batches'].get('32', 0)} (the same bytes each: checked)" for r in result["widths"])
    lines += ["", f"{recorded}; the last batch and the evaluation recorded whole. PING and RESET "
              f"(once per session, {_b(result['widths'][0]['session_bytes'])} bytes) are in the epoch's "
              f"bytes, not in the per-sample figures. Host: {result['machine']}."]
    return "\n".join(lines) + "\n"


#: The core measured: the ULX3S's (what its PING reports; the ``model`` backend's core has
#: the same link limits, LARGE_LIMITS, so the same bytes).
LINK = config_params(CORE_PRESETS["ulx3s"])


def measure(widths, batches: int | None, log=print) -> dict:
    rows = []
    for width in widths:
        log(f"recording the link's bytes of one digits epoch at width {width:g} ...")
        rows.append(summarise(record_epoch(dict(LINK), batches, log=log, width=width)))
    return {"link": dict(LINK), "protocol": PROTOCOL_VERSION, "widths": rows,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES, metavar="N",
                        help=f"batches of 32 recorded and scaled to the epoch (default {DEFAULT_BATCHES}; "
                             "0: every batch)")
    parser.add_argument("--widths", type=float, nargs="+", default=list(WIDTHS), metavar="W",
                        help="channel-width multipliers of the digits net (default: 1 and 0.25)")
    parser.add_argument("--baseline", type=Path, action="append", metavar="PATH",
                        help="an earlier report's JSON shown beside the figures, oldest first (repeatable; "
                             "default: protocol 2's, 4's, 6's and 7's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="STEM",
                        help="write STEM.json and STEM.md (default: bench/reports/link_bytes)")
    args = parser.parse_args(argv)
    if args.batches < 0:
        parser.error("--batches must be >= 0")
    import torch
    torch.set_num_threads(1)
    baselines = []
    for path in args.baseline or DEFAULT_BASELINES:
        try:
            baseline = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            parser.error(f"cannot read the baseline report {path}: {e}")
        baselines.append({"name": f"protocol {baseline.get('protocol', 2)}", "widths": baseline["widths"]})
    result = measure(args.widths, args.batches or None)
    result["baselines"] = baselines
    result["command"] = " ".join(["python bench/link_bytes.py", *(argv if argv is not None else sys.argv[1:])])
    write_report(args.out, result, table(result))


if __name__ == "__main__":
    main()
