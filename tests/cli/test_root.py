"""The CLI's root (:mod:`sw.cli`): one parser and registry whose commands are imported only
when run, so ``dorefa generate --list`` and ``dorefa build`` load no torch and no numpy; and
the CLI is a composition root: nothing in the product imports it (the ``cli`` layer
of tests/test_layering.py, which no other layer may import).

The import checks run a fresh interpreter (``python -X importtime``), whose import log
names every module loaded, so nothing this test process already imported hides one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sw import cli
from sw.cli import COMMAND_TABLE, chosen_command, main

ROOT = Path(__file__).resolve().parents[2]
HOST_STACK = {"torch", "numpy"}
#: Every command of ``dorefa``, written out here so that losing one from the table fails.
ALL_COMMANDS = ("train", "infer", "demo", "plot", "generate", "build")
# What the dorefa console script runs, then the name of every module loaded (also those that
# importlib.import_module loads, which -X importtime does not log), even after a SystemExit.
MAIN = ("import sys\nfrom sw.cli import main\ntry:\n    sys.exit(main())\n"
        "finally:\n    print('modules:', *sorted(sys.modules), file=sys.stderr)")


def run_logged(code: str, *argv: str, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``python -X importtime -c code argv...`` from the source tree; return the process
    and the name of every module it loaded (from the import log and a ``modules:`` line)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
        elif line.startswith("modules: "):
            names.update(line.split()[1:])
    assert "sw.cli" in names, done.stderr[-2000:]  # the log was read
    return done, names - {"package"}  # "package": the import log's header


def top_level(names) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_generate_list_loads_no_torch_or_numpy():
    done, loaded = run_logged(MAIN, "generate", "--list")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "popcount:" in done.stdout and "core:" in done.stdout
    assert not top_level(loaded) & HOST_STACK, sorted(top_level(loaded) & HOST_STACK)
    # only the command run is imported
    assert {name for name in loaded if name.startswith("sw.cli.")} == {"sw.cli.generate"}


def test_build_and_generate_load_no_torch_or_numpy_even_lazily():
    """The hardware commands' modules and everything they import on demand (the board
    build, the board tops, Verilator's lint)."""
    code = "import sw.cli.generate, sw.cli.build, boards.build, sim.lint"
    done, loaded = run_logged(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"sw.cli.generate", "sw.cli.build", "boards.build", "sim.lint"} <= loaded
    assert not top_level(loaded) & HOST_STACK, sorted(top_level(loaded) & HOST_STACK)


def test_build_error_loads_no_torch_or_numpy(tmp_path):
    done, loaded = run_logged(MAIN, "build", "--board", "de0", cwd=tmp_path)
    assert done.returncode == 2 and "dorefa build: error: unknown board 'de0'" in done.stderr
    assert not top_level(loaded) & HOST_STACK, sorted(top_level(loaded) & HOST_STACK)


def test_help_lists_every_command_and_imports_none():
    done, loaded = run_logged(MAIN, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    listed = {line.split()[0] for line in done.stdout.splitlines() if re.match(r"    \S", line)}
    assert listed == set(ALL_COMMANDS), done.stdout
    text = " ".join(done.stdout.split())
    for name in ALL_COMMANDS:
        assert f"{name} {COMMAND_TABLE[name][1]}" in text
    assert not {name for name in loaded if name.startswith("sw.cli.")}, sorted(loaded)
    assert not top_level(loaded) & HOST_STACK


def test_the_table_names_each_commands_module():
    assert tuple(COMMAND_TABLE) == ALL_COMMANDS
    cli.build_parser()  # imports every command's module
    for name, (module, help) in COMMAND_TABLE.items():
        registered = cli.COMMANDS[name]
        assert registered.configure.__module__ == module and registered.help == help


@pytest.mark.parametrize("argv, name", [
    ([], None), (["--help"], None), (["--version"], None), (["frobnicate", "train"], None),
    (["train", "--bits", "1,2,6"], "train"), (["-h", "generate", "--list"], "generate"),
    (["--", "plot", "x"], "plot"), (["build", "generate"], "build"),
])
def test_chosen_command(argv, name):
    assert chosen_command(argv) == name


def test_command_registry(capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))

    @cli.command("hello", help="say hello")
    def _hello(parser):
        parser.add_argument("--name", default="world")
        return lambda args: print(f"hello {args.name}") or 0

    assert main(["hello", "--name", "fpga"]) == 0
    assert capsys.readouterr().out == "hello fpga\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "say hello" in capsys.readouterr().out


def test_a_command_outside_the_table_needs_its_help():
    with pytest.raises(ValueError, match="not in COMMAND_TABLE"):
        cli.command("hello")


def test_help_of_one_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--help"])
    assert info.value.code == 0
    assert "--list" in capsys.readouterr().out


def test_a_reader_that_goes_away_is_not_an_error():
    """``dorefa generate --list | head -1``: the pipe closes before the listing is written;
    dorefa stops quietly with 141 (128 + SIGPIPE), no "error: [Errno 32] Broken pipe"."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-m", "sw.cli", "generate", "--list"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # long before the interpreter has started, let alone written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert stderr == ""
