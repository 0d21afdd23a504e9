"""Every command's errors: one line ``dorefa <command>: error: ...`` (the prefix once), exit 2;
``--version``; the bounds of ``train --seed`` / ``--width`` and ``infer --backend``'s list."""

import re
from importlib import metadata

import pytest

from sw.cli import COMMAND_TABLE, COMMANDS, build_parser, main
from sw.inference import INFER_BACKENDS
from sw.train import TrainConfig


def _one_error_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"dorefa {command}: error: "), err
    assert lines[0].count(": error:") == 1, err
    return lines[0]


def test_every_command_is_covered():
    build_parser()  # registers the commands of every module
    assert {"train", "infer", "demo", "plot", "generate", "build"} == set(COMMAND_TABLE) <= set(COMMANDS)


@pytest.mark.parametrize("command", ["train", "infer", "demo", "generate", "build", "plot"])
def test_argparse_errors_have_the_prefix_once(command, tmp_path, monkeypatch, capsys):
    build_parser()
    if command not in COMMANDS:
        pytest.skip(f"no {command} command here")
    monkeypatch.chdir(tmp_path)
    assert main([command, "--colour", "red"]) == 2
    line = _one_error_line(capsys.readouterr().err, command)
    assert "unrecognized arguments: --colour" in line or "the following arguments are required" in line


@pytest.mark.parametrize("argv, message", [
    # raised by the commands themselves (generate's had no prefix, build's wrote its own)
    (["generate"], "name a unit to generate"),
    (["generate", "adder", "-o", "x.v"], "unknown unit 'adder'"),
    (["generate", "threshold"], "give the output file with -o FILE.v"),
    (["generate", "threshold", "--set", "act_bits=x", "-o", "x.v"], "act_bits must be an integer"),
    (["build"], "name the board with --board"),
    (["build", "--board", "de0"], "unknown board 'de0'"),
    (["build", "--board", "icebreaker", "--pe", "0"], "pe must be in"),
    (["build", "--board", "icebreaker", "--report", "r.json"], "--report takes a file stem"),
    (["train", "--bits", "1,2,4", "--dataset", "svhn"], "--dataset svhn is read from files"),
    (["infer", "missing.pt"], "missing.pt"),
])
def test_command_errors_have_the_prefix_once(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in _one_error_line(capsys.readouterr().err, argv[0])
    assert list(tmp_path.iterdir()) == []


def test_top_level_errors_name_dorefa(capsys):
    assert main(["frobnicate"]) == 2
    line = capsys.readouterr().err.splitlines()
    assert len(line) == 1 and line[0].startswith("dorefa: error: ") and line[0].count(": error:") == 1


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"dorefa \d+\.\d+\S*\n", out), out
    assert out == f"dorefa {metadata.version('dorefa-hw')}\n"


def test_infer_lists_exactly_the_backends_it_accepts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["infer", "missing.pt", "--backend", "foo"]) == 2
    line = _one_error_line(capsys.readouterr().err, "infer")
    listed = re.search(r"allowed: ([^;(]+?)(?: \(see|$)", line).group(1).split(", ")
    assert listed == list(INFER_BACKENDS) and "torch" not in listed
    for backend in listed:
        backend = backend.replace("DEVICE", "/dev/ttyUSB0")
        assert main(["infer", "missing.pt", "--backend", backend]) == 2
        err = _one_error_line(capsys.readouterr().err, "infer")
        assert "backend" not in err and "missing.pt" in err, (backend, err)  # got past the backend check


@pytest.mark.parametrize("backend", ["torch", "serial:", "Ref"])
def test_infer_refuses_backends_it_cannot_run(backend, capsys):
    assert main(["infer", "missing.pt", "--backend", backend]) == 2
    assert f"unknown backend {backend!r}" in _one_error_line(capsys.readouterr().err, "infer")


@pytest.mark.parametrize("seed", ["99999999999999999999999", "4294967296", "-1", "x"])
def test_train_seed_is_bounded(seed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--bits", "1,2,4", "--seed", seed, "--epochs", "1", "--train-limit", "8",
                 "--test-limit", "8", "--no-progress", "--out", "run"]) == 2
    assert "--seed: expected an integer in 0..4294967295" in _one_error_line(capsys.readouterr().err, "train")
    assert list(tmp_path.iterdir()) == []


def test_seed_bounds_in_config_and_parser():
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1
    with pytest.raises(ValueError, match=r"seed must be an integer in 0\.\.4294967295"):
        TrainConfig(seed=2**32)
    assert build_parser().parse_args(["train", "--bits", "1,2,4", "--seed", "4294967295"]).seed == 2**32 - 1


@pytest.mark.parametrize("width", ["0", "-1", "8.01", "inf", "nan", "x"])
def test_train_width_is_bounded(width, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--bits", "1,2,4", "--width", width, "--out", "run"]) == 2
    assert "--width: width multiplier must be in (0, 8]" in _one_error_line(capsys.readouterr().err, "train")
    assert list(tmp_path.iterdir()) == []


def test_train_help_states_the_bounds(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "random seed, 0..4294967295" in text
    assert "channel-width multiplier, in (0, 8]" in text
    assert build_parser().parse_args(["train", "--bits", "1,2,4", "--width", "8"]).width == 8.0
