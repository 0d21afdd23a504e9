"""PNG figures of training runs and of the demo, drawn with matplotlib.

* :func:`write_run_curves` -- ``RUN_DIR/curves.png``: loss and accuracy per
  epoch, train and test, from ``RUN_DIR/metrics.jsonl`` (``dorefa train``
  redraws it after every epoch);
* :func:`plot_runs` -- the curves of several runs side by side, one column a
  run (``dorefa plot``);
* :func:`plot_summary` -- the demo's Table-1 summary: test accuracy per
  (W, A, G), the mean over seeds with the seeds' min..max as error bars.

matplotlib is imported only when a figure is drawn (with the non-interactive
Agg backend), so importing this module or :mod:`sw.cli` does not load it.  Every
file is written atomically (a temp file in the same directory, then
``os.replace``) with mode ``0o666 & ~umask``, like any file a program creates:
a crash never leaves a half-written PNG, and an old figure stays until the new
one is complete.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from .files import write_atomic
from .train import CURVES_NAME, METRICS_NAME, metrics_rows

__all__ = ["CURVES_NAME", "SUMMARY_NAME", "read_metrics", "write_run_curves", "plot_runs",
           "plot_summary", "save_figure"]

# The demo's summary figure in its output directory (``dorefa train``'s curves
# figure is sw.train.CURVES_NAME).
SUMMARY_NAME = "summary.png"


# --------------------------------------------------------------------------- data

def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch rows of ``run_dir/metrics.jsonl``, one per epoch, in epoch order.

    Unparseable lines (a half-written last line after a crash) are skipped;
    when an epoch appears twice the later row wins.  Raises ``ValueError``
    naming the path when ``run_dir`` is not a directory, has no metrics file,
    or the file records no epoch.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a directory (expected a 'dorefa train' output directory)")
    path = run_dir / METRICS_NAME
    if not path.is_file():
        raise ValueError(f"{run_dir}: no {path.name} (not a 'dorefa train' output directory?)")
    rows = metrics_rows(path)
    if not rows:
        raise ValueError(f"{path}: no epoch recorded yet")
    return rows


def _label(rows: Sequence[dict], fallback: str) -> str:
    """``W,A,G=1,2,6 seed 0`` from a run's metrics rows (``fallback`` if they lack it)."""
    bits = rows[-1].get("bits")
    seed = rows[-1].get("seed")
    if isinstance(bits, list) and len(bits) == 3:
        text = "W,A,G=" + ",".join(map(str, bits))
        return text + (f" seed {seed}" if seed is not None else "")
    return fallback


# --------------------------------------------------------------------------- drawing

def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _series(rows: Sequence[dict], key: str) -> list[float]:
    values = []
    for row in rows:
        value = row.get(key)
        values.append(float(value) if isinstance(value, (int, float)) else math.nan)
    return values


def _draw_curves(loss_ax, acc_ax, rows: Sequence[dict], title: str) -> None:
    epochs = [row["epoch"] for row in rows]
    marker = "o" if len(rows) <= 30 else None
    loss_ax.plot(epochs, _series(rows, "train_loss"), marker=marker, ms=3, label="train")
    loss_ax.plot(epochs, _series(rows, "test_loss"), marker=marker, ms=3, label="test")
    acc_ax.plot(epochs, [100 * v for v in _series(rows, "train_acc")], marker=marker, ms=3, label="train")
    acc_ax.plot(epochs, [100 * v for v in _series(rows, "test_acc")], marker=marker, ms=3, label="test")
    loss_ax.set_title(title, fontsize=10)
    loss_ax.set_ylabel("cross-entropy loss")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_xlabel("epoch")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    last = rows[-1].get("test_acc")
    if isinstance(last, (int, float)) and math.isfinite(last):
        acc_ax.annotate(f"test {last:.2%}", xy=(epochs[-1], 100 * last), xytext=(-4, -14),
                        textcoords="offset points", ha="right", fontsize=8)


def plot_runs(run_dirs: Sequence[str | os.PathLike], path: str | os.PathLike) -> Path:
    """Draw the loss (top) and accuracy (bottom) curves of each run in ``run_dirs``
    side by side, one column a run, into the PNG ``path``; return the path.

    Every run's metrics are read before anything is written (see
    :func:`read_metrics` for the errors).
    """
    if not run_dirs:
        raise ValueError("no run directory given")
    runs = [(Path(d), read_metrics(d)) for d in run_dirs]
    plt = _pyplot()
    n = len(runs)
    fig, axes = plt.subplots(2, n, figsize=(min(4.2 * n, 40), 6.4), squeeze=False, sharex="col")
    try:
        for i, (run_dir, rows) in enumerate(runs):
            _draw_curves(axes[0][i], axes[1][i], rows, f"{run_dir}\n{_label(rows, run_dir.name)}")
        fig.tight_layout()
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def write_run_curves(run_dir: str | os.PathLike) -> Path:
    """(Re)draw ``run_dir/curves.png`` from ``run_dir/metrics.jsonl``; return its path."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True)
    try:
        _draw_curves(loss_ax, acc_ax, rows, _label(rows, run_dir.name))
        fig.tight_layout()
        return save_figure(fig, run_dir / CURVES_NAME)
    finally:
        plt.close(fig)


def plot_summary(rows: Sequence[dict], path: str | os.PathLike, *, title: str = "") -> Path:
    """The demo's summary figure: for each row (``bits``, ``runs`` with one
    ``test_acc`` per seed) the mean test accuracy as a point with the seeds'
    min..max as an error bar, and each seed as a small dot beside it; return the path."""
    if not rows:
        raise ValueError("no demo rows to draw")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 * len(rows) + 1.5), 4.2))
    try:
        for x, row in enumerate(rows):
            accs = [100 * r["test_acc"] for r in row["runs"]]
            mean = sum(accs) / len(accs)
            ax.errorbar([x], [mean], yerr=[[mean - min(accs)], [max(accs) - mean]], fmt="o", ms=7,
                        capsize=6, color="C0", label="mean, seeds min..max" if x == 0 else None)
            ax.plot([x + 0.12] * len(accs), accs, "o", ms=4, color="C1", alpha=0.7,
                    label="one seed" if x == 0 else None)
            ax.annotate(f"{mean:.2f}", xy=(x, mean), xytext=(-10, -3), textcoords="offset points", fontsize=8,
                        ha="right")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([_bits_label(row["bits"]) for row in rows])
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_xlabel("bitwidths W, A, G (32: not quantized)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        if title:
            ax.set_title(title, fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def _bits_label(bits: Iterable[int]) -> str:
    return ",".join(map(str, bits))


# --------------------------------------------------------------------------- files

def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (temp file beside it, then
    ``os.replace``), mode ``0o666 & ~umask``; return ``path``.

    ``path`` must end in ``.png`` and must not be a directory; the old file is
    untouched on any error.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: a figure file must end in .png")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a .png file name")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: directory {path.parent} does not exist")
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100), binary=True)
    return path
