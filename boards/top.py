# amaranth: UnusedElaboratable=no
"""Board top levels: :class:`hw.core.UARTCore` on a real board's serial port.

``BoardTop(platform_name, **core_params)`` is an elaboratable for one of
:data:`BOARDS` ("icebreaker": iCE40 UP5K; "ulx3s": ECP5-85F).  It runs the
core at the platform's default clock (12 MHz / 25 MHz), wires the board's
UART (``platform.request("uart", 0)`` through ``lib.io.Buffer``s: rx -> core
-> tx) and blinks LED 0 at about 1 Hz as a heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from amaranth.build import ResourceError
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io

from hw.core import UARTCore
from sw.contract.core import CORE_DEFAULTS

__all__ = ["BOARDS", "Board", "BoardTop", "make_platform"]


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    return ICEBreakerPlatform()


def _ulx3s():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


@dataclass(frozen=True)
class Board:
    name: str
    device: str
    family: str  # FPGA family as nextpnr names it: "ice40", "ecp5"
    factory: Callable[[], object]
    synth_opts: str = ""  # extra Yosys synth_<family> options


#: Boards ``dorefa build`` knows.
BOARDS: dict[str, Board] = {
    # -dsp: the UP5K's eight SB_MAC16 take the core's multipliers (its request checks),
    # which synth_ice40 otherwise builds from logic cells (about 700 of them).
    "icebreaker": Board("icebreaker", "iCE40UP5K-SG48", "ice40", _icebreaker, synth_opts="-dsp"),
    "ulx3s": Board("ulx3s", "ECP5 LFE5U-85F", "ecp5", _ulx3s),
}


def make_platform(board: str):
    """A fresh amaranth-boards platform for ``board`` (``ValueError`` if unknown)."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; allowed: {', '.join(BOARDS)}")
    return BOARDS[board].factory()


class BoardTop(Elaboratable):
    """``UARTCore`` at the board's default clock, on its UART pins, with an LED heartbeat.

    Parameters
    ----------
    platform_name : str
        A key of :data:`BOARDS`.
    baud : int
        UART bit rate (115200).
    **core_params
        :class:`hw.core.UARTCore` / ``TrainingCore`` parameters
        (``max_bits``, ``pe``, ``simd``, ...); defaults :data:`sw.contract.core.CORE_DEFAULTS`
        (re-exported as :data:`hw.core.CORE_DEFAULTS`).
    """

    def __init__(self, platform_name: str, *, baud: int = 115200, **core_params):
        if platform_name not in BOARDS:
            raise ValueError(f"unknown board {platform_name!r}; allowed: {', '.join(BOARDS)}")
        self.platform_name = platform_name
        self.platform = make_platform(platform_name)
        self.clk_freq = int(self.platform.default_clk_frequency)
        self.core_params = {**CORE_DEFAULTS, **core_params}
        # Built here so that bad parameters raise ValueError before any synthesis.
        self.core = UARTCore(self.clk_freq, baud, **self.core_params)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        if platform is None:
            return m
        # Raw ports (dir="-") with explicit buffers: the Amaranth 0.5 way
        # (plain request() with implicit buffers is deprecated).  Every
        # subsignal is raw: the ULX3S's rts / dtr stay unbuffered and unused.
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        m.d.comb += [
            core.rx.eq(rx_buffer.i),
            tx_buffer.o.eq(core.tx),
        ]
        try:
            led = platform.request("led", 0, dir="-")
        except ResourceError:  # a board without LEDs: no heartbeat
            return m
        # Heartbeat: LED 0 toggles every half second.
        half = max(1, self.clk_freq // 2)
        counter = Signal(range(half))
        beat = Signal()
        with m.If(counter == half - 1):
            m.d.sync += [counter.eq(0), beat.eq(~beat)]
        with m.Else():
            m.d.sync += counter.eq(counter + 1)
        m.submodules.led_buffer = led_buffer = io.Buffer("o", led)
        m.d.comb += led_buffer.o.eq(beat)
        return m
