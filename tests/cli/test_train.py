"""``dorefa train``: errors are one line and exit status 2; a run, its resume and a corrupt checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sw.cli import main
from sw.train import CHECKPOINT_NAME, METRICS_NAME
from tests.checks import fails

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--width", "0.25", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--no-progress"]


@pytest.mark.parametrize("bits,pattern", [
    ("9", "bits must be 'W,A,G'"),
    ("1,2", "bits must be 'W,A,G'"),
    ("1,2,9", "G must be one of 1..8 or 32"),
    ("0,2,6", "W must be one of 1..8 or 32"),
    ("a,b,c", "integers 1..8 or 32"),
])
def test_bad_bits(capsys, bits, pattern):
    fails(capsys, ["train", "--bits", bits], "--bits", pattern)


@pytest.mark.parametrize("argv,pattern", [
    (["train"], "required: --bits"),
    (["train", "--bits", "1,2,6", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "--bits", "1,2,6", "--model", "resnet"], "invalid choice: 'resnet'"),
    (["train", "--bits", "1,2,6", "--epochs", "0"], "expected an integer >= 1"),
    (["train", "--bits", "1,2,6", "--lr", "-1"], "expected a positive number"),
    (["train", "--bits", "1,2,6", "--resume", "--overwrite"], "not allowed with argument"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_arguments(capsys, argv, pattern):
    fails(capsys, argv, pattern)


def test_width_out_of_range(capsys, tmp_path):
    fails(capsys, ["train", "--bits", "1,2,6", "--width", "9", "--out", str(tmp_path)], "width multiplier must be in (0, 8]")


@pytest.mark.parametrize("dataset", ["svhn", "mnist"])
def test_missing_data_path(capsys, dataset):
    fails(capsys, ["train", "--bits", "1,2,6", "--dataset", dataset], f"--dataset {dataset}", "--data PATH")


def test_malformed_data_file(capsys, tmp_path):
    root = tmp_path / "mnist"
    root.mkdir()
    (root / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00")  # truncated header
    line = fails(capsys, ["train", "--bits", "1,2,6", "--dataset", "mnist", "--data", str(root),
                          "--out", str(tmp_path / "out")], "train-images-idx3-ubyte", "header")
    assert line.startswith("dorefa train: error:")


def train_argv(out, *extra):
    return ["train", "--bits", "1,2,6", "--epochs", "2", "--out", str(out), *QUICK, *extra]


def test_train_then_resume_and_corrupt_checkpoint(capsys, tmp_path):
    assert main(train_argv(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    rows = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["bits"] == [1, 2, 6]

    # Same command again: refuses to clobber the run.
    fails(capsys, train_argv(tmp_path), "already exists", "--resume", "--overwrite")
    # Resuming a finished run is a no-op; another bit setting is a different run.
    assert main(train_argv(tmp_path, "--resume")) == 0
    capsys.readouterr()
    fails(capsys, ["train", "--bits", "1,1,2", "--epochs", "2", "--out", str(tmp_path), *QUICK, "--resume"],
          str(tmp_path / CHECKPOINT_NAME), "different run", "bits")

    checkpoint = tmp_path / CHECKPOINT_NAME
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    before = checkpoint.read_bytes()
    fails(capsys, train_argv(tmp_path, "--resume"), str(checkpoint), "unreadable checkpoint")
    assert checkpoint.read_bytes() == before


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    code = "import sys; from sw.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "train", "--bits", "1,2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "bits must be 'W,A,G'" in proc.stderr


@pytest.mark.parametrize("backend, simulated", [("ref", False), ("model", False), ("sim", True),
                                                ("sim:amaranth", True)])
def test_train_and_infer_get_the_simulators_transports_for_a_sim_backend(backend, simulated, tmp_path,
                                                                         monkeypatch):
    """sw never imports sim: the CLI, the composition root, passes train() and
    verify_inference() sim.transports.open_transport for a simulated core, else nothing."""
    import sim.transports
    from sw import inference, train as train_module

    seen = []

    def spy(*args, open_transport=None, **kwargs):
        seen.append(open_transport)
        raise ValueError("stop here")

    monkeypatch.setattr(train_module, "train", spy)
    monkeypatch.setattr(inference, "verify_inference", spy)
    assert main(["train", "--bits", "1,2,6", "--out", str(tmp_path), "--backend", backend]) == 2
    assert main(["infer", str(tmp_path / "x.pt"), "--backend", backend]) == 2
    expected = sim.transports.open_transport if simulated else None
    assert seen == [expected, expected]
