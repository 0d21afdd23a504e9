"""Compute density of the training core: resources, ops per LUT, utilisation on the digits net.

For each core configuration of :data:`CONFIGS` (a small core, the iCEBreaker's,
the ULX3S's), in one run (one op = one AND+popcount bit pair, the performance
model of the design notes):

1. **Resources** from the board build's report (:class:`boards.build.Report`,
   the JSON of ``dorefa build --board B --report STEM``): LUT4s (ECP5) or logic
   cells (iCE40), flip-flops, block RAMs, SPRAMs, DSPs, Fmax.  By default the
   committed reports are read (``boards/reports/<board>.json`` for the boards'
   own cores, ``bench/reports/core_density.small.json`` for the small one);
   ``--reports DIR`` reads ``DIR/<config>.json`` instead, and ``--build`` first
   builds every configuration into ``DIR`` (default ``build/core_density``;
   a board's core takes minutes to tens of minutes).
2. **Peak**: ops per cycle (``core.ops_per_cycle`` where the core has it, else
   ``pe * simd``), ops per LUT4 / logic cell per cycle (the whole core: link and
   control included), GOPS at Fmax.
3. **Utilisation** of the digits net's three training products (forward,
   backward-input, backward-weight; W,A,G = 1,2,6, full width, batch 32, the
   data ``dorefa train`` uses by default): real training steps run through a
   :class:`sw.driver.CoreClient` over the ``model`` backend
   (:class:`sw.core_model.CoreModel`), and every RUN request the core executes
   is recorded (:class:`RecordingClient`: count, rows, cols, m_bits, v_bits,
   act_bits, which product).  Per RUN, useful ops = ``count * rows * cols *
   m_bits * v_bits`` and issued ops = ``core.run_cycles(count, rows, cols,
   m_bits, v_bits) * ops_per_cycle`` for the configuration's
   :class:`hw.core.TrainingCore`.
4. **One digits epoch** (1,437 training samples: 44 batches of 32 and one of
   29; then the 360 test samples, evaluated as ``dorefa train`` does, on the
   core's activation stage where a layer fits it): the core's compute time is
   the sum of ``run_cycles`` over the epoch's RUNs / Fmax.  Beside it, the
   host's own epoch with ``--backend torch`` on one thread (training +
   evaluation wall time, ``sw.train.train``), measured in the same run.

The RUNs of a batch depend only on its size (the shapes of the net, the
core's link limits), never on the data, so ``--batches N`` records only the
first ``N`` batches of 32 and counts each of the epoch's 44 as one of them;
the last batch (29 samples) and the evaluation are always recorded whole.  By
default every batch is recorded and the bench checks that all batches of a
size issued the same RUNs.  Configurations that differ only in
:data:`TIMING_ONLY` parameters (which the host never reads) share one
recording.

Usage::

    python bench/core_density.py [--quick | --batches N] [--reports DIR | --build [--reports DIR]]

writes ``bench/reports/core_density.{json,md}`` (``--out STEM`` elsewhere) and
prints the tables.  Refresh the small core's committed build report with
``python bench/core_density.py --build --configs small`` then
``cp build/core_density/small.json bench/reports/core_density.small.json``
(and ``.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python bench/core_density.py`
    sys.path.insert(0, str(ROOT))

from bench.reporting import write_report  # noqa: E402
from sw import protocol as P  # noqa: E402
from sw.contract.core import config_params  # noqa: E402
from sw.core_engine import CoreEngine  # noqa: E402
from sw.driver import CoreClient, LoopbackTransport  # noqa: E402

REPORTS = ROOT / "bench" / "reports"
BOARD_REPORTS = ROOT / "boards" / "reports"
DEFAULT_OUT = REPORTS / "core_density"
DEFAULT_BUILD_DIR = ROOT / "build" / "core_density"

BITS = (1, 2, 6)
PRODUCTS = ("forward", "backward-input", "backward-weight")
EVALUATION = "evaluation"
TO_CORE, FROM_CORE = "to core", "from core"
SESSION = "session"  # PING, RESET: once per link session
#: Core parameters that change only the gateware's timing: the host's requests
#: (and so the recorded RUNs) never depend on them.
TIMING_ONLY = ("pe", "simd")
QUICK_BATCHES = 2
#: Array shapes weighed on the recorded epoch by the exact cycle model alone (``run_cycles``,
#: no build) over the ULX3S's preset: ``(pe, vectors, simd, drains)``, each with a register
#: on every popcount level.  The digits net's products are short (16 to 1,024 columns) and
#: small (16 to 64 rows), and a wide ``simd`` pads them.
ARRAY_SHAPES = ((8, 4, 128, 8), (8, 8, 128, 8), (16, 4, 128, 8), (8, 8, 64, 8), (8, 16, 32, 8),
                (8, 32, 32, 8), (8, 32, 16, 8), (16, 16, 16, 16), (16, 16, 32, 16))
SWEPT_CONFIG = "ulx3s"


@dataclass(frozen=True)
class Config:
    """A core configuration: the board it is built for, its core parameters
    (``None``: the board's own core, as ``dorefa build --board B`` builds it)
    and the committed build report read by default."""
    name: str
    board: str
    core_params: dict | None
    report: Path
    note: str = ""


CONFIGS = (
    Config("small", "icebreaker", {"pe": 4, "simd": 8, "vectors": 1, "popcount_stages": 0},
           REPORTS / "core_density.small.json",
           "the default core's array (pe 4, simd 8: the previous core's 32 bit pairs per cycle), on the iCEBreaker"),
    Config("icebreaker", "icebreaker", None, BOARD_REPORTS / "icebreaker.json", "the iCEBreaker's core"),
    Config("ulx3s", "ulx3s", None, BOARD_REPORTS / "ulx3s.json", "the ULX3S's core"),
)


# --------------------------------------------------------------------------- recording the RUNs

class RecordingClient(CoreClient):
    """A :class:`~sw.driver.CoreClient` that records every RUN (and ACCUMULATE: a RUN
    whose values go into the batch sums) request the core executed (answered OK):
    ``runs[(batch, product, count, rows, cols, m_bits, v_bits, act_bits)]`` = number
    of such requests.  ``rows``, ``cols`` and
    ``m_bits`` are those of the matrix the core holds (the last LOAD_MATRIX with
    offset 0), ``act_bits`` the bits of its thresholds for an activated RUN,
    else 0.  ``batch`` and ``product`` are what the caller (and
    :class:`RecordingEngine`) set while the request is made."""

    def __init__(self, transport, *args, **kwargs):
        super().__init__(transport, *args, **kwargs)
        self.batch = None
        self.product = None
        self.runs: Counter = Counter()
        self._held = None       # (rows, cols, bits) of the matrix on the core
        self._held_act_bits = 0  # bits of its thresholds (0: none)
        #: Bytes on the link: ``link_bytes[(batch, product, direction)]``, direction
        #: ``"to core"`` (requests) or ``"from core"`` (replies), whole frames.
        self.link_bytes: Counter = Counter()

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        sent, received = self.stats["bytes_out"], self.stats["bytes_in"]
        reply = super().request(cmd, payload)  # raises unless the core executed it
        # PING and RESET happen once per session, whatever the batch: kept apart.
        batch, product = (SESSION, SESSION) if cmd in (P.Cmd.PING, P.Cmd.RESET) else (self.batch, self.product)
        self.link_bytes[(batch, product, TO_CORE)] += self.stats["bytes_out"] - sent
        self.link_bytes[(batch, product, FROM_CORE)] += self.stats["bytes_in"] - received
        if cmd in (P.Cmd.RUN, P.Cmd.ACCUMULATE):
            h = P.decode_run_header(payload) if cmd == P.Cmd.RUN else P.decode_accumulate_header(payload)
            rows, cols, m_bits = self._held
            act_bits = self._held_act_bits if cmd == P.Cmd.RUN and h.activate else 0
            self.runs[(self.batch, self.product, h.count, rows, cols, m_bits, h.bits, act_bits)] += 1
        elif cmd == P.Cmd.LOAD_MATRIX:
            h = P.decode_load_matrix_header(payload)
            if h.offset == 0:
                self._held, self._held_act_bits = (h.rows, h.cols, h.bits), 0
        elif cmd == P.Cmd.LOAD_THRESHOLDS:
            h = P.decode_load_thresholds_header(payload)
            if h.offset == 0:
                self._held_act_bits = h.bits
        elif cmd == P.Cmd.RESET:
            self._held, self._held_act_bits = None, 0
        return reply


class RecordingEngine(CoreEngine):
    """:class:`~sw.core_engine.CoreEngine` that tells its :class:`RecordingClient`
    which product each request belongs to."""

    @contextmanager
    def product(self, name):
        before, self.client.product = self.client.product, name
        try:
            yield
        finally:
            self.client.product = before

    def _as(self, product, method, *args):
        with self.product(product):
            return method(*args)

    def forward(self, *args):
        return self._as("forward", super().forward, *args)

    def forward_activations(self, *args):
        return self._as("forward", super().forward_activations, *args)

    def forward_pooled(self, *args):
        return self._as("forward", super().forward_pooled, *args)

    def backward_input(self, *args):
        return self._as("backward-input", super().backward_input, *args)

    def backward_weight(self, *args):
        return self._as("backward-weight", super().backward_weight, *args)

    def backward_weight_sum(self, *args):
        return self._as("backward-weight", super().backward_weight_sum, *args)

def model_params(core_params: dict) -> dict:
    """The parameters of ``core_params`` that :class:`sw.core_model.CoreModel` takes."""
    return config_params(core_params)


def link_key(core_params: dict) -> tuple:
    """What the recorded RUNs depend on: the model's parameters less :data:`TIMING_ONLY`."""
    return tuple(sorted((k, v) for k, v in model_params(core_params).items() if k not in TIMING_ONLY))


def batch_sizes(samples: int, batch_size: int) -> list[int]:
    """Sizes of the batches of an epoch of ``samples`` (the last one partial)."""
    return [min(batch_size, samples - start) for start in range(0, samples, batch_size)]


def _run_dicts(counter: Counter) -> list[dict]:
    keys = ("product", "count", "rows", "cols", "m_bits", "v_bits", "act_bits")
    return [dict(zip(keys, key), requests=n) for key, n in sorted(counter.items())]


def _byte_dicts(counter: Counter) -> list[dict]:
    return [{"product": product, "direction": direction, "bytes": n}
            for (product, direction), n in sorted(counter.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))]


