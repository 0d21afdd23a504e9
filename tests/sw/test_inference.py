"""``dorefa infer``: a checkpoint's integer inference on a backend, compared bit for bit with the float model."""

from __future__ import annotations

import pytest
import torch

from sw import backends
from sw.cli import main
from sw.inference import verify_inference
from sw.intref import IntRefEngine
from sw.train import CHECKPOINT_NAME, TrainConfig, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("infer")
    config = TrainConfig(bits=(1, 2, 6), width=0.25, epochs=2, batch_size=32, lr=3e-3,
                         out=str(out))
    train(config, progress=False, log=lambda _: None)
    torch.set_num_threads(before)
    return out / CHECKPOINT_NAME


def test_inference_on_the_core_model_is_bit_exact(checkpoint):
    report = verify_inference(checkpoint, "model", limit=100)
    assert report.bit_exact
    assert report.samples == 100 and report.logit_mismatches == 0
    assert len(report.code_mismatches) == 5 and sum(report.codes_compared) > 0
    assert report.float_correct == report.integer_correct > 30  # it learned something, and both agree
    assert report.core_thresholds == 2 * 4 and report.host_thresholds == 0  # 2 batches x 4 quantized blocks


def test_inference_on_a_simulated_backend_uses_the_callers_transport(checkpoint):
    from sw.core_model import CoreModel
    from sw.driver import LoopbackTransport
    with pytest.raises(ValueError, match="backend 'sim' runs the simulated core"):
        verify_inference(checkpoint, "sim", limit=16)
    opened = []
    report = verify_inference(checkpoint, "sim", limit=16,
                              open_transport=lambda spec: opened.append(spec) or LoopbackTransport(CoreModel()))
    assert opened == ["sim"] and report.bit_exact and report.samples == 16 and report.core_thresholds > 0


class OffByOneEngine(IntRefEngine):
    """An engine whose activation stage is wrong in one place: the comparison must see it."""

    def matmul_activate(self, a, a_codes, b, b_codes, unit):
        codes = super().matmul_activate(a, a_codes, b, b_codes, unit)
        codes[0, 0] = (codes[0, 0] + 1) % (unit.act_bits + 1)
        return codes


def test_a_wrong_code_is_reported(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(backends, "make_engine", lambda spec, **_: OffByOneEngine())
    monkeypatch.setattr("sw.inference.make_engine", lambda spec, **_: OffByOneEngine())
    report = verify_inference(checkpoint, "ref", limit=64)
    # block 0 is the full-precision first conv; block 1 has the one wrong code, later blocks inherit it
    assert not report.bit_exact and report.code_mismatches[:2] == [0, 1]
    assert main(["infer", str(checkpoint), "--limit", "64"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_cli_infer(checkpoint, capsys, tmp_path):
    assert main(["infer", str(checkpoint), "--backend", "ref", "--limit", "40"]) == 0
    out = capsys.readouterr().out
    assert "40 test samples" in out and "bit-exact" in out
    assert main(["infer", str(checkpoint), "--backend", "torch"]) == 2
    assert "allowed: ref, model" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(checkpoint.read_bytes()[:100])
    assert main(["infer", str(bad)]) == 2
    assert "unreadable checkpoint" in capsys.readouterr().err
