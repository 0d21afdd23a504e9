"""The arithmetic of ``bench/core_density.py`` against hand-computed figures.

The core here is a stub with a cycle formula simple enough to evaluate by
hand, so the expected values check the bench's bookkeeping (useful and
issued ops, the epoch's scaling, density, the report's figures), not the
gateware's timing.  The RUN recorder is checked on the real core model.
"""

from math import ceil

import numpy as np
import pytest

from bench import core_density as cd
from sw.core_model import CoreModel
from sw.driver import LoopbackTransport


class StubCore:
    """pe = 2, simd = 4 (8 ops per cycle); a RUN takes
    ``count * ceil(rows / 2) * ceil(cols / 4) * m_bits * v_bits`` compute cycles
    (the activation is not compute: it runs as the reply leaves)."""
    pe, simd = 2, 4

    def run_cycles(self, count, rows, cols, m_bits, v_bits):
        return count * ceil(rows / 2) * ceil(cols / 4) * m_bits * v_bits


def run(product, count, rows, cols, m_bits, v_bits, act_bits=0, requests=1):
    return {"product": product, "count": count, "rows": rows, "cols": cols, "m_bits": m_bits,
            "v_bits": v_bits, "act_bits": act_bits, "requests": requests}


# A batch of 32: two forward RUNs of 3 vectors on a 5 x 10 matrix (1 x 2 bits) and one
# backward-weight RUN of 1 vector on a 4 x 8 matrix (6 x 2 bits).
#   forward, per request: useful 3*5*10*1*2 = 300, cycles 3*3*3*1*2 = 54 (ops 432)
#   backward-weight:      useful 1*4*8*6*2 = 384, cycles 1*2*2*6*2 = 48 (ops 384)
FULL = [run("forward", 3, 5, 10, 1, 2, requests=2), run("backward-weight", 1, 4, 8, 6, 2)]
# The last batch (29): one forward RUN of 1 vector: useful 100, cycles 1*3*3*2 = 18.
LAST = [run("forward", 1, 5, 10, 1, 2)]
# Evaluation: 2 vectors on a 4 x 4 matrix, 1 x 2 bits, activated at 2 bits:
#   useful 2*4*4*1*2 = 64, cycles 2*2*1*1*2 = 8 (ops 64).
EVAL = [run(cd.EVALUATION, 2, 4, 4, 1, 2, act_bits=2)]
RECORDING = {"link": {}, "train_samples": 1437, "test_samples": 360, "batch_size": 32,
             "batches": {"32": 44, "29": 1}, "recorded": {"32": 3, "29": 1},
             "per_batch": {"32": FULL, "29": LAST}, "evaluation": EVAL}
REPORT = {"board": "icebreaker", "family": "ice40", "device": "iCE40UP5K-SG48",
          "core_params": {"pe": 2, "simd": 4},
          "resources": {"ICESTORM_LC": [1000, 5280], "ICESTORM_SPRAM": [1, 4]},
          "luts": [1000, 5280], "ffs": 300, "bram": [5, 30], "dsp": [2, 8],
          "clocks": [{"name": "cd_sync.clk", "fmax_mhz": 20.0, "constraint_mhz": 12.0, "met": True}],
          "timing_met": True}


def test_useful_and_issued_of_one_batch():
    t = cd.tally(FULL, StubCore())
    assert t["forward"] == {"requests": 2, "vectors": 6, "useful_ops": 600, "cycles": 108,
                            "issued_ops": 864, "utilisation": 600 / 864}
    assert t["backward-weight"]["useful_ops"] == 384
    assert t["backward-weight"]["issued_ops"] == 384
    assert t["backward-weight"]["utilisation"] == 1.0
    assert "backward-input" not in t
    total = t["total"]
    assert (total["requests"], total["vectors"], total["useful_ops"], total["cycles"], total["issued_ops"]) == \
        (3, 7, 984, 156, 1248)
    assert total["utilisation"] == pytest.approx(0.7884615)


def test_ops_per_cycle_prefers_the_cores_own():
    assert cd.ops_per_cycle(StubCore()) == 8
    core = StubCore()
    core.ops_per_cycle = 96
    assert cd.ops_per_cycle(core) == 96
    assert cd.tally(FULL, core)["total"]["issued_ops"] == 156 * 96


