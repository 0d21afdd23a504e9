"""Training is bit-identical whichever backend runs the integer products."""

import pytest
import torch

from sw.backends import BACKENDS, check_backend, make_engine
from sw.cli import main
from sw.train import TrainConfig, train


def _run(tmp_path, backend, bits=(1, 2, 6)):
    config = TrainConfig(bits=bits, width=0.5, epochs=1, batch_size=16, train_limit=48, test_limit=32,
                         out=str(tmp_path / backend), backend=backend)
    return train(config, progress=False, log=lambda *a, **k: None)


@pytest.mark.parametrize("backend", ["ref", "model"])
def test_backends_train_bit_identically(tmp_path, backend):
    golden = _run(tmp_path, "torch")
    other = _run(tmp_path, backend)
    for (name, a), b in zip(golden.model.state_dict().items(), other.model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between torch and {backend}"
    assert golden.history[-1]["train_loss"] == other.history[-1]["train_loss"]
    # the core's evaluation is integer inference, thresholds on its activation stage:
    # the same loss and accuracy as the float model's eval
    for key in ("test_loss", "test_acc"):
        assert golden.history[-1][key] == other.history[-1][key], key


def test_core_backend_evaluates_with_thresholds_on_the_core(tmp_path, monkeypatch):
    from sw import driver
    calls = []
    activations = driver.CoreClient.activations
    monkeypatch.setattr(driver.CoreClient, "activations",
                        lambda self, *args: calls.append(args[0].shape) or activations(self, *args))
    _run(tmp_path, "model")
    # one test batch (32 samples); the quantized blocks' fan-ins at width 0.5 are 72, 144, 144
    # (on the core's 256 columns) and 512 (too long: the core's sums are thresholded on the host)
    assert [cols for _, cols in calls] == [72, 144, 144]


@pytest.mark.parametrize("spec", ["", "fpga", "serial:", "serial"])
def test_unknown_backend_lists_the_allowed_ones(spec):
    with pytest.raises(ValueError, match="allowed: " + ", ".join(BACKENDS)):
        check_backend(spec)


def test_dead_serial_device_is_a_clear_cli_error(tmp_path, capsys):
    status = main(["train", "--bits", "1,2,6", "--epochs", "1", "--train-limit", "16", "--no-progress",
                   "--out", str(tmp_path / "run"), "--backend", f"serial:{tmp_path / 'no-such-tty'}"])
    assert status == 2
    err = capsys.readouterr().err
    assert "no-such-tty" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_make_engine_kinds():
    assert type(make_engine("torch")).__name__ == "TorchEngine"
    assert type(make_engine("ref")).__name__ == "IntRefEngine"
    assert type(make_engine("model")).__name__ == "CoreEngine"