def digits_session(width: float = 1.0):
    """``(config, data, model, optimizer, shuffle)``: the digits net at :data:`BITS` and
    ``width`` as ``dorefa train`` sets it up (its seed, gradient noise, Adam, the
    generator that shuffles its minibatches), before the first step; the caller
    gives the model an engine."""
    import torch

    from sw.data import load_dataset
    from sw.quantizers import GradientNoise
    from sw.train import TrainConfig, build_network, noise_seed

    config = TrainConfig(bits=BITS, backend="model", width=width)
    data = load_dataset(config.dataset, config.data)
    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    model = build_network(config, data)
    model.set_gradient_noise(GradientNoise(seed=noise_seed(config.seed)))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return config, data, model, optimizer, shuffle


def record_epoch(core_params: dict, batches: int | None = None, log=print, width: float = 1.0) -> dict:
    """The RUNs of one digits epoch (:data:`BITS`, ``width``, ``dorefa train``'s
    defaults) on the ``model`` backend of ``core_params``: the RUNs of one batch
    of each size, how many batches of each size the epoch has, and the
    evaluation's RUNs; the same for the bytes on the link by product and
    direction (``link_bytes``).  ``batches``: record only that many full
    batches (the last, smaller batch and the evaluation always)."""
    import torch.nn.functional as F

    from sw.core_model import CoreModel
    from sw.data import iterate_minibatches
    from sw.train import evaluate

    config, data, model, optimizer, shuffle = digits_session(width)
    client = RecordingClient(LoopbackTransport(CoreModel(**model_params(core_params))))
    engine = RecordingEngine(client)
    model.set_engine(engine)
    sizes = batch_sizes(data.train_x.shape[0], config.batch_size)
    started = time.perf_counter()
    model.train()
    recorded = []
    for index, (xb, yb) in enumerate(iterate_minibatches(data.train_x, data.train_y, config.batch_size,
                                                         shuffle=True, generator=shuffle)):
        if batches is not None and index >= batches and index != len(sizes) - 1:
            continue
        client.batch = index
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recorded.append(index)
        log(f"  batch {index + 1}/{len(sizes)} ({xb.shape[0]} samples) recorded, "
            f"{time.perf_counter() - started:.0f} s")
    client.batch = EVALUATION
    test = evaluate(model, data.test_x, data.test_y, engine=engine)
    seconds = time.perf_counter() - started
    engine.close()

    per_batch: dict[int, Counter] = {}
    for (batch, product, *rest), n in client.runs.items():
        if batch != EVALUATION:
            if product not in PRODUCTS:
                raise AssertionError(f"a RUN of batch {batch + 1} outside the engine's three products: {rest}")
            per_batch.setdefault(batch, Counter())[(product, *rest)] += n
    evaluation = Counter()
    for (batch, _, *rest), n in client.runs.items():
        if batch == EVALUATION:
            evaluation[(EVALUATION, *rest)] += n
    link_bytes: dict[int, Counter] = {}
    for (batch, product, direction), n in client.link_bytes.items():
        link_bytes.setdefault(batch, Counter())[(product, direction)] += n
    by_size: dict[int, Counter] = {}
    bytes_by_size: dict[int, Counter] = {}
    for index in recorded:
        runs, size = per_batch.get(index, Counter()), sizes[index]
        if size in by_size and (by_size[size], bytes_by_size[size]) != (runs, link_bytes.get(index)):
            raise AssertionError(f"batch {index + 1} ({size} samples) issued other RUNs or bytes than an "
                                 f"earlier batch of {size}: the epoch cannot be scaled from one batch")
        by_size[size], bytes_by_size[size] = runs, link_bytes.get(index, Counter())
    counts = Counter(sizes)
    return {
        "link": model_params(core_params),
        "train_samples": int(data.train_x.shape[0]), "test_samples": int(data.test_x.shape[0]),
        "batch_size": config.batch_size,
        "batches": {str(s): counts[s] for s in sorted(counts, reverse=True)},
        "recorded": {str(s): sum(sizes[i] == s for i in recorded) for s in sorted(counts, reverse=True)},
        "per_batch": {str(s): _run_dicts(by_size[s]) for s in sorted(by_size, reverse=True)},
        "evaluation": _run_dicts(evaluation),
        "link_bytes": {"per_batch": {str(s): _byte_dicts(bytes_by_size[s]) for s in sorted(by_size, reverse=True)},
                       "evaluation": _byte_dicts(link_bytes.get(EVALUATION, Counter())),
                       "session": _byte_dicts(link_bytes.get(SESSION, Counter()))},
        "width": width, "test_acc": test.accuracy, "record_s": seconds,
    }


