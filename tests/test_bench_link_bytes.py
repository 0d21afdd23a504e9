"""The arithmetic of ``bench/link_bytes.py`` against hand-computed figures, and its
byte counter on the real core model (frame sizes from the protocol's layout)."""

import numpy as np
import pytest

from bench import core_density as cd
from bench import link_bytes as lb
from sw.core_model import CoreModel
from sw.driver import LoopbackTransport

TO, FROM = cd.TO_CORE, cd.FROM_CORE


def test_frames_are_counted_whole_by_product_and_direction():
    client = cd.RecordingClient(LoopbackTransport(CoreModel(max_rows=32, max_cols=256)))
    rng = np.random.default_rng(0)
    client.batch, client.product = 3, "backward-input"
    client.matmul(rng.integers(0, 4, (5, 20)), 2, False, rng.integers(0, 2, (4, 20)), 1, True)
    # Every frame is sync + cmd/status + tag + 2 length bytes + payload + 2 CRC bytes (7 + payload).
    # PING: 7 out; 7 + 24 back.  LOAD_MATRIX of 4 x 20 1-bit codes: 7 + 12 + 10 out; 7 + 4 back.
    # RUN of 5 vectors of 20 2-bit codes: 7 + 4 + 25 out; back the width byte and 5 x 4
    # accumulators of two bytes (bit_length(20) + 1 + 2 + 1 = 9 bits): 7 + 1 + 40.
    assert client.link_bytes == {(cd.SESSION, cd.SESSION, TO): 7, (cd.SESSION, cd.SESSION, FROM): 31,
                                 (3, "backward-input", TO): 29 + 36, (3, "backward-input", FROM): 11 + 48}


RECORDING = {
    "width": 0.5, "train_samples": 1437, "test_samples": 360, "batches": {"32": 44, "29": 1},
    "recorded": {"32": 2, "29": 1}, "test_acc": 0.5,
    "link_bytes": {
        "per_batch": {
            "32": [{"product": "forward", "direction": TO, "bytes": 100},
                   {"product": "forward", "direction": FROM, "bytes": 300},
                   {"product": "backward-weight", "direction": FROM, "bytes": 1000}],
            "29": [{"product": "forward", "direction": TO, "bytes": 90}],
        },
        "evaluation": [{"product": cd.EVALUATION, "direction": TO, "bytes": 720},
                       {"product": cd.EVALUATION, "direction": FROM, "bytes": 1080}],
        "session": [{"product": cd.SESSION, "direction": TO, "bytes": 7},
                    {"product": cd.SESSION, "direction": FROM, "bytes": 20}],
    },
}


def test_epoch_and_per_sample_bytes():
    s = lb.summarise(RECORDING)
    # forward to the core: 44 * 100 + 90 = 4490 over 1437 samples; backward-weight back: 44000.
    assert s["per_sample"]["forward"] == {TO: 4490 / 1437, FROM: 13200 / 1437}
    assert s["per_sample"]["backward-input"] == {TO: 0, FROM: 0}
    assert s["per_sample"]["backward-weight"][FROM] == 44000 / 1437
    assert s["training_bytes_per_sample"] == pytest.approx((4490 + 13200 + 44000) / 1437)
    assert s["per_sample"][cd.EVALUATION] == {TO: 2.0, FROM: 3.0}
    assert s["evaluation_bytes_per_sample"] == 5.0
    # the epoch: 61690 training + 1800 evaluation + 27 session bytes
    assert s["epoch_bytes"] == 63517 and s["session_bytes"] == 27
    assert s["epoch_link_s"] == {"115200": 635170 / 115200, "3000000": 635170 / 3e6}


def test_report_shows_the_figures_and_the_targets():
    row = lb.summarise(dict(RECORDING, width=1.0))
    text = lb.table({"command": "python bench/link_bytes.py --batches 2", "link": {"max_rows": 32},
                     "widths": [row], "machine": "test"})
    assert "`python bench/link_bytes.py --batches 2`" in text
    assert "| 1 | forward | 3 | 9 | 12 |" in text  # 3.12 + 9.19 bytes per sample
    assert "| 1 | **evaluation, per test sample** | 2 | 3 | 5 |" in text
    assert "| 1 | 63,517 | 5.5 s | 0.2 s |" in text
    assert "| bytes per evaluation sample | 5 | <= 2,500 | met |" in text
    assert "| bytes per training sample | 43 | <= 40,000 | met |" in text
    over = lb.table({"command": "x", "link": {}, "machine": "test",
                     "widths": [dict(row, training_bytes_per_sample=622_270)]})
    assert "| bytes per training sample | 622,270 | <= 40,000 | 15.56x over |" in over
    assert "recorded 2 of 44" in text and "27 bytes" in text


def test_report_sets_the_figures_beside_the_baselines():
    row = lb.summarise(dict(RECORDING, width=1.0))
    def scaled(factor):
        return dict(row, epoch_bytes=63_517 * factor,
                    per_sample={k: {TO: factor * v[TO], FROM: factor * v[FROM]} for k, v in row["per_sample"].items()})
    text = lb.table({"command": "x", "link": {}, "machine": "test", "widths": [row],
                     "baselines": [{"name": "protocol 2", "widths": [scaled(10)]},
                                   {"name": "protocol 4", "widths": [scaled(2)]}]})
    assert ("| width | product | to core | from core | total | protocol 2 | fewer | protocol 4 | fewer |"
            in text)
    assert "|---|---|---:|---:|---:|---:|---:|---:|---:|" in text
    assert "| 1 | forward | 3 | 9 | 12 | 123 | 10.00x | 25 | 2.00x |" in text
    # a product the baseline did not have crosses no bytes here either: no ratio
    assert "| 1 | backward-input | 0 | 0 | 0 | 0 | - | 0 | - |" in text
    assert "| 1 | 63,517 | 5.5 s | 0.2 s | 635,170 | 10.00x | 127,034 | 2.00x |" in text
    assert "protocol 4, accumulators as narrow as their bound" in text
    # a width the baseline did not measure
    other = lb.table({"command": "x", "link": {}, "machine": "test", "widths": [dict(row, width=0.5)],
                      "baselines": [{"name": "protocol 2", "widths": [scaled(10)]}]})
    assert "| 0.5 | forward | 3 | 9 | 12 | - | - |" in other


def test_link_seconds_is_eight_n_one():
    assert lb.link_seconds(11_520, 115_200) == 1.0
