"""Training is bit-identical whichever backend runs the integer products."""

import os
import re

import pytest
import torch

from sw.backends import BACKENDS, check_backend, make_engine
from sw.contract.backends import parse_serial
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
    thresholds, windowed = [], []
    load_thresholds, run_window = driver.CoreClient.load_thresholds, driver.CoreClient.run_window
    monkeypatch.setattr(driver.CoreClient, "load_thresholds",
                        lambda self, *args: thresholds.append(self._matrix[1]) or load_thresholds(self, *args))
    monkeypatch.setattr(driver.CoreClient, "run_window", lambda self, *args, **kw: (
        kw.get("activate") and windowed.append(self._matrix[1])) or run_window(self, *args, **kw))
    _run(tmp_path, "model")
    # one test batch (32 samples); the quantized blocks' fan-ins at width 0.5 are 72, 144, 144
    # and 512, all within the model backend's 1,024 columns (LARGE_LIMITS: the ULX3S core's),
    # at most 32 channels (one row tile); the 3x3 convs' patches are made on the core from the
    # feature maps (one activated windowed RUN per sample), the last conv's (4x4 on 4x4: one
    # position, no overlap) are fewer bytes sent
    assert thresholds == [72, 144, 144, 512]
    assert windowed == [72] * 32 + [144] * 64


@pytest.mark.parametrize("spec", ["", "fpga", "serial:", "serial"])
def test_unknown_backend_lists_the_allowed_ones(spec):
    with pytest.raises(ValueError, match=re.escape("allowed: " + ", ".join(BACKENDS))):
        check_backend(spec)
    assert "serial:DEVICE[@BAUD]" in BACKENDS


@pytest.mark.parametrize("spec, device, baud", [
    ("serial:/dev/ttyUSB1", "/dev/ttyUSB1", 3_000_000),  # the default rate
    ("serial:/dev/ttyUSB1@3000000", "/dev/ttyUSB1", 3_000_000),
    ("serial:/dev/ttyUSB1@115200", "/dev/ttyUSB1", 115_200),  # the fallback builds
    ("serial:COM3@921600", "COM3", 921_600),
    ("serial:/dev/ttyUSB0@300", "/dev/ttyUSB0", 300),
    ("serial:/dev/ttyUSB0@12000000", "/dev/ttyUSB0", 12_000_000),
    # the rate follows the last '@'
    ("serial:/dev/serial/by-id/usb-x@y-if01@1000000", "/dev/serial/by-id/usb-x@y-if01", 1_000_000),
])
def test_serial_spec_names_device_and_rate(spec, device, baud):
    assert parse_serial(spec) == (device, baud)
    assert check_backend(spec) == spec


@pytest.mark.parametrize("spec, message", [
    ("serial:/dev/ttyUSB1@", "the baud rate after '@' in 'serial:/dev/ttyUSB1@' must be a whole number of bits "
                             "per second in 300..12000000 (e.g. 3000000, or 115200 the fallback), got ''"),
    ("serial:/dev/ttyUSB1@fast", "got 'fast'"),
    ("serial:/dev/ttyUSB1@3M", "got '3M'"),
    ("serial:/dev/ttyUSB1@3e6", "got '3e6'"),
    ("serial:/dev/ttyUSB1@115200.0", "got '115200.0'"),
    ("serial:/dev/ttyUSB1@-9600", "got '-9600'"),
    ("serial:/dev/ttyUSB1@0", "got '0'"),
    ("serial:/dev/ttyUSB1@299", "got '299'"),
    ("serial:/dev/ttyUSB1@12000001", "got '12000001'"),
    ("serial:@3000000", "'serial:@3000000' names no device: use serial:DEVICE or serial:DEVICE@BAUD"),
])
def test_bad_serial_spec_is_a_one_line_error(spec, message):
    with pytest.raises(ValueError) as info:
        check_backend(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_serial_rate_is_a_cli_error(tmp_path, capsys):
    status = main(["train", "--bits", "1,2,6", "--epochs", "1", "--train-limit", "16", "--no-progress",
                   "--out", str(tmp_path / "run"), "--backend", "serial:/dev/ttyUSB1@fast"])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "the baud rate after '@' in 'serial:/dev/ttyUSB1@fast'" in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("suffix, baud", [("", 3_000_000), ("@115200", 115_200), ("@1000000", 1_000_000)])
def test_serial_engine_opens_the_port_at_the_specs_rate(suffix, baud):
    primary, secondary = os.openpty()
    try:
        engine = make_engine(f"serial:{os.ttyname(secondary)}{suffix}")
        try:
            port = engine.client.transport.port
            assert (port.port, port.baudrate) == (os.ttyname(secondary), baud)
        finally:
            engine.close()
    finally:
        os.close(primary)
        os.close(secondary)


def test_dead_serial_device_is_a_clear_cli_error(tmp_path, capsys):
    status = main(["train", "--bits", "1,2,6", "--epochs", "1", "--train-limit", "16", "--no-progress",
                   "--out", str(tmp_path / "run"), "--backend", f"serial:{tmp_path / 'no-such-tty'}"])
    assert status == 2
    err = capsys.readouterr().err
    assert "no-such-tty" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("spec", ["sim", "sim:amaranth"])
def test_simulated_backends_need_the_callers_transport(spec):
    with pytest.raises(ValueError, match=f"backend '{spec}' runs the simulated core: use the dorefa command line, "
                                         "or pass open_transport=sim.transports.open_transport"):
        make_engine(spec)


class LoopbackOpener:
    """``open_transport`` for tests: the core model in process, as a slow core would answer."""

    def __init__(self):
        self.opened = []

    def __call__(self, spec):
        from sw.core_model import CoreModel
        from sw.driver import LoopbackTransport
        transport = LoopbackTransport(CoreModel())
        transport.reply_timeout = 7.5
        self.opened.append((spec, transport))
        return transport


def test_simulated_backend_runs_on_the_opened_transport():
    opener = LoopbackOpener()
    engine = make_engine("sim:amaranth", open_transport=opener)
    [(spec, transport)] = opener.opened
    assert spec == "sim:amaranth" and type(engine).__name__ == "CoreEngine"
    assert engine.client.transport is transport and engine.client.timeout == 7.5
    engine.close()
    assert transport._closed


def test_train_passes_open_transport_on(tmp_path):
    with pytest.raises(ValueError, match="backend 'sim' runs the simulated core"):
        _run(tmp_path, "sim")
    assert not (tmp_path / "sim").exists()
    opener = LoopbackOpener()
    model = _run(tmp_path, "model")
    sim = train(TrainConfig(bits=(1, 2, 6), width=0.5, epochs=1, batch_size=16, train_limit=48, test_limit=32,
                            out=str(tmp_path / "sim"), backend="sim"),
                progress=False, log=lambda *a, **k: None, open_transport=opener)
    assert [spec for spec, _ in opener.opened] == ["sim"] and opener.opened[0][1]._closed
    for (name, a), b in zip(model.model.state_dict().items(), sim.model.state_dict().values()):
        assert torch.equal(a, b), name
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert model.history[-1][key] == sim.history[-1][key], key


def test_make_engine_kinds():
    assert type(make_engine("torch")).__name__ == "TorchEngine"
    assert type(make_engine("ref")).__name__ == "IntRefEngine"
    assert type(make_engine("model")).__name__ == "CoreEngine"