# --------------------------------------------------------------------------- the arithmetic

def ops_per_cycle(core) -> int:
    """Bit pairs the core ANDs and popcounts per cycle at its peak."""
    return getattr(core, "ops_per_cycle", core.pe * core.simd)


def useful_ops(run: dict) -> int:
    """Bit pairs one RUN request really needs: ``count * rows * cols * m_bits * v_bits``."""
    return run["count"] * run["rows"] * run["cols"] * run["m_bits"] * run["v_bits"]


def issued_cycles(core, run: dict) -> int:
    """Compute cycles the core spends on one RUN request (:meth:`hw.core.TrainingCore.run_cycles`)."""
    return core.run_cycles(run["count"], run["rows"], run["cols"], run["m_bits"], run["v_bits"])


def epoch_runs(recording: dict) -> list[dict]:
    """The RUNs of the whole epoch: each batch size's RUNs times the number of
    batches of that size, then the evaluation's (``requests`` scaled)."""
    runs = []
    for size, n in recording["batches"].items():
        runs += [dict(run, requests=run["requests"] * n) for run in recording["per_batch"][size]]
    return runs + [dict(run) for run in recording["evaluation"]]


def tally(runs: list[dict], core) -> dict:
    """Per product (and ``total`` over :data:`PRODUCTS`): RUN requests, vectors,
    useful ops, issued cycles, issued ops and useful / issued."""
    ops = ops_per_cycle(core)
    rows = {}
    for run in runs:
        row = rows.setdefault(run["product"], {"requests": 0, "vectors": 0, "useful_ops": 0, "cycles": 0})
        n = run["requests"]
        row["requests"] += n
        row["vectors"] += n * run["count"]
        row["useful_ops"] += n * useful_ops(run)
        row["cycles"] += n * issued_cycles(core, run)
    total = {"requests": 0, "vectors": 0, "useful_ops": 0, "cycles": 0}
    for product in PRODUCTS:
        for k in total:
            total[k] += rows.get(product, {}).get(k, 0)
    rows["total"] = total
    for row in rows.values():
        row["issued_ops"] = row["cycles"] * ops
        row["utilisation"] = row["useful_ops"] / row["issued_ops"] if row["issued_ops"] else float("nan")
    return rows


