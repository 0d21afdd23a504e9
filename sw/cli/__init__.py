"""The ``dorefa`` command line: the composition root (nothing in the product imports it).

This module is the root only: :func:`main`, the parser, the command registry,
``--version`` and the one error format.  Each command lives in its own module
of this package (:mod:`sw.cli.train`, :mod:`.infer`, :mod:`.demo`, :mod:`.plot`,
:mod:`.generate`, :mod:`.build`), listed with its one-line help in
:data:`COMMAND_TABLE`.  The root imports **only the module of the command being
run** (``dorefa --help`` lists every command from the table, importing none),
so ``dorefa generate --list`` loads Amaranth and the gateware, never torch or
numpy.

A command module registers a function decorated with :func:`command`, which
receives its ``argparse`` sub-parser to fill in and returns the handler
``handler(args) -> exit code``::

    @command("generate")
    def _generate(parser):
        parser.add_argument(...)
        return lambda args: ...

To add a command, write such a module and add a line to :data:`COMMAND_TABLE`.
Modules import heavy code (torch, the data sets, the simulator) inside their
configure function or handler, as they need it.

Errors a user can fix (a bad ``--bits``, missing data, a corrupt checkpoint:
every :class:`UsageError`, ``ValueError``, ``OSError``, protocol error and
argparse error) print one line on stderr, ``dorefa <command>: error: ...``, and
exit with status 2, no traceback (set ``DOREFA_DEBUG=1`` to get it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

__all__ = ["main", "build_parser", "command", "COMMANDS", "COMMAND_TABLE", "UsageError", "version"]

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program killed by it
EXIT_INTERRUPTED = 130
DISTRIBUTION = "dorefa-hw"  # the package whose version --version prints

#: Every command: name -> (the module that registers it, its one-line help), in ``--help`` order.
COMMAND_TABLE: dict[str, tuple[str, str]] = {
    "train": ("sw.cli.train", "train a DoReFa network on a data set"),
    "infer": ("sw.cli.infer", "run a checkpoint's test set as integer inference on a backend, "
                              "checked bit for bit against the float model"),
    "demo": ("sw.cli.demo", "train the digits network at several bitwidths and seeds and print a "
                            "Table 1-style summary"),
    "plot": ("sw.cli.plot", "draw the loss and accuracy curves of training runs side by side (PNG)"),
    "generate": ("sw.cli.generate", "write Verilog for a hardware unit"),
    "build": ("sw.cli.build", "synthesise, place and route the training core for a board"),
}

#: The host's link errors (a :class:`ProtocolError` of this module) are user errors too.  The
#: class is looked up only when its module is loaded: an exception raised before can't be one,
#: and importing it here would load numpy for every command.
PROTOCOL_ERROR = ("sw.protocol", "ProtocolError")


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit status 2.

    The message says what is wrong, without a prefix: :func:`main` prints it
    as ``dorefa <command>: error: <message>``.  ``prog`` names the program in
    that prefix when it is not the command being run (argparse's errors name
    their own parser's).
    """

    def __init__(self, message: str, *, prog: str | None = None):
        super().__init__(message)
        self.prog = prog


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int | None]]


#: The commands registered so far (a command's module registers it when imported).
COMMANDS: dict[str, _Command] = {}


def command(name: str, *, help: str | None = None):
    """Register ``configure(parser) -> handler`` as command ``name``.

    ``help`` defaults to the command's line in :data:`COMMAND_TABLE` (the one
    place a built-in command's help is written); a command outside the table
    must give it.
    """
    if help is None:
        if name not in COMMAND_TABLE:
            raise ValueError(f"command {name!r} is not in COMMAND_TABLE: give its help")
        help = COMMAND_TABLE[name][1]

    def register(configure):
        COMMANDS[name] = _Command(name, help, configure)
        return configure
    return register


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')", prog=self.prog)