def test_epoch_is_each_size_times_its_batches():
    assert cd.batch_sizes(1437, 32) == [32] * 44 + [29]
    runs = cd.epoch_runs(RECORDING)
    assert [r["requests"] for r in runs] == [88, 44, 1, 1]
    s = cd.summarise("small", REPORT, StubCore(), RECORDING)
    # training: 44 * (108 + 48) + 18 = 6882 cycles; evaluation 8.
    assert s["epoch_cycles"] == {"training": 6882, "evaluation": 8, "total": 6890}
    assert s["epoch_s_at_fmax"] == pytest.approx(6890 / 20e6)
    assert s["epoch_s_at_clock"] == pytest.approx(6890 / 12e6)
    # useful: 44 * 984 + 100 = 43396 ops in 6882 cycles at 20 MHz.
    assert s["products"]["total"]["useful_ops"] == 43396
    assert s["products"]["total"]["issued_ops"] == 6882 * 8
    assert s["useful_gops_training"] == pytest.approx(43396 / 6882 * 20e6 / 1e9)
    assert s["evaluation"]["useful_ops"] == 64 and s["evaluation"]["issued_ops"] == 64


def test_density_from_a_build_report():
    d = cd.density(REPORT, StubCore())
    assert d["lut_kind"] == "logic cells"
    assert (d["luts"], d["ffs"], d["bram"], d["spram"], d["dsp"]) == (1000, 300, 5, 1, 2)
    assert d["ops_per_cycle"] == 8
    assert d["ops_per_lut_cycle"] == 0.008
    assert d["gops"] == pytest.approx(0.16)
    # The core's clock is the sync domain's, not, say, a board oscillator's that feeds a PLL.
    pll = dict(REPORT, clocks=[{"name": "clk12_0__io", "fmax_mhz": 300.0, "constraint_mhz": 12.0},
                               {"name": "$glbnet$cd_sync.clk", "fmax_mhz": 25.0, "constraint_mhz": 19.875}])
    assert (cd.density(pll, StubCore())["fmax_mhz"], cd.density(pll, StubCore())["clock_mhz"]) == (25.0, 19.875)
    ecp5 = dict(REPORT, family="ecp5", resources={})
    assert cd.density(ecp5, StubCore())["spram"] is None
    assert cd.density(ecp5, StubCore())["lut_kind"] == "LUT4"


def test_report_shows_the_hand_computed_figures():
    row = dict(cd.summarise("small", REPORT, StubCore(), RECORDING), recording=0)
    result = {"configs": [row], "recordings": [RECORDING], "command": "python bench/core_density.py --quick",
              "torch_epoch": {"seconds": [1.5, 1.25, 2.0], "median_s": 1.5, "test_acc": 0.5},
              "reports": {"small": "bench/reports/core_density.small.json"}, "machine": "test"}
    text = cd.table(result)
    assert "`python bench/core_density.py --quick`" in text
    # forward: 44 * 600 + 100 = 26500 useful of (44 * 108 + 18) * 8 = 38160 issued.
    assert "| small | forward | 89 | 265 |" in text and "| 69.4 % |" in text
    assert "| small | backward-weight | 44 | 44 |" in text and "| 100.0 % |" in text
    assert "| small | **total** | 133 | 309 |" in text and "**78.8 %**" in text  # 43396 / 55056
    assert "| small | evaluation (not in the total) | 1 | 2 | 0.000 G | 0.000 G | 100.0 % |" in text  # 64 / 64
    assert "| 1000 logic cells | 300 | 5 | 1 | 2 | 20.0 MHz (12) | 8 | 0.00800 | 0.160 |" in text
    assert "| small | 6,882 | 8 | 0.3 ms | 0.6 ms (12 MHz) |" in text
    assert "median of 3: 1.50, 1.25, 2.00 s) | | | 1.50 s |" in text
    assert "3 of the 44 batches of 32 recorded" in text and "counted 44 times" in text
    # RUN shapes of one batch of 32, with their utilisation on the core.
    assert "| forward | 5 x 10 | 1 x 2 | 0 | 2 | 6 | 69.4 % |" in text
    assert "| backward-weight | 4 x 8 | 6 x 2 | 0 | 1 | 1 | 100.0 % |" in text


class ShapedStub:
    """A core of any array: a RUN takes ``ceil(count / vectors)`` tiles of
    ``ceil(rows / pe) * ceil(cols / simd) * m_bits * v_bits`` issue cycles and a drain
    of ``pe * vectors / drains``."""
    made = []

    def __init__(self, pe, vectors, simd, drains, popcount_stages, **_):
        self.pe, self.vectors, self.simd, self.drains = pe, vectors, simd, drains
        self.ops_per_cycle = pe * vectors * simd
        ShapedStub.made.append((pe, vectors, simd, drains, popcount_stages))

    def run_cycles(self, count, rows, cols, m_bits, v_bits):
        tile = ceil(rows / self.pe) * ceil(cols / self.simd) * m_bits * v_bits + self.pe * self.vectors // self.drains
        return ceil(count / self.vectors) * tile