def _used(pair) -> int | None:
    return None if pair is None else int(pair[0])


def core_clocks(report: dict) -> list[dict]:
    """The report's clocks of the core's ``sync`` domain (``cd_sync.clk``,
    ``$glbnet$cd_sync.clk``); all of them if none is named so."""
    return [c for c in report["clocks"] if "cd_sync" in c["name"]] or report["clocks"]


def density(report: dict, core) -> dict:
    """Resources of a build report and the core's peak: ops per cycle, ops per
    LUT4 (ECP5) / logic cell (iCE40) per cycle, GOPS at Fmax."""
    resources = report.get("resources", {})
    spram = report.get("spram")
    if spram is None and report["family"] == "ice40":
        spram = resources.get("ICESTORM_SPRAM")
    clocks = core_clocks(report)
    fmax = min(c["fmax_mhz"] for c in clocks)
    clock = min(c["constraint_mhz"] for c in clocks)
    ops = ops_per_cycle(core)
    luts = int(report["luts"][0])
    return {"lut_kind": "logic cells" if report["family"] == "ice40" else "LUT4",
            "luts": luts, "luts_available": int(report["luts"][1]), "ffs": report.get("ffs"),
            "bram": _used(report.get("bram")), "spram": _used(spram), "dsp": _used(report.get("dsp")),
            "fmax_mhz": fmax, "clock_mhz": clock, "timing_met": report.get("timing_met"),
            "ops_per_cycle": ops, "ops_per_lut_cycle": ops / luts, "gops": ops * fmax / 1e3}


