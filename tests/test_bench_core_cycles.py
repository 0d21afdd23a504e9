"""The bookkeeping of ``bench/core_cycles.py`` against hand-computed figures.

The simulation is a stub whose counters advance by known amounts per request,
so the expected values check the attribution of cycles to commands and the
epoch's scaling, not the gateware's timing (the bench measures that).
"""

import numpy as np
import pytest

from bench import core_cycles as cc
from bench.core_density import EVALUATION
from sw import protocol as P
from sw.core_model import CoreModel
from sw.driver import LoopbackTransport


class StubBridge:
    """Counters as a simulation keeps them: each ``stats()`` call after a request has
    advanced ``cycles`` by 100 per request byte (the bridge is told the bytes)."""

    def __init__(self):
        self.now = {"cycles": 7, "bytes_in": 0, "bytes_out": 0}

    def advance(self, sent: int, received: int):
        self.now = {"cycles": self.now["cycles"] + 100 * sent, "bytes_in": self.now["bytes_in"] + sent,
                    "bytes_out": self.now["bytes_out"] + received}

    def stats(self):
        return dict(self.now)


class StubTransport(LoopbackTransport):
    """A loopback transport that tells the stub bridge the bytes of each exchange."""

    def __init__(self, model, bridge):
        super().__init__(model)
        self.bridge = bridge

    def write(self, data: bytes) -> None:
        waiting = len(self._rx)
        super().write(data)
        self.bridge.advance(len(data), len(self._rx) - waiting)


def test_cycles_are_attributed_to_each_command():
    bridge = StubBridge()
    client = cc.CyclesClient(StubTransport(CoreModel(max_rows=4, max_cols=8), bridge), bridge)
    client.phase = cc.TRAINING
    client.batch = 0
    matrix = np.array([[0, 1, 2, 3], [3, 3, 3, 3], [1, 0, 0, 2]])
    client.load_matrix(matrix, 2, False)
    client.phase = client.batch = EVALUATION
    out = client.matmul(np.ones((2, 4), dtype=np.int64), 1, False, matrix, 2, False)
    assert out.tolist() == [[6, 12, 3]] * 2  # row sums: the vectors are all ones
    rows = {key: row for key, row in client.cycles.items()}
    load = rows[(cc.TRAINING, "LOAD_MATRIX")]
    # one request; 100 cycles per byte it sent; its bytes in and out as the core counted them
    assert load[0] == 1 and load[1] == 100 * load[2] and load[3] == P.OVERHEAD + 4  # the u32 of codes loaded
    assert load[2] == P.OVERHEAD + P.LOAD_HEADER + P.packed_size(12, 2)
    assert rows[(EVALUATION, "LOAD_MATRIX")][0] == 1 and rows[(EVALUATION, "RUN")][0] == 1
    assert sum(r[1] for r in rows.values()) == bridge.now["cycles"] - 7  # every cycle counted once


def test_summary_scales_the_training_per_sample_and_adds_the_evaluation():
    result = {
        "batch_sizes": [32, 32], "train_samples": 1437, "test_samples": 360, "fmax_mhz": 50.0,
        "compute_cycles": {cc.TRAINING: 640, EVALUATION: 30},
        "commands": [
            {"phase": cc.TRAINING, "command": "RUN", "requests": 4, "cycles": 6_000, "bytes_in": 10, "bytes_out": 54},
            {"phase": cc.TRAINING, "command": "LOAD_MATRIX", "requests": 2, "cycles": 400, "bytes_in": 100,
             "bytes_out": 20},
            {"phase": EVALUATION, "command": "RUN", "requests": 1, "cycles": 900, "bytes_in": 5, "bytes_out": 5},
        ],
    }
    s = cc.summarise(result)
    assert s["totals"][cc.TRAINING] == {"cycles": 6_400, "bytes": 184, "compute": 640}
    assert s["per_sample"] == {"cycles": 100.0, "bytes": 2.875, "compute": 10.0}  # over 64 samples
    assert s["epoch_cycles"]["cycles"] == pytest.approx(100 * 1437 + 900)
    assert s["epoch_cycles"]["compute"] == pytest.approx(10 * 1437 + 30)
    assert s["epoch_s"] == pytest.approx((100 * 1437 + 900) / 50e6)
    assert s["epoch_batches"] == 45


def test_a_report_of_another_core_is_refused(monkeypatch, tmp_path, capsys):
    """The Fmax comes from the board's committed report: one built from other parameters than
    the preset's is a one-line error, exit status 2, before anything is built."""
    (tmp_path / "ulx3s.json").write_text('{"core_params": {"pe": 1}}')
    monkeypatch.setattr(cc, "BOARD_REPORTS", tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cc.main(["--board", "ulx3s"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "built from other core parameters than the ulx3s preset" in err


def test_flow_counts_codes_in_and_values_out_per_phase():
    runs = {
        # (batch, product, count, rows, cols, m_bits, v_bits, act_bits): requests
        (0, "forward", 3, 16, 100, 1, 2, 2): 2,     # activated: 2 x 3 x 16 values
        (0, "backward", 4, 10, 50, 6, 2, 0): 1,
        (EVALUATION, "forward", 5, 8, 20, 1, 2, 0): 3,
    }
    assert cc.flow(runs) == {
        cc.TRAINING: {"vector_codes": 2 * 3 * 100 + 4 * 50, "values": 2 * 3 * 16 + 4 * 10, "activated": 96},
        EVALUATION: {"vector_codes": 3 * 5 * 20, "values": 3 * 5 * 8, "activated": 0},
    }
