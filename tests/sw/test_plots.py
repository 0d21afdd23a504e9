"""PNG figures: ``train`` writes curves.png every epoch, ``demo`` its summary.png,
``dorefa plot`` draws earlier runs side by side; bad input is a one-line error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sw import plots, train as train_module
from sw.cli import main
from sw.train import METRICS_NAME
from tests.checks import fails, png_size

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--width", "0.25", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--no-progress"]


def write_metrics(run_dir: Path, epochs: int, bits=(1, 2, 6)) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / METRICS_NAME, "w") as f:
        for e in range(1, epochs + 1):
            f.write(json.dumps({"epoch": e, "train_loss": 2.0 / e, "test_loss": 2.1 / e, "train_acc": 0.5 + e / 20,
                                "test_acc": 0.45 + e / 20, "bits": list(bits), "seed": 0}) + "\n")
    return run_dir


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny real training runs (2 epochs each) made by ``dorefa train``."""
    before = torch.get_num_threads()
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for bits in ("32,32,32", "1,2,6"):
        out = root / bits.replace(",", "-")
        assert main(["train", "--bits", bits, "--epochs", "2", "--out", str(out), *QUICK]) == 0
        dirs.append(out)
    torch.set_num_threads(before)
    return dirs


def test_names():
    assert plots.CURVES_NAME == train_module.CURVES_NAME == "curves.png" and plots.SUMMARY_NAME == "summary.png"


def test_importing_the_cli_does_not_import_matplotlib():
    code = ("import sys, sw.cli, sw.cli.train, sw.cli.demo, sw.cli.plot, sw.plots; "
            "sys.exit('matplotlib' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_train_writes_curves(two_runs):
    for run in two_runs:
        png_size(run / plots.CURVES_NAME)
        assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_curves_exist_when_a_later_epoch_crashes(capsys, tmp_path, monkeypatch):
    real_train = train_module.train

    def crash_after_first_epoch(config, **kwargs):
        draw = kwargs["on_epoch_end"]

        def hook(row):
            draw(row)
            if row["epoch"] == 1:
                raise ValueError("simulated crash in epoch 2")
        return real_train(config, **{**kwargs, "on_epoch_end": hook})

    monkeypatch.setattr(train_module, "train", crash_after_first_epoch)
    fails(capsys, ["train", "--bits", "1,2,6", "--epochs", "3", "--out", str(tmp_path), *QUICK], "simulated crash")
    png_size(tmp_path / plots.CURVES_NAME)
    assert [r["epoch"] for r in plots.read_metrics(tmp_path)] == [1]


def test_a_figure_that_cannot_be_drawn_does_not_stop_training(capsys, tmp_path, monkeypatch):
    def broken(run_dir):
        raise OSError("disk full")

    monkeypatch.setattr(plots, "write_run_curves", broken)
    assert main(["train", "--bits", "1,2,6", "--epochs", "2", "--out", str(tmp_path), *QUICK]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("warning: cannot draw the curves figure: disk full") == 1, captured.err
    assert [r["epoch"] for r in plots.read_metrics(tmp_path)] == [1, 2]


def test_figure_mode_follows_umask(tmp_path):
    write_metrics(tmp_path, 3)
    old = os.umask(0o027)
    try:
        path = plots.write_run_curves(tmp_path)
    finally:
        os.umask(old)
    assert path == tmp_path / plots.CURVES_NAME
    assert path.stat().st_mode & 0o777 == 0o640
    png_size(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([METRICS_NAME, plots.CURVES_NAME])


def test_read_metrics_skips_a_torn_line_and_keeps_the_last_row_of_an_epoch(tmp_path):
    write_metrics(tmp_path, 2)
    with open(tmp_path / METRICS_NAME, "a") as f:
        f.write(json.dumps({"epoch": 2, "test_acc": 0.99}) + "\n")
        f.write('{"epoch": 3, "test_a')
    rows = plots.read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["test_acc"] == 0.99


def test_plot_two_runs_side_by_side(capsys, tmp_path, two_runs):
    out = tmp_path / "both.png"
    assert main(["plot", *map(str, two_runs), "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    both_width, _ = png_size(out)
    one_width, _ = png_size(two_runs[0] / plots.CURVES_NAME)
    assert both_width > 1.2 * one_width  # one column a run


def test_plot_default_output(capsys, tmp_path, monkeypatch, two_runs):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(two_runs[0])]) == 0
    png_size(tmp_path / "curves.png")


def test_plot_summary(tmp_path):
    rows = [{"bits": [32, 32, 32], "runs": [{"test_acc": 0.98}, {"test_acc": 0.99}]},
            {"bits": [1, 1, 2], "runs": [{"test_acc": 0.88}, {"test_acc": 0.9}, {"test_acc": 0.87}]}]
    png_size(plots.plot_summary(rows, tmp_path / "s.png", title="t"))
    with pytest.raises(ValueError, match="no demo rows"):
        plots.plot_summary([], tmp_path / "e.png")


def test_plot_errors(capsys, tmp_path):
    good = write_metrics(tmp_path / "good", 2)
    empty = tmp_path / "empty"
    empty.mkdir()
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / METRICS_NAME).write_text("")
    out = tmp_path / "out.png"
    out.write_bytes(b"the old figure")
    fails(capsys, ["plot", str(good), str(empty), "-o", str(out)], "dorefa plot: error:", str(empty),
          f"no {METRICS_NAME}")
    fails(capsys, ["plot", str(tmp_path / "missing"), "-o", str(out)], "dorefa plot: error:", "not a directory")
    fails(capsys, ["plot", str(torn), "-o", str(out)], "dorefa plot: error:", "no epoch recorded")
    fails(capsys, ["plot", str(good), "-o", str(tmp_path / "out.pdf")], "dorefa plot: error:", "must end in .png")
    (tmp_path / "dir.png").mkdir()
    fails(capsys, ["plot", str(good), "-o", str(tmp_path / "dir.png")], "dorefa plot: error:", "is a directory")
    fails(capsys, ["plot", str(good), "-o", str(tmp_path / "nowhere" / "x.png")], "dorefa plot: error:",
          "does not exist")
    fails(capsys, ["plot"], "dorefa plot: error:", "RUN_DIR")
    assert out.read_bytes() == b"the old figure"  # nothing saved is lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "empty", "good", "out.png", "torn"]