def summarise(config_name: str, report: dict, core, recording: dict) -> dict:
    """One configuration's figures: :func:`density`, the training products'
    :func:`tally` over the epoch, the evaluation's, and the epoch's cycles and
    seconds at Fmax and at the board's clock."""
    peak = density(report, core)
    runs = epoch_runs(recording)
    training = tally([r for r in runs if r["product"] in PRODUCTS], core)
    evaluation = tally([r for r in runs if r["product"] == EVALUATION], core).get(EVALUATION)
    eval_cycles = evaluation["cycles"] if evaluation else 0
    cycles = training["total"]["cycles"] + eval_cycles
    batch = tally([r for r in recording["per_batch"][str(recording["batch_size"])]], core)
    return {
        "config": config_name, "board": report["board"], "device": report["device"],
        "core_params": report["core_params"], **peak,
        "products": {k: training[k] for k in (*PRODUCTS, "total") if k in training},
        "evaluation": evaluation,
        "epoch_cycles": {"training": training["total"]["cycles"], "evaluation": eval_cycles, "total": cycles},
        "epoch_s_at_fmax": cycles / (peak["fmax_mhz"] * 1e6),
        "epoch_s_at_clock": cycles / (peak["clock_mhz"] * 1e6),
        "useful_gops_training": (training["total"]["useful_ops"] / (training["total"]["cycles"] / peak["fmax_mhz"])
                                 / 1e3 if training["total"]["cycles"] else 0.0),
        "shapes": _shapes(recording["per_batch"][str(recording["batch_size"])], core),
        "batch_utilisation": batch["total"]["utilisation"],
    }


def _shapes(runs: list[dict], core) -> list[dict]:
    """The RUNs of one full batch by product and shape (requests and vectors summed),
    each with its utilisation on ``core``."""
    merged: dict[tuple, dict] = {}
    for run in runs:
        key = tuple(run[k] for k in ("product", "rows", "cols", "m_bits", "v_bits", "act_bits"))
        row = merged.setdefault(key, {"requests": 0, "vectors": 0, "useful_ops": 0, "cycles": 0})
        row["requests"] += run["requests"]
        row["vectors"] += run["requests"] * run["count"]
        row["useful_ops"] += run["requests"] * useful_ops(run)
        row["cycles"] += run["requests"] * issued_cycles(core, run)
    out = []
    for key in sorted(merged, key=lambda k: (PRODUCTS.index(k[0]) if k[0] in PRODUCTS else 9, *k[1:])):
        row = merged[key]
        out.append(dict(zip(("product", "rows", "cols", "m_bits", "v_bits", "act_bits"), key), **row,
                        utilisation=row["useful_ops"] / (row["cycles"] * ops_per_cycle(core))))
    return out


