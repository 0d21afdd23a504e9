"""``dorefa demo``: every (W, A, G) over several seeds (mean, min..max), runs in
parallel worker processes with the same figures as a serial run; and one torch
thread count default for every command."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

from sw import train as train_module
from sw.cli import build_parser, demo as demo_cli, main
from sw.cli.demo import DemoConfig, run_demo
from sw.plots import SUMMARY_NAME
from sw.train import CHECKPOINT_NAME
from tests.checks import fails, png_size

pytestmark = pytest.mark.usefixtures("restore_threads")

QUICK = ["--width", "0.25", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--no-progress"]
TINY = DemoConfig(settings=((32, 32, 32), (1, 1, 2)), epochs=1, seeds=(0, 1),
                  base={"width": 0.25, "train_limit": 64, "test_limit": 32})


# --------------------------------------------------------------------------- threads (issue 9, item 12)

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_one_thread_default_for_every_command():
    defaults = {}
    for name, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            if "--threads" in action.option_strings:
                defaults[name] = action.default
    assert {"train", "infer", "demo"} <= set(defaults)
    assert set(defaults.values()) == {1}, defaults


@pytest.mark.parametrize("argv,threads", [([], 1), (["--threads", "2"], 2)])
def test_train_runs_with_the_thread_count(tmp_path, monkeypatch, argv, threads):
    seen = []
    real_train = train_module.train

    def spy(config, **kwargs):
        seen.append(torch.get_num_threads())
        return real_train(config, **kwargs)

    monkeypatch.setattr(train_module, "train", spy)
    torch.set_num_threads(3)  # what torch would pick on a bigger machine
    assert main(["train", "--bits", "1,2,6", "--epochs", "1", "--out", str(tmp_path), *QUICK, *argv]) == 0
    assert seen == [threads]


# --------------------------------------------------------------------------- demo (issue 9, items 13, 14)

def test_demo_defaults():
    assert demo_cli.DEMO.seeds == (0, 1, 2)
    assert demo_cli.DEMO.runs()[:3] == [((32, 32, 32), 0), ((32, 32, 32), 1), ((32, 32, 32), 2)]


@pytest.mark.parametrize("kwargs,pattern", [
    ({"seeds": ()}, "seeds must be"),
    ({"seeds": (0, 0)}, "seeds repeat"),
    ({"seeds": (-1,)}, "seeds must be"),
    ({"epochs": 0}, "epochs must be"),
    ({"settings": ((1, 2, 9),)}, "G must be"),
    ({"settings": ((1, 2, 6), (1, 2, 6))}, "settings repeat"),
])
def test_demo_config_is_validated(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        DemoConfig(**kwargs)


def test_parallel_runs_equal_serial_runs(tmp_path):
    quiet = [].append
    serial = run_demo(TINY, tmp_path / "serial", jobs=1, progress=False, log=quiet)
    parallel = run_demo(TINY, tmp_path / "parallel", jobs=2, log=quiet)
    keys = ("seed", "test_acc", "test_loss", "train_acc", "train_loss", "epochs")
    assert [[{k: r[k] for k in keys} for r in row["runs"]] for row in serial] == \
           [[{k: r[k] for k in keys} for r in row["runs"]] for row in parallel]
    for bits, seed in TINY.runs():
        rel = Path("-".join(map(str, bits))) / f"seed-{seed}" / CHECKPOINT_NAME
        a = torch.load(tmp_path / "serial" / rel, weights_only=True)["model"]
        b = torch.load(tmp_path / "parallel" / rel, weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The seeds do differ: the statistics are over distinct runs.
    assert serial[0]["runs"][0]["train_loss"] != serial[0]["runs"][1]["train_loss"]


def test_demo_command_writes_statistics_and_figure(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_cli, "DEMO", TINY)
    assert main(["demo", "--seeds", "3,5", "--jobs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| W | A | G | test accuracy, mean | min..max |" in out
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["bits"] for r in rows] == [[32, 32, 32], [1, 1, 2]]
    for row in rows:
        accs = [r["test_acc"] for r in row["runs"]]
        assert [r["seed"] for r in row["runs"]] == [3, 5] and row["seeds"] == [3, 5]
        assert row["test_acc"] == pytest.approx(sum(accs) / 2)
        assert (row["min"], row["max"]) == (min(accs), max(accs))
        assert all(r["epochs"] == 1 and 0 <= r["test_acc"] <= 1 for r in row["runs"])
        w, a, g = row["bits"]
        line = f"| {w} | {a} | {g} | {50 * sum(accs):.2f} % | {100 * min(accs):.2f}..{100 * max(accs):.2f} % | 3,5 |"
        assert line in out and line in (tmp_path / "results.md").read_text()
    for bits in ("32-32-32", "1-1-2"):
        for seed in (3, 5):
            assert (tmp_path / bits / f"seed-{seed}" / CHECKPOINT_NAME).exists()
    png_size(tmp_path / SUMMARY_NAME)
    # A second demo run starts over instead of refusing.
    assert main(["demo", "--seeds", "3", "--jobs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    assert [r["seeds"] for r in json.loads((tmp_path / "results.json").read_text())] == [[3], [3]]


def test_demo_jobs_default_to_the_cpu_count(tmp_path, monkeypatch):
    seen = {}

    def fake_run_demo(demo, out, *, jobs, threads, progress):
        seen.update(jobs=jobs, threads=threads, seeds=demo.seeds)
        return [{"bits": [1, 1, 2], "test_acc": 0.5, "min": 0.5, "max": 0.5, "seeds": list(demo.seeds),
                 "epochs": 1, "seconds": 1.0, "runs": []}]

    monkeypatch.setattr(demo_cli, "run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert seen == {"jobs": len(os.sched_getaffinity(0)), "threads": 1, "seeds": (0, 1, 2)}
    assert main(["demo", "--out", str(tmp_path), "--jobs", "3", "--threads", "2", "--seeds", "7"]) == 0
    assert seen == {"jobs": 3, "threads": 2, "seeds": (7,)}


@pytest.mark.parametrize("argv,pattern", [
    (["--seeds", "1,1"], "distinct integers"),
    (["--seeds", "-1"], "distinct integers"),
    (["--seeds", "a"], "distinct integers"),
    (["--seeds", ""], "distinct integers"),
    (["--jobs", "0"], "expected an integer >= 1"),
    (["--threads", "0"], "expected an integer >= 1"),
])
def test_demo_bad_arguments(capsys, tmp_path, argv, pattern):
    fails(capsys, ["demo", "--out", str(tmp_path), *argv], "dorefa demo: error:", pattern)
    assert list(tmp_path.iterdir()) == []