def _load(name: str) -> _Command:
    """The registered command ``name``, importing its module from :data:`COMMAND_TABLE` if needed."""
    if name not in COMMANDS:
        importlib.import_module(COMMAND_TABLE[name][0])
    return COMMANDS[name]


def _command_names() -> list[str]:
    """Every command: the table's, then any registered outside it."""
    return list(dict.fromkeys([*COMMAND_TABLE, *COMMANDS]))


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs: its first argument that is not an option (the top-level
    options, ``--help`` and ``--version``, take no value), if that names a command."""
    args = iter(argv)
    for arg in args:
        if arg == "--":
            arg = next(args, None)
        elif arg.startswith("-"):
            continue
        return arg if arg in _command_names() else None
    return None


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``dorefa`` parser, every command listed.

    Only the commands named in ``commands`` (default: all) are imported and
    configured, so their sub-parsers know their arguments; the others are
    listed by name and help only (:func:`main` configures just the one it runs).
    """
    names = _command_names()
    configured = set(names if commands is None else commands)
    parser = _Parser(prog="dorefa", description="DoReFa-HW: low-bitwidth DoReFa-Net training, "
                                                "golden model and hardware.")
    parser.add_argument("--version", action="version", version=f"dorefa {version()}",
                        help="print the version of dorefa-hw and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in names:
        if name in configured:
            cmd = _load(name)
            p = sub.add_parser(name, help=cmd.help, description=cmd.help)
            p.set_defaults(handler=cmd.configure(p))
        else:
            help = COMMANDS[name].help if name in COMMANDS else COMMAND_TABLE[name][1]
            sub.add_parser(name, help=help, description=help)
    return parser


def version() -> str:
    """The installed version of the ``dorefa-hw`` distribution (``"unknown"`` if it is not installed)."""
    from importlib import metadata
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (dorefa-hw is not installed)"


def _is_protocol_error(exc: BaseException) -> bool:
    module = sys.modules.get(PROTOCOL_ERROR[0])
    return module is not None and isinstance(exc, getattr(module, PROTOCOL_ERROR[1]))


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name if it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _error_line(prog: str, exc: BaseException) -> str:
    """``<prog>: error: <message>`` on one line; a message that already starts
    with that prefix does not get it twice."""
    prefix = f"{prog}: error: "
    message = one_line(exc)
    return message if message.startswith(prefix) else prefix + message


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dorefa`` console script; returns the exit status.

    Every error a user can fix (:class:`UsageError`, argparse's, ``ValueError``,
    ``OSError``, a protocol error) is one line on stderr, ``dorefa <command>:
    error: ...``, and exit status 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        name = chosen_command(argv)
        args, extras = build_parser(() if name is None else (name,)).parse_known_args(argv)
        if extras:  # argparse would name the top-level parser: name the command
            raise UsageError(f"unrecognized arguments: {' '.join(extras)} (see 'dorefa {args.command} --help')")
        status = args.handler(args)
    except BrokenPipeError:
        # The reader of our output went away (`dorefa generate --list | head -1`): not an
        # error of the user's; stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = EXIT_BROKEN_PIPE
    except UsageError as exc:
        name = getattr(args, "command", None)
        print(_error_line(exc.prog or f"dorefa{' ' + name if name else ''}", exc), file=sys.stderr)
        status = EXIT_USAGE
    except Exception as exc:
        # bad data/checkpoint/settings, files, the core link: one line; anything else is a bug
        if not isinstance(exc, (ValueError, OSError)) and not _is_protocol_error(exc):
            raise
        if os.environ.get("DOREFA_DEBUG"):
            raise
        name = getattr(args, "command", None)
        print(_error_line(f"dorefa{' ' + name if name else ''}", exc), file=sys.stderr)
        status = EXIT_USAGE
    except KeyboardInterrupt:
        print("dorefa: interrupted (the last finished epoch's checkpoint is kept; continue with --resume)",
              file=sys.stderr)
        status = EXIT_INTERRUPTED
    return int(status or 0)