def shape_sweep(recording: dict, base_params: dict, shapes=ARRAY_SHAPES, make_core=None) -> list[dict]:
    """The epoch's training products (:func:`tally`) on the array of ``base_params`` (the
    built one, first) and each other shape of ``shapes`` (``(pe, vectors, simd, drains)``
    over ``base_params``, ``popcount_stages`` one per level of a ``simd``-bit tree): ops
    per cycle, compute cycles, useful / issued.  ``make_core(**params)`` makes the core
    (default :class:`hw.core.TrainingCore`)."""
    if make_core is None:
        from hw.core import TrainingCore as make_core
    runs = [r for r in epoch_runs(recording) if r["product"] in PRODUCTS]
    keys = ("pe", "vectors", "simd", "drains")
    built = tuple(base_params.get(k, 1) for k in keys)
    variants = [base_params] + [
        {**base_params, **dict(zip(keys, shape)), "popcount_stages": (shape[2] - 1).bit_length()}
        for shape in shapes if tuple(shape) != built]
    out = []
    for params in variants:
        core = make_core(**params)
        total = tally(runs, core)["total"]
        out.append({**{k: params.get(k, 1) for k in keys}, "built": params is base_params,
                    "ops_per_cycle": ops_per_cycle(core), "cycles": total["cycles"],
                    "utilisation": total["utilisation"]})
    return out


# --------------------------------------------------------------------------- builds and the host baseline

def build_report(config: Config, out_dir: Path) -> Path:
    """Build ``config`` with the board tools into ``out_dir/<name>/``; its report is ``out_dir/<name>.json``."""
    from boards.build import build
    build(config.board, out_dir / config.name, core_params=config.core_params,
          report_stem=out_dir / config.name)
    return out_dir / f"{config.name}.json"


def torch_epochs(repeats: int) -> dict:
    """Wall seconds of one digits epoch (training + evaluation) with ``--backend torch``
    as ``dorefa train`` runs it (``sw.train.train``), ``repeats`` times."""
    from sw.train import TrainConfig, train
    seconds, accuracy = [], None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            result = train(TrainConfig(bits=BITS, epochs=1, out=out, backend="torch"),
                           progress=False, log=lambda line: None)
        seconds.append(result.history[0]["seconds"])
        accuracy = result.history[0]["test_acc"]
    return {"seconds": seconds, "median_s": statistics.median(seconds), "test_acc": accuracy}


# --------------------------------------------------------------------------- the report

def _g(x: float) -> str:
    return f"{x / 1e9:,.3f} G"


def _failed(row: dict) -> str:
    """A mark for a build that did not close timing at the clock it was asked (its
    figures at that clock are not a board's)."""
    return ", timing failed" if row.get("timing_met") is False else ""


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def how_computed(rec: dict) -> str:
    """How the epoch's RUNs were counted from what was recorded."""
    parts = []
    for size, n in rec["batches"].items():
        got = rec["recorded"][size]
        if got == n == 1:
            parts.append(f"the batch of {size} recorded")
        elif got == n:
            parts.append(f"all {n} batches of {size} recorded (every one issued the same RUNs: checked)")
        else:
            parts.append(f"{got} of the {n} batches of {size} recorded "
                         f"({'the same RUNs: checked; ' if got > 1 else ''}a batch's RUNs depend on its size only), "
                         f"counted {n} times")
    return (f"Training: {rec['train_samples']:,} samples in batches of {rec['batch_size']}: "
            + "; ".join(parts) + f". Evaluation: all {rec['test_samples']} test samples recorded "
            "(`sw.train.evaluate` on the core engine, as `dorefa train` does after each epoch: "
            "thresholds on the core's activation stage where a layer's fan-in fits one matrix).")


