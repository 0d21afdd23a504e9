"""cocotb side of :class:`sim.verilator_bridge.VerilatorBridge`: a simulated core on a pseudo-terminal.

This module is the cocotb "test" the bridge runs on a :class:`sim.byte_window.ByteWindow`
around a :class:`hw.core.TrainingCore` (under Verilator, or Icarus).  Its one
coroutine, :func:`serve`, opens a pseudo-terminal, writes the slave's path to
``<workdir>/device`` and then, until told to quit, moves bytes between the
pty's master and the core's byte streams, a window at a time, while the
simulator runs the core.  Config (:func:`sim.cocotb_runner.tb_config`):
``workdir``, ``window``, ``idle_cycles``, ``silence_s``, ``stats_file``.

Time.  While the core works (a request pending, being executed or
answered) the simulation runs flat out, waking this coroutine only when a
reply pauses or input drains (``attention``).  While the core idles nothing
in it changes but its idle timer, so the simulation stands still while the
coroutine waits for the host; once the host has been silent for
``silence_s`` of wall-clock time (the protocol's
:data:`sw.contract.link.RX_IDLE_TIMEOUT_S`) it simulates ``idle_cycles`` (the
core's idle timeout) at once, so a half-received request is dropped after
a silence as a board would drop it.

Control.  Lines written to the FIFO ``<workdir>/control`` act between
windows, each answered by the same line on the FIFO ``<workdir>/ack`` once
done: ``reset`` first lets the core take every byte the host has written
so far, then holds its reset for two cycles (so a reset lands exactly
after what the host sent: in the middle of a request, or while one is
executed); ``drop`` closes the pty (the host's next access fails: a pulled
cable); ``connect`` opens a new pty and rewrites ``device``; ``pause`` stops
the simulation and the pty until the next command but ``stats``; ``stats`` writes
``<workdir>/<stats_file>``: the cycles simulated so far (from the simulation
time) and the bytes loaded into the core's window and taken from it; ``quit`` ends
the simulation, as does the end of the control FIFO (the host's process is
gone).
"""

from __future__ import annotations

import json
import os
import select
import time
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer

from sim.cocotb_runner import tb_config

#: Longest wall-clock wait for the host at a time while the core idles, in seconds.
IDLE_POLL_S = 0.01

#: Cycles simulated at most between two looks at the pty while the core works.
BUSY_SLICE_CYCLES = 4096

#: Cycles simulated before the core is taken to be idle: it reacts to a request's
#: last byte within a few cycles (``rx.ready`` falls while it executes and answers).
SETTLE_CYCLES = 32

PERIOD_NS = 10  # simulated clock period; only cycles matter


