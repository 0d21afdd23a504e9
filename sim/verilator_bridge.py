# amaranth: UnusedElaboratable=no
"""The simulated board: the training core served on a pseudo-terminal, ``serial:/dev/pts/N`` on gateware.

:class:`VerilatorBridge` compiles a :class:`hw.core.TrainingCore` with
Verilator and a C++ main loop (:mod:`sim.verilator_harness`; cached in
``sim_build/``) and runs it as a child process that opens a pty;
:attr:`~CoreBridge.device` is its slave, to be opened by
:class:`sw.driver.SerialTransport` exactly as a board's USB-UART would be, so
the host's bytes cross a real tty into the simulated gateware::

    with VerilatorBridge(CORE_DEFAULTS) as bridge:
        client = CoreClient(SerialTransport(bridge.device))
        client.ping()
        bridge.stats()  # {"cycles": ..., "bytes_in": ..., "bytes_out": ..., "simulating_s": ...}

:class:`CocotbBridge` serves the same core through cocotb
(:mod:`sim.cocotb_bridge`, the core inside a
:class:`sim.byte_window.ByteWindow`), under Verilator or Icarus: the Icarus
bridge, and the baseline of ``bench/sim_bridge.py``.  Both count the cycles
they simulate and the bytes they move (:meth:`~CoreBridge.stats`).

Fault injection for tests and demonstrations: :meth:`~CoreBridge.reset_core`
(the core's reset pin), :meth:`~CoreBridge.drop_link` (the cable pulled: the
host's next access fails), :meth:`~CoreBridge.reconnect` (a new pty, as a
re-plugged adapter) and :meth:`~CoreBridge.pause` (the clock stopped, so that
a fault lands at an exact point).

Run as ``python -m sim.verilator_bridge WORKDIR`` it is the cocotb bridge's
process (``WORKDIR/config.json`` says what to build).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sw.contract.link import RX_IDLE_TIMEOUT_S
from sw.driver import SerialTransport

__all__ = ["CoreBridge", "VerilatorBridge", "CocotbBridge", "BridgeError", "SIMULATORS",
           "SimulatedSerialTransport"]

#: Simulators :class:`CocotbBridge` can run the core on.
SIMULATORS = ("verilator", "icarus")

#: Idle timeout of the simulated core, in cycles (simulated in one go after a silence).
IDLE_TIMEOUT = 4096

#: Seconds to wait for the bridge's pty: a first Verilator build of the core takes minutes.
STARTUP_TIMEOUT_S = 1200.0

#: File in the bridge's work directory where its process reports the simulator build
#: (one line per event), for :class:`CocotbBridge` to pass on.
PROGRESS_FILE = "progress"

#: File in the bridge's work directory where its process writes its counts on ``stats``.
STATS_FILE = "stats.json"

#: How long the one-time (optimised) build of the core usually takes, per simulator.
TYPICAL_BUILD = {"verilator": "about 1-2 minutes", "icarus": "a few seconds"}


def _log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_messages(simulator: str):
    """``on_build`` for :func:`sim.cocotb_runner.run_cocotb` as progress lines:
    returns ``on_build(seconds)`` -> the line to print (``seconds`` ``None``:
    the build starts)."""
    name = {"verilator": "Verilator", "icarus": "Icarus Verilog"}[simulator]

    def message(seconds):
        if seconds is None:
            return (f"building the simulated core with {name} (one time, usually "
                    f"{TYPICAL_BUILD[simulator]})...")
        return f"built in {seconds:.0f} s"
    return message


class BridgeError(RuntimeError):
    """The simulated core could not be started, or its process died."""


class CoreBridge:
    """A :class:`hw.core.TrainingCore` simulated by a child process and served on a new pty.

    The common part of :class:`VerilatorBridge` and :class:`CocotbBridge`:
    the work directory, the control and acknowledgement FIFOs, the wait for
    the pty, the control commands and :meth:`stats`.  A subclass checks its
    parameters and says how to start the child (:meth:`_start`).

    The simulated core's clock does not follow the wall clock: after
    :data:`sw.contract.link.RX_IDLE_TIMEOUT_S` of silence from the host the
    child simulates the core's ``idle_timeout`` cycles at once, so the timeout
    acts as on a board.
    """

    def __init__(self, core_params: dict | None, *, startup_timeout: float, log):
        from hw.core import TrainingCore

        params = dict(core_params or {})
        params.setdefault("idle_timeout", IDLE_TIMEOUT)
        TrainingCore(**params)  # raises ValueError on bad parameters, before a build
        self.params = params
        self.process = None
        self.workdir = Path(tempfile.mkdtemp(prefix="dorefa-bridge-"))
        os.mkfifo(self.workdir / "control")
        os.mkfifo(self.workdir / "ack")
        self.log = self.workdir / "bridge.log"
        self._progress = Progress(self.workdir / PROGRESS_FILE, log)
        # Held open for writing for the bridge's life: the simulation quits when it closes
        # (if this process dies, too).
        self._control = os.open(self.workdir / "control", os.O_RDWR)
        self._ack = os.open(self.workdir / "ack", os.O_RDWR | os.O_NONBLOCK)
        self._acks = b""
        try:
            command = self._start(log)
        except BaseException:
            self.close()
            raise
        with open(self.log, "wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent,
                                            start_new_session=True)
        self.device = self._wait_for_device(startup_timeout)

    def _start(self, log) -> list[str]:
        """Prepare the child (build what it needs, write its configuration in the work
        directory); return its command line."""
        raise NotImplementedError

    @property
    def idle_cycles(self) -> int:
        """Cycles simulated at once after a host silence: the core's idle timeout, and two
        cycles for it to act."""
        return self.params["idle_timeout"] + 2

    def _wait_for_device(self, timeout: float) -> str:
        path = self.workdir / "device"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._progress.relay()
            if path.exists():
                self._progress.relay()
                return path.read_text()
            if self.process.poll() is not None:
                error = BridgeError(f"the simulated core exited (status {self.process.returncode}) before "
                                    f"opening its pty; its log ends:\n{self._log_tail()}")
                self.close()
                raise error
            time.sleep(0.01)
        error = BridgeError(f"the simulated core did not open its pty within {timeout:g} s; "
                            f"its log ends:\n{self._log_tail()}")
        self.close()
        raise error

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _command(self, word: str, timeout: float = 60.0) -> None:
        """Send a control line and wait until the simulation has acted on it."""
        if self._control is None or self.process is None or self.process.poll() is not None:
            raise BridgeError(f"the simulated core is not running (see {self.log})")
        os.write(self._control, word.encode() + b"\n")
        if word == "quit":
            return
        deadline = time.monotonic() + timeout
        while (word.encode() + b"\n") not in self._acks:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise BridgeError(f"the simulated core did not carry out {word!r} (see {self.log})")
            select.select([self._ack], [], [], min(remaining, 0.1))
            try:
                self._acks += os.read(self._ack, 4096)
            except BlockingIOError:
                pass
        self._acks = self._acks.split(word.encode() + b"\n", 1)[1]

    def pause(self) -> None:
        """Stop the simulation (clock and pty) until the next command but :meth:`stats`.

        With it a fault lands at an exact point of a request however fast the
        core answers: ``pause()``, the host writes a RUN, :meth:`reset_core`
        (which first lets the core take every byte written) resets the core
        while it executes that RUN."""
        self._command("pause")

    def reset_core(self) -> None:
        """Pulse the core's reset (it forgets its matrix and any half-received request),
        after the core has taken every byte the host has written so far."""
        self._command("reset")

    def drop_link(self) -> None:
        """Close the pty, as if the cable were pulled: the host's next read or write fails."""
        self._command("drop")

    def reconnect(self) -> str:
        """After :meth:`drop_link`: a new pty for the same running core; returns its
        device path (the system may reuse the old one's)."""
        self._command("connect")  # acknowledged once the new path is written
        self.device = (self.workdir / "device").read_text()
        return self.device

    def stats(self) -> dict:
        """What the simulation has counted since it started: ``cycles`` simulated, ``bytes_in``
        taken by the core, ``bytes_out`` sent by it, and (where the child can tell)
        ``simulating_s``, the wall time spent in the model rather than waiting for the host."""
        self._command("stats")
        return json.loads((self.workdir / STATS_FILE).read_text())

    def close(self, timeout: float = 30.0) -> None:
        """Stop the simulation (idempotent); the pty disappears."""
        if self.process is not None and self.process.poll() is None:
            try:
                self._command("quit")
                self.process.wait(timeout)
            except (BridgeError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._control is not None:
            os.close(self._control)
            os.close(self._ack)
            self._control = None
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_control", None) is not None:
            self.close()


class VerilatorBridge(CoreBridge):
    """The simulated board: the core compiled by Verilator with a C++ main loop
    (:mod:`sim.verilator_harness`, ``sim/native/harness.cpp``), served on a new pty.

    No cocotb and no Python in the hot path: the loop clocks the core flat
    out while it works and sleeps in ``poll()`` while it idles.

    Parameters
    ----------
    core_params : dict
        :class:`hw.core.TrainingCore` parameters (checked here, before any
        build); ``idle_timeout`` (cycles) defaults to :data:`IDLE_TIMEOUT`.
    log : callable
        Gets the progress lines of a build that is not cached (what runs, how
        long it usually takes, then how long it took); default: stderr.
    bare : bool
        Serve the core without :class:`sim.harness_top.HarnessTop` (slower: the
        baseline ``bench/sim_bridge.py`` measures the top against).
    """

    def __init__(self, core_params: dict | None = None, *, startup_timeout: float = STARTUP_TIMEOUT_S,
                 log=_log_stderr, bare: bool = False):
        self.bare = bare
        super().__init__(core_params, startup_timeout=startup_timeout, log=log)

    def _start(self, log) -> list[str]:
        from .verilator_harness import build_harness

        message = build_messages("verilator")
        executable = build_harness(self.params, bare=self.bare, on_build=lambda seconds: log(message(seconds)))
        return [str(executable), str(self.workdir), str(self.idle_cycles), f"{RX_IDLE_TIMEOUT_S * 1000:g}"]


class CocotbBridge(CoreBridge):
    """The same served core run by cocotb (:mod:`sim.cocotb_bridge`) under Verilator or
    Icarus: the Icarus bridge, and the baseline :class:`VerilatorBridge` is measured against.

    Parameters as :class:`VerilatorBridge`, and:

    window : int
        Bytes moved per access between the pty and the simulation
        (:class:`sim.byte_window.ByteWindow`).
    simulator : str
        ``verilator`` (default) or ``icarus``.
    """

    def __init__(self, core_params: dict | None = None, *, window: int = 512, simulator: str = "verilator",
                 startup_timeout: float = STARTUP_TIMEOUT_S, log=_log_stderr):
        from hw.params import check_int

        if simulator not in SIMULATORS:
            raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
        check_int("window", window, 1, 1 << 16)
        self.window, self.simulator = int(window), simulator
        super().__init__(core_params, startup_timeout=startup_timeout, log=log)

    def _start(self, log) -> list[str]:
        (self.workdir / "config.json").write_text(json.dumps(
            {"core": self.params, "window": self.window, "simulator": self.simulator}))
        return [sys.executable, "-m", "sim.verilator_bridge", str(self.workdir)]


class Progress:
    """Passes on the lines the bridge process appends to ``path`` (each once, whole lines only)."""

    def __init__(self, path: Path, log):
        self.path, self.log, self._offset = Path(path), log, 0

    def relay(self) -> None:
        try:
            with open(self.path, "rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            self.log(line)


def report_progress(path: Path, simulator: str):
    """The bridge process's ``on_build``: appends each progress line to ``path``."""
    message = build_messages(simulator)

    def on_build(seconds):
        with open(path, "a") as file:
            file.write(message(seconds) + "\n")
    return on_build


class SimulatedSerialTransport(SerialTransport):
    """:class:`sw.driver.SerialTransport` on the pty of its own ``bridge`` (a
    :class:`CoreBridge` class, :class:`VerilatorBridge` by default; ``bridge_args``
    are its arguments); closing it also stops the simulation.
    ``timeout`` (seconds) bounds the port's writes and is the
    :attr:`~sw.driver.Transport.reply_timeout` a client waits for each reply."""

    def __init__(self, *bridge_args, timeout: float = 60.0, bridge: type = None, **bridge_kwargs):
        self.reply_timeout = float(timeout)
        self.bridge = (bridge or VerilatorBridge)(*bridge_args, **bridge_kwargs)
        try:
            super().__init__(self.bridge.device, timeout=timeout)
        except BaseException:
            self.bridge.close()
            raise

    def close(self) -> None:
        super().close()
        self.bridge.close()


def main(workdir: str) -> int:
    """The cocotb bridge's process: build the core and serve it until ``quit``."""
    from hw.core import TrainingCore
    from sim.byte_window import ByteWindow
    from sim.cocotb_runner import run_cocotb

    config = json.loads((Path(workdir) / "config.json").read_text())
    harness = ByteWindow(TrainingCore(**config["core"]), window=config["window"])
    run_cocotb(harness, toplevel="core_bridge", test_module="sim.cocotb_bridge", simulator=config["simulator"],
               optimize=True, on_build=report_progress(Path(workdir) / PROGRESS_FILE, config["simulator"]),
               config={"workdir": workdir, "window": config["window"], "stats_file": STATS_FILE,
                       "idle_cycles": config["core"]["idle_timeout"] + 2, "silence_s": RX_IDLE_TIMEOUT_S})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