def test_shape_sweep_weighs_other_arrays_on_the_recorded_epoch():
    ShapedStub.made.clear()
    base = {"pe": 2, "vectors": 1, "simd": 4, "drains": 1, "popcount_stages": 0, "max_rows": 8}
    sweep = cd.shape_sweep(RECORDING, base, shapes=((1, 2, 8, 1), (2, 1, 4, 1)), make_core=ShapedStub)
    # The built array first, as built (its own popcount stages), then the others once each,
    # a register on every level of their popcount (3 for 8 lanes).
    assert ShapedStub.made == [(2, 1, 4, 1, 0), (1, 2, 8, 1, 3)]
    built, other = sweep
    # Built (8 ops a cycle, drain 2): forward 2 x 3 tiles of 3*3*2 + 2 = 120, backward-weight
    # 2*2*12 + 2 = 50: 170 a batch, 44 * 170 + 20 (the last batch's forward) = 7,500 cycles.
    assert built == {"pe": 2, "vectors": 1, "simd": 4, "drains": 1, "built": True, "ops_per_cycle": 8,
                     "cycles": 7500, "utilisation": pytest.approx(43396 / 60000)}
    # 1 x 2 x 8 (16 ops, drain 2): forward 2 x 2 tiles of 5*2*2 + 2 = 88, backward-weight
    # 4*1*12 + 2 = 50: 44 * 138 + 22 = 6,094 cycles.
    assert other == {"pe": 1, "vectors": 2, "simd": 8, "drains": 1, "built": False, "ops_per_cycle": 16,
                     "cycles": 6094, "utilisation": pytest.approx(43396 / (6094 * 16))}
    row = dict(cd.summarise("small", REPORT, StubCore(), RECORDING), recording=0)
    result = {"configs": [row], "recordings": [RECORDING], "command": "python bench/core_density.py",
              "torch_epoch": {"seconds": [1.5], "median_s": 1.5, "test_acc": 0.5},
              "reports": {"small": "x.json"}, "machine": "test", "sweep": {"config": "small", "shapes": sweep}}
    text = cd.table(result)
    assert "| 2 x 1 x 4 (built) | 1 | 8 | 7,500 | 72.3 % | 1.00x |" in text
    assert "| 1 x 2 x 8 | 1 | 16 | 6,094 | 44.5 % | 0.81x |" in text


def test_report_marks_a_build_that_failed_timing():
    failed = dict(REPORT, clocks=[{"name": "cd_sync.clk", "fmax_mhz": 10.0, "constraint_mhz": 12.0, "met": False}],
                  timing_met=False)
    row = dict(cd.summarise("small", failed, StubCore(), RECORDING), recording=0)
    result = {"configs": [row], "recordings": [RECORDING], "command": "python bench/core_density.py",
              "torch_epoch": {"seconds": [1.5], "median_s": 1.5, "test_acc": 0.5},
              "reports": {"small": "x.json"}, "machine": "test"}
    text = cd.table(result)
    assert "| 10.0 MHz (12, timing failed) |" in text
    assert "| small | 6,882 | 8 | 0.7 ms | 0.6 ms (12 MHz, timing failed) |" in text
    assert "timing failed" not in cd.table(dict(result, configs=[dict(cd.summarise("small", REPORT, StubCore(),
                                                                                  RECORDING), recording=0)]))


def test_recording_client_sees_every_run_the_core_executes():
    client = cd.RecordingClient(LoopbackTransport(CoreModel(max_rows=32, max_cols=256)))
    rng = np.random.default_rng(0)
    client.batch, client.product = 7, "forward"
    # 40 rows x 300 columns tile into 32 + 8 rows and 256 + 44 columns: four RUNs of 5 vectors.
    client.matmul(rng.integers(0, 4, (5, 300)), 2, False, rng.integers(0, 2, (40, 300)), 1, True)
    assert client.runs == {(7, "forward", 5, 32, 256, 1, 2, 0): 1, (7, "forward", 5, 32, 44, 1, 2, 0): 1,
                           (7, "forward", 5, 8, 256, 1, 2, 0): 1, (7, "forward", 5, 8, 44, 1, 2, 0): 1}
    client.runs.clear()
    client.batch = cd.EVALUATION
    thresholds = np.tile([-1, 0, 1], (4, 1))
    client.activations(rng.integers(0, 4, (3, 20)), 2, False, rng.integers(0, 2, (4, 20)), 1, True,
                       thresholds, np.ones(4, dtype=np.int64), 2)
    assert client.runs == {(cd.EVALUATION, "forward", 3, 4, 20, 1, 2, 2): 1}