def table(result: dict) -> str:
    rows = result["configs"]
    recordings = result["recordings"]
    rec = recordings[0]
    torch_row = result["torch_epoch"]
    dash = lambda v: "-" if v is None else str(v)  # noqa: E731
    lines = [
        "# Compute density of the training core",
        "",
        f"Written by `{result['command']}`. One op is one AND+popcount bit pair "
        "(a plane pair over `pe x vectors x simd` lanes is `pe*vectors*simd` ops); resources from the board build "
        "reports (the whole core: link and control included); cycles are "
        "`hw.core.TrainingCore.run_cycles` (the compute loop; unpacking and the link's bytes excluded).",
        "",
        "## Resources and peak",
        "",
        "| config | board | pe x vectors x simd | LUT4 / logic cells | FFs | BRAM | SPRAM | DSP | Fmax (clock) "
        "| ops / cycle | ops / LUT / cycle | GOPS at Fmax |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["core_params"]
        lines.append(
            f"| {r['config']} | {r['board']} ({r['device']}) | {p.get('pe')} x {p.get('vectors', 1)} x {p.get('simd')} "
            f"| {r['luts']} {r['lut_kind']} | {dash(r['ffs'])} | {dash(r['bram'])} | {dash(r['spram'])} "
            f"| {dash(r['dsp'])} | {r['fmax_mhz']:.1f} MHz ({r['clock_mhz']:.0f}{_failed(r)}) | {r['ops_per_cycle']} "
            f"| {r['ops_per_lut_cycle']:.5f} | {r['gops']:.3f} |")
    lines += ["", "Build reports: " + ", ".join(f"{name}: `{path}`" for name, path in result["reports"].items())
              + ". Core parameters (as built): " + "; ".join(
                  f"{r['config']}" + (f" ({r['note']})" if r.get("note") else "") + ": "
                  + " ".join(f"{k}={v}" for k, v in r["core_params"].items()) for r in rows)
              + ". BRAM counts the family's blocks: iCE40 EBR of 4 kbit, ECP5 DP16KD of 18 kbit."]
    lines += [
        "",
        f"## Utilisation: the digits net's training products over one epoch "
        f"(W,A,G = {','.join(map(str, BITS))}, full width, batch {rec['batch_size']})",
        "",
        "useful ops = count x rows x cols x m_bits x v_bits per RUN; issued ops = run_cycles x ops/cycle.",
        "",
        "| config | product | RUN requests | vectors | useful ops | issued ops | useful / issued |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for product, t in r["products"].items():
            util = f"{100 * t['utilisation']:.1f} %"
            if product == "total":
                product, util = "**total**", f"**{util}**"
            lines.append(f"| {r['config']} | {product} | {t['requests']:,} | {t['vectors']:,} | {_g(t['useful_ops'])} "
                         f"| {_g(t['issued_ops'])} | {util} |")
        e = r["evaluation"]
        if e:
            lines.append(f"| {r['config']} | evaluation (not in the total) | {e['requests']:,} | {e['vectors']:,} "
                         f"| {_g(e['useful_ops'])} | {_g(e['issued_ops'])} | {100 * e['utilisation']:.1f} % |")
    lines += [
        "",
        f"## One digits epoch ({rec['train_samples']:,} training + {rec['test_samples']} test samples)",
        "",
        "| config | training cycles | evaluation cycles | epoch at Fmax | at the board's clock "
        "| useful GOPS (training, at Fmax) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r["epoch_cycles"]
        lines.append(f"| {r['config']} | {c['training']:,} | {c['evaluation']:,} | {_time(r['epoch_s_at_fmax'])} "
                     f"| {_time(r['epoch_s_at_clock'])} ({r['clock_mhz']:.0f} MHz{_failed(r)}) "
                     f"| {r['useful_gops_training']:.3f} |")
    runs = torch_row["seconds"]
    timed = (f"median of {len(runs)}: " + ", ".join(f"{s:.2f}" for s in runs) + " s") if len(runs) > 1 else "one run"
    lines += [
        f"| host, `--backend torch`, 1 thread (wall time: training + evaluation; {timed}) "
        f"| | | {_time(torch_row['median_s'])} | | |",
        "",
        how_computed(rec) + " Core time = the sum of run_cycles over the epoch's RUNs / Fmax (compute "
        "only: the link's bytes, unpacking and the values' way out come on top; `bench/core_cycles.py` "
        "measures the whole core's cycles under Verilator). "
        + (f"The RUNs were recorded once for configurations that differ only in {', '.join(TIMING_ONLY)} "
           "and the parameters that shape only the gateware (`vectors`, the pipeline's stages): the host never "
           "reads them. " if len(recordings) < len(rows) else "")
        + f"Host: {result['machine']}.",
    ]
    sweep = result.get("sweep")
    if sweep:
        built = sweep["shapes"][0]
        lines += [
            "",
            f"## Array shapes for the {sweep['config']} core, on the same epoch (cycle model only)",
            "",
            f"The training products' compute cycles (`run_cycles`) on other arrays over the {sweep['config']} "
            "preset's parameters, a register on every popcount level; no build (area and Fmax unknown). "
            "A wide `simd` pads the digits net's short products (16 to 1,024 columns), and every tile "
            "pays the array's latency and its drain (`pe * vectors / drains` cycles a row group) once.",
            "",
            "| pe x vectors x simd | drains | ops / cycle | training cycles | useful / issued "
            "| cycles vs the built array |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in sweep["shapes"]:
            name = f"{r['pe']} x {r['vectors']} x {r['simd']}" + (" (built)" if r["built"] else "")
            lines.append(f"| {name} | {r['drains']} | {r['ops_per_cycle']:,} | {r['cycles']:,} "
                         f"| {100 * r['utilisation']:.1f} % | {r['cycles'] / built['cycles']:.2f}x |")
    for index, recording in enumerate(recordings):
        group = [r for r in rows if r["recording"] == index]
        lines += [
            "",
            f"## RUN shapes of one batch of {recording['batch_size']}"
            + (f" ({', '.join(r['config'] for r in group)})" if len(recordings) > 1 else ""),
            "",
            "| product | rows x cols | m x v bits | act bits | RUN requests | vectors | "
            + " | ".join(f"useful / issued, {r['config']}" for r in group) + " |",
            "|---|---|---|---:|---:|---:|" + "---:|" * len(group),
        ]
        for i, s in enumerate(group[0]["shapes"]):
            utils = " | ".join(f"{100 * r['shapes'][i]['utilisation']:.1f} %" for r in group)
            lines.append(f"| {s['product']} | {s['rows']} x {s['cols']} | {s['m_bits']} x {s['v_bits']} "
                         f"| {s['act_bits']} | {s['requests']:,} | {s['vectors']:,} | {utils} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main

def measure(configs, reports_dir: Path | None, build: bool, batches: int | None, torch_repeats: int,
            log=print) -> dict:
    from hw.core import TrainingCore

    reports = {}
    for config in configs:
        if build:
            log(f"building {config.name} ({config.board}) into {reports_dir / config.name} ...")
            reports[config.name] = build_report(config, reports_dir)
        else:
            reports[config.name] = reports_dir / f"{config.name}.json" if reports_dir else config.report
    keys, recordings, rows = [], [], []
    for config in configs:
        report = json.loads(Path(reports[config.name]).read_text())
        key = link_key(report["core_params"])
        if key not in keys:
            log(f"recording the RUNs of one digits epoch on the model backend ({config.name}'s core) ...")
            keys.append(key)
            recordings.append(record_epoch(report["core_params"], batches, log=log))
        index = keys.index(key)
        core = TrainingCore(**report["core_params"])
        rows.append(dict(summarise(config.name, report, core, recordings[index]), recording=index,
                         note=config.note))
    swept = [r for r in rows if r["config"] == SWEPT_CONFIG]
    sweep = None
    if swept:
        sweep = {"config": SWEPT_CONFIG,
                 "shapes": shape_sweep(recordings[swept[0]["recording"]], swept[0]["core_params"])}
    log(f"timing {torch_repeats} host epoch(s) with --backend torch ...")
    return {"configs": rows, "recordings": recordings, "sweep": sweep, "torch_epoch": torch_epochs(torch_repeats),
            "reports": {name: _shown(path) for name, path in reports.items()},
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}


def _shown(path) -> str:
    """``path`` relative to the repository when inside it (no host paths in a report)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return path.name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=[c.name for c in CONFIGS], default=None,
                        help="only these configurations (default: all)")
    parser.add_argument("--reports", type=Path, default=None, metavar="DIR",
                        help="read (with --build: write) the build reports DIR/<config>.json "
                             "(default: the committed reports; with --build: build/core_density)")
    parser.add_argument("--build", action="store_true",
                        help="build every configuration with the board tools first (minutes to tens of minutes)")
    parser.add_argument("--batches", type=int, default=None, metavar="N",
                        help="record only N batches of 32 and scale (default: every batch)")
    parser.add_argument("--quick", action="store_true",
                        help=f"--batches {QUICK_BATCHES} and one host epoch: a minute instead of minutes")
    parser.add_argument("--torch-repeats", type=int, default=3, metavar="N",
                        help="host epochs timed with --backend torch (the median is reported)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="STEM",
                        help="write STEM.json and STEM.md (default: bench/reports/core_density)")
    args = parser.parse_args(argv)
    if args.batches is not None and args.batches < 1:
        parser.error("--batches must be >= 1")
    batches = QUICK_BATCHES if args.quick and args.batches is None else args.batches
    repeats = 1 if args.quick else args.torch_repeats
    if repeats < 1:
        parser.error("--torch-repeats must be >= 1")
    reports_dir = args.reports if args.reports is not None else (DEFAULT_BUILD_DIR if args.build else None)
    configs = [c for c in CONFIGS if args.configs is None or c.name in args.configs]

    import torch
    torch.set_num_threads(1)  # as every dorefa command by default
    result = measure(configs, reports_dir, args.build, batches, repeats)
    result["command"] = " ".join(["python bench/core_density.py", *(argv if argv is not None else sys.argv[1:])])
    write_report(args.out, result, table(result))


if __name__ == "__main__":
    main()