def open_pty(workdir: str) -> tuple[int, int]:
    """A new raw pty: returns (master, slave), the master non-blocking; the
    slave's path is announced in ``workdir/device``.  Holding the slave open
    here too keeps the master readable-only-with-data while no host has it
    open (otherwise the master reports EIO, and a wait on it would spin)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    staged = os.path.join(workdir, "device.tmp")
    with open(staged, "w") as handle:
        handle.write(os.ttyname(slave))
    os.replace(staged, os.path.join(workdir, "device"))
    return master, slave


class Link:
    """The pty end of the bridge: bytes from the host, bytes to the host."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.master, self.slave = open_pty(workdir)
        self.to_host = bytearray()

    def receive(self) -> bytes:
        """What the host has written (non-blocking; ``b""`` when nothing or no host)."""
        if self.master is None:
            return b""
        try:
            return os.read(self.master, 1 << 16)
        except BlockingIOError:
            return b""

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the host and write what the pty takes now."""
        if self.master is None:
            return  # the cable is pulled: bytes are lost
        self.to_host += data
        while self.to_host:
            try:
                written = os.write(self.master, self.to_host)
            except BlockingIOError:
                return
            del self.to_host[:written]

    def drop(self) -> None:
        if self.master is not None:
            os.close(self.master)
            os.close(self.slave)
            self.master = self.slave = None
        self.to_host.clear()

    def connect(self) -> None:
        self.drop()
        self.master, self.slave = open_pty(self.workdir)

    def wait(self, control: int, timeout: float) -> None:
        """Sleep until the host writes, the pty can take queued bytes, or a control line comes."""
        readers = [control] + ([self.master] if self.master is not None else [])
        writers = [self.master] if self.master is not None and self.to_host else []
        select.select(readers, writers, [], timeout)


class Bridge:
    """Moves bytes between :class:`Link` and the :class:`~sim.byte_window.ByteWindow` ``dut``."""

    def __init__(self, dut, config: dict):
        self.dut = dut
        self.window = int(config["window"])
        self.idle_cycles = int(config["idle_cycles"])
        self.silence_s = float(config["silence_s"])
        self.link = Link(config["workdir"])
        # The host holds the FIFO's write end: end of file means it has gone (quit then).
        self.control = os.open(os.path.join(config["workdir"], "control"), os.O_RDONLY | os.O_NONBLOCK)
        self.control_buffer = b""
        self.ack = os.open(os.path.join(config["workdir"], "ack"), os.O_WRONLY | os.O_NONBLOCK)
        self.from_host = bytearray()
        self.in_toggle = 0
        self.out_toggle = 0
        self.stats_path = os.path.join(config["workdir"], config["stats_file"])
        self.bytes_in = self.bytes_out = 0

    def write_stats(self) -> None:
        """The cycles simulated and the bytes moved so far, as :meth:`sim.verilator_bridge.CoreBridge.stats` reads them."""
        cycles = int(get_sim_time("ns")) // PERIOD_NS
        staged = self.stats_path + ".tmp"
        with open(staged, "w") as handle:
            json.dump({"cycles": cycles, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                       "simulating_s": None}, handle)
        os.replace(staged, self.stats_path)

    def commands(self) -> list[str]:
        try:
            data = os.read(self.control, 4096)
        except BlockingIOError:
            data = None
        if data == b"":
            return ["quit"]  # the host process died without saying quit
        self.control_buffer += data or b""
        *lines, self.control_buffer = self.control_buffer.split(b"\n")
        return [line.decode().strip() for line in lines if line.strip()]

    async def drain(self) -> None:
        """Simulate until the core has taken every byte the host has written so far."""
        self.exchange()
        while self.from_host or not int(self.dut.in_empty.value):
            await Timer(SETTLE_CYCLES * PERIOD_NS, unit="ns")
            self.from_host += self.link.receive()
            self.exchange()

    async def reset(self) -> None:
        dut = self.dut
        self.from_host.clear()
        self.in_toggle = self.out_toggle = 0
        dut.in_toggle.value = dut.out_toggle.value = 0
        dut.rst.value = 1
        await ClockCycles(dut.clk, 2)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    def exchange(self) -> bool:
        """One look at both sides; returns whether the core has work (input pending, or
        executing or answering a request)."""
        dut = self.dut
        self.from_host += self.link.receive()
        if int(dut.in_empty.value):
            if self.from_host:
                chunk = bytes(self.from_host[:self.window])
                del self.from_host[:len(chunk)]
                dut.in_data.value = int.from_bytes(chunk, "little")
                dut.in_count.value = len(chunk)
                self.bytes_in += len(chunk)
                self.in_toggle ^= 1
                dut.in_toggle.value = self.in_toggle
                loaded = True
            else:
                loaded = False
        else:
            loaded = True
        count = int(dut.out_count.value)
        if count:
            received = int(dut.out_data.value) >> (8 * (self.window - count))
            dut.out_take.value = count
            self.bytes_out += count
            self.out_toggle ^= 1
            dut.out_toggle.value = self.out_toggle
            self.link.send(received.to_bytes(count, "little"))
        elif self.link.to_host:
            self.link.send(b"")
        dut.wake_on_empty.value = 1 if self.from_host else 0
        return loaded or bool(self.from_host) or bool(int(dut.core_busy.value))

    async def run(self) -> None:
        dut = self.dut
        period = PERIOD_NS
        await self.reset()
        # Wall-clock start of the host's silence, its timeout simulated, idleness confirmed.
        silent_since, timed_out, settled = None, False, False
        paused = False
        while True:
            for command in self.commands():
                if command == "quit":
                    return
                if command == "pause":
                    paused = True
                elif command != "stats":
                    paused = False
                if command == "reset":
                    await self.drain()
                    await self.reset()
                elif command == "drop":
                    self.link.drop()
                elif command == "connect":
                    self.link.connect()
                elif command == "stats":
                    self.write_stats()
                elif command != "pause":
                    dut._log.warning("bridge: unknown control command %r ignored", command)
                os.write(self.ack, command.encode() + b"\n")
            if paused:
                select.select([self.control], [], [], IDLE_POLL_S)
                continue
            if self.exchange():
                timer = Timer(BUSY_SLICE_CYCLES * period, unit="ns")
                fired = await First(RisingEdge(dut.attention), timer)
                if fired is not timer:
                    await FallingEdge(dut.clk)
                silent_since, timed_out, settled = None, False, False
            elif not settled:
                await Timer(SETTLE_CYCLES * period, unit="ns")
                settled = True
            else:
                if silent_since is None:
                    silent_since = time.monotonic()
                self.link.wait(self.control, IDLE_POLL_S)
                if not timed_out and time.monotonic() - silent_since >= self.silence_s:
                    await Timer(self.idle_cycles * period, unit="ns")
                    timed_out = True  # once per silence: nothing else can happen in an idle core

    def close(self) -> None:
        self.link.drop()
        os.close(self.control)
        os.close(self.ack)


@cocotb.test()
async def serve(dut):
    """Serve the core on a pty until ``quit`` comes on the control FIFO."""
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    bridge = Bridge(dut, tb_config())
    await FallingEdge(dut.clk)
    try:
        await bridge.run()
    finally:
        bridge.close()
