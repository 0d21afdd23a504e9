# amaranth: UnusedElaboratable=no
"""Board top levels: :class:`hw.core.UARTCore` on a real board's serial port, clocked by the FPGA's PLL.

``BoardTop(platform_name, freq_mhz=None, **core_params)`` is an elaboratable
for one of :data:`BOARDS` ("icebreaker": iCE40 UP5K; "ulx3s": ECP5-85F).  The
board's oscillator (12 MHz / 25 MHz) feeds the FPGA's PLL (``SB_PLL40_PAD`` /
``EHXPLLL``, settings from :mod:`boards.pll`), which makes the highest
frequency it can at or below ``freq_mhz`` (default :data:`DEFAULT_FREQ_MHZ`);
that achieved frequency clocks the core's ``sync`` domain, sets the UART
divisor and the idle timeout, and is the clock constraint nextpnr checks.
The UART runs at ``baud`` (default :data:`sw.contract.backends.DEFAULT_BAUD`,
3 Mbaud; 115,200 the fallback): :func:`uart_rate` picks the divisor and
refuses a rate the clock cannot make within
:data:`sw.contract.backends.BAUD_TOLERANCE`; PING reports the rate achieved.
The core is held in reset until the PLL has locked (and 15 us more, for the
iCE40's block RAMs, which read as zeroes for a few microseconds after
configuration).  The board's UART (``platform.request("uart", 0)`` through
``lib.io.Buffer``s: rx -> core -> tx) and a heartbeat on LED 0 (about 1 Hz)
complete the design.

The core's parameters default to the board's preset (:data:`CORE_PRESETS`:
the largest core measured to fit the chip and close timing), which
``**core_params`` override key by key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from amaranth.build import ResourceError
from amaranth.hdl import ClockDomain, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer

from hw.core import UARTCore
from hw.block_ram import NO_INIT
from hw.uart import MIN_DIVISOR
from sw.contract.backends import BAUD_TOLERANCE, DEFAULT_BAUD, baud_error, check_baud
from sw.contract.core import CORE_DEFAULTS, LARGE_LIMITS

from .pll import MHZ, PLL, mhz, pll_for

__all__ = ["BOARDS", "Board", "BoardTop", "CORE_PRESETS", "DEFAULT_FREQ_MHZ", "LockReset", "UARTRate",
           "board_pll", "freq_hz", "make_platform", "uart_rate"]


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
    script_after_read: str = ""  # Yosys commands between reading the design and synth_<family>
    nextpnr_opts: str = ""  # extra nextpnr options (the seed apart)
    seed: int = 1  # nextpnr's placement seed (``dorefa build --seed`` overrides it)


#: Flatten the design and split its multi-bit wires into single bits before
#: synthesis.  Amaranth names the elements of ``lib.data`` arrays ``name[0]``,
#: ``name[1]`` ...; ABC9's reintegration (Yosys 0.66 to 0.70 at least) names the
#: bits it maps the same way and then asserts (``count_id(wire->name) == 0`` or
#: ``GetSize(conn.first) == GetSize(conn.second)``) on the collision: YosysHQ/yosys
#: issue 4349, whose suggested remedy this is.  The ULX3S core stopped
#: synthesising on it when the PING reply's constant bytes changed (commit f647316).
SPLIT_NETS = f"setattr -unset init a:{NO_INIT}; hierarchy -auto-top; proc; flatten; splitnets"


#: Boards ``dorefa build`` knows.
BOARDS: dict[str, Board] = {
    # -dsp: the UP5K's eight SB_MAC16 take the core's multipliers (its request checks),
    # which synth_ice40 otherwise builds from logic cells (about 700 of them).
    # router2: router1 did not converge on a preset at 97 % of the UP5K's cells (this one
    # fills 90 %).  Seed 7 under a placer timing weight of 30 (nextpnr's default 10): on a
    # nearly full UP5K the placement's seed moves Fmax by a quarter or more, and any netlist
    # change re-draws it.  Over seeds 1-48 this netlist closes 27.87 to 38.20 MHz asked 30,
    # median 33.55 (bench/reports/seed_sweep.icebreaker.md); with the weight 30, 30.63 to
    # 38.64 over seeds 1-41, median 34.91, and no better over seeds 42-61
    # (seed_sweep.icebreaker.timingweight30.md): seed 7 is the best.  A fixed seed, so the
    # build stays reproducible; a netlist change is a reason to sweep the seeds again
    # (README, "Seeds and reproducibility", has the earlier netlists' draws).  (router2 may
    # also loop forever on a few overused wires for one seed of a netlist, as
    # YosysHQ/nextpnr issue 1341 reports: seed 2 on the 1 x 8 core of
    # tests/boards/test_build.py, which seeds 1 and 3 and router1 route in seconds.)
    "icebreaker": Board("icebreaker", "iCE40UP5K-SG48", "ice40", _icebreaker, synth_opts="-dsp",
                        script_after_read=SPLIT_NETS,
                        nextpnr_opts="--router router2 --placer-heap-timingweight 30", seed=7),
    # Seed 2: the 8 x 16 x 32 preset closed 72.64 MHz asked 80 under nextpnr's default seed
    # (1; its critical path the batch sums' block RAM read routed across the chip) and
    # 86.51 under seed 2, and 87.76 on the next netlist (the batch sums' second register, the
    # packed reply's size without a DSP block); the netlist after (the tiles' drains
    # overlapped, one packer) closed 74.63 asked 80 and 86.75 asked 72 (DEFAULT_FREQ_MHZ).
    # Seed 3 on the SumReader's netlist: 91.36 MHz, where seed 2 closed 80.33 (the same
    # path, the batch sums' DP16KD to its register, routed 5.1 and 6.6 ns).  Seed 2 again
    # since the row sums moved to DP16KD: 84.62 MHz, seed 1 82.74, seed 3 79.36
    # (bench/reports/seed_sweep.ulx3s.block_sums.md).
    # Fixed, as the iCEBreaker's, so the build stays reproducible.
    "ulx3s": Board("ulx3s", "ECP5 LFE5U-85F", "ecp5", _ulx3s, script_after_read=SPLIT_NETS, seed=2),
}

#: The core clock each board's PLL is asked for by default (MHz; ``dorefa build --freq``
#: overrides it).  The PLL makes the highest frequency it can at or below it, and the
#: UART's divisor is the nearest to it over 3 Mbaud (:data:`sw.contract.backends.DEFAULT_BAUD`):
#: 30 MHz on the iCEBreaker (12 MHz x 80 / 32; 10 cycles a bit, no error; asked 33, the
#: next clock that makes 3 Mbaud exactly, the preset closed 32.21 MHz), 71.875 MHz on the
#: ULX3S (asked 72: 25 MHz x 23 / 8; 24 cycles a bit: 2,994,792 baud, 0.17 % slow).  The
#: ULX3S asked 80 (25 MHz x 16 / 5) until its netlist closed 74.63, 79.12 and 74.17 MHz
#: under seeds 2, 1 and 3 there (the batch sums' block RAM reads routed across the chip to
#: their first register; every other endpoint had 2 ns of slack); it had closed 87.76 on
#: the netlist before, and asked 72 it closes 86.75.  Both lie below the Fmax each preset
#: closed (boards/reports/).  At 115,200 baud the errors are 0.16 % and 0.01 %.
DEFAULT_FREQ_MHZ: dict[str, int | float] = {
    "icebreaker": 30,
    "ulx3s": 72,
}

#: The core parameters each board builds by default (``dorefa build``'s flags override
#: them key by key): :data:`CORE_DEFAULTS` and, after it, the board's own values, the
#: largest core measured to fit the chip and close timing (bench/reports/core_density.md):
#:
#: * iCEBreaker: 8 x 32 lanes, 256 AND+popcount bit pairs per cycle, two popcount stages,
#:   codes of up to 6 bits and activations of up to 2 (the digits net's W,A,G = 1,2,6; 8-bit
#:   codes and 4-bit activations took 5,283 of the UP5K's 5,280 logic cells, which no longer
#:   fit; the request path, link and activation take ~2,500 of the 4,958);
#: * ULX3S: 8 rows x 16 vectors x 32 lanes, 4,096 bit pairs per cycle, the "packed"
#:   popcount (smallest on ECP5) with a register on each of its 5 levels, a register after
#:   each block RAM read of the datapath (``fetch_stages``), a drain chain per row.  Shaped
#:   for the digits net's short products (16 to 1,024 columns): 128 lanes padded them, and
#:   8 x 16 x 32 takes 2.5x fewer compute cycles for the epoch's training products than
#:   8 x 4 x 128 (bench/reports/core_density.md's array shapes).  (16 x 4 x 128 placed in
#:   42,293 LUT4 but nextpnr's router had not converged after 240,000 iterations; 8 x 8 x
#:   128 placed in 41,475 with 147,000 arcs still unrouted after 51,000 iterations.)
CORE_PRESETS: dict[str, dict] = {
    "icebreaker": {**CORE_DEFAULTS, "max_bits": 6, "max_act_bits": 2, "pe": 8, "simd": 32, "vectors": 1,
                   "popcount_stages": 2, "popcount_arch": "chain", "fetch_stages": 0, "drains": 1,
                   "matrix_memory": "block"},
    "ulx3s": {**CORE_DEFAULTS, **LARGE_LIMITS, "pe": 8, "simd": 32, "vectors": 16, "popcount_stages": 5,
              "popcount_arch": "packed", "fetch_stages": 1, "drains": 8, "matrix_memory": "block"},
}

#: Cycles of the core clock the core stays in reset after the PLL locks, in seconds: the
#: iCE40's block RAMs read as zeroes for about 3 us after configuration (Amaranth's own
#: iCE40 clock domain waits 15 us; so does this one, on both families).
RESET_DELAY_S = 15e-6


def make_platform(board: str):
    """A fresh amaranth-boards platform for ``board`` (``ValueError`` if unknown)."""
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; allowed: {', '.join(BOARDS)}")
    return BOARDS[board].factory()


def freq_hz(freq_mhz) -> Fraction:
    """``freq_mhz`` (a number or a command-line string of MHz) in Hz, exactly: ``"33.3"`` is
    33 300 000 Hz, not the nearest binary float.  ``ValueError`` unless a positive, finite number."""
    text = str(freq_mhz).strip() if isinstance(freq_mhz, (str, float)) else freq_mhz
    if isinstance(text, bool):
        text = None
    try:
        value = Fraction(text)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"the core clock must be a number of MHz, got {freq_mhz!r}") from None
    if value <= 0:
        raise ValueError(f"the core clock must be a positive number of MHz, got {freq_mhz!r}")
    return value * MHZ


@dataclass(frozen=True)
class UARTRate:
    """A UART's bit rate on a clock: the rate ``asked``, the ``divisor`` (clock cycles a bit)
    and the rate it makes, ``achieved = round(clk / divisor)``; ``error`` is
    ``|clk / divisor - asked| / asked``."""
    asked: int
    divisor: int
    achieved: int
    error: float


def uart_rate(clk_hz, baud) -> UARTRate:
    """The divisor that brings a ``clk_hz`` clock nearest to ``baud`` bits per second.

    ``ValueError`` (one line: what was asked, what is allowed) unless ``baud`` is a rate
    of :data:`sw.contract.backends.BAUD_RANGE`, the divisor is at least
    :data:`hw.uart.MIN_DIVISOR` cycles and the rate it makes is within
    :data:`sw.contract.backends.BAUD_TOLERANCE` of ``baud``.
    """
    baud = check_baud(baud, "the UART's baud rate")
    clk = Fraction(clk_hz)
    divisor = round(clk / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"{baud} baud is too fast for a {mhz(clk)} MHz core clock: the UART needs at least "
                         f"{MIN_DIVISOR} clock cycles a bit, so at most {math.floor(clk / MIN_DIVISOR)} baud "
                         f"(or a faster --freq)")
    error = float(baud_error(clk / divisor, baud))
    if error > BAUD_TOLERANCE:
        raise ValueError(f"{baud} baud is {100 * error:.2f} % off on a {mhz(clk)} MHz core clock (divisor "
                         f"{divisor} makes {round(clk / divisor)} baud; at most {100 * BAUD_TOLERANCE:g} % is "
                         f"allowed): ask for a --freq that is a multiple of the rate, or for a rate the clock "
                         f"divides into")
    return UARTRate(baud, divisor, round(clk / divisor), error)


def board_pll(board: str, freq_mhz=None, platform=None) -> PLL:
    """The PLL setting that clocks ``board``'s core at the highest frequency it makes at or below
    ``freq_mhz`` (default :data:`DEFAULT_FREQ_MHZ`) from the board's oscillator; ``ValueError``
    naming the range allowed if it makes none."""
    if platform is None:
        platform = make_platform(board)
    asked = freq_hz(DEFAULT_FREQ_MHZ[board] if freq_mhz is None else freq_mhz)
    return pll_for(BOARDS[board].family, platform.default_clk_frequency, asked)


class LockReset(Elaboratable):
    """The ``sync`` domain's reset from a PLL's ``LOCK``: ``rst`` is high until ``lock`` has been
    high for ``delay`` cycles of ``sync``, and again as soon as it falls.

    ``lock`` is asynchronous (it is synchronised here, two flip-flops); every register is
    reset-less, so ``rst`` may drive the reset of the domain that clocks it.
    """

    def __init__(self, delay: int):
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ValueError(f"delay must be a positive number of cycles, got {delay!r}")
        self.delay = delay
        self.lock = Signal()
        self.rst = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        m.submodules.lock_sync = FFSynchronizer(self.lock, locked, o_domain="sync")
        timer = Signal(range(self.delay + 1), reset_less=True)
        ready = Signal(reset_less=True)
        with m.If(~locked):
            m.d.sync += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == self.delay):
            m.d.sync += ready.eq(1)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
        m.d.comb += self.rst.eq(~ready)
        return m


class BoardTop(Elaboratable):
    """``UARTCore`` clocked by the FPGA's PLL, on the board's UART pins, with an LED heartbeat.

    Parameters
    ----------
    platform_name : str
        A key of :data:`BOARDS`.
    freq_mhz : number or str, optional
        The core clock asked for, MHz (default :data:`DEFAULT_FREQ_MHZ`); the PLL makes the
        highest frequency it can at or below it (:attr:`pll`, :attr:`clk_freq`).
    baud : int
        UART bit rate asked (default :data:`sw.contract.backends.DEFAULT_BAUD`, 3 Mbaud;
        115200 the fallback): :func:`uart_rate` checks it against the achieved clock
        (:attr:`uart`).
    **core_params
        :class:`hw.core.UARTCore` / ``TrainingCore`` parameters (``max_bits``, ``pe``,
        ``simd``, ...) over the board's preset :data:`CORE_PRESETS`.

    Attributes
    ----------
    pll : boards.pll.PLL
        The PLL's setting: the frequency asked, the one achieved, the primitive's parameters.
    clk_freq : float
        The core clock the PLL achieves, Hz: what the UART divisor, the idle timeout and the
        clock constraint are computed from.
    uart : UARTRate
        The UART's rate asked, divisor, rate achieved (what PING reports) and error.
    """

    def __init__(self, platform_name: str, *, freq_mhz=None, baud: int = DEFAULT_BAUD, **core_params):
        if platform_name not in BOARDS:
            raise ValueError(f"unknown board {platform_name!r}; allowed: {', '.join(BOARDS)}")
        self.platform_name = platform_name
        self.platform = make_platform(platform_name)
        # Built here so that a frequency the PLL cannot make and bad parameters raise
        # ValueError before any synthesis.
        self.pll = board_pll(platform_name, freq_mhz, self.platform)
        self.clk_freq = self.pll.out_hz
        self.uart = uart_rate(self.pll.f_out, baud)
        self.core_params = {**CORE_PRESETS[platform_name], **core_params}
        self.core = UARTCore(self.clk_freq, self.uart.asked, **self.core_params)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        if platform is None:
            return m
        self._clock(m, platform)
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
        half = max(1, round(self.clk_freq / 2))
        counter = Signal(range(half))
        beat = Signal()
        with m.If(counter == half - 1):
            m.d.sync += [counter.eq(0), beat.eq(~beat)]
        with m.Else():
            m.d.sync += counter.eq(counter + 1)
        m.submodules.led_buffer = led_buffer = io.Buffer("o", led)
        m.d.comb += led_buffer.o.eq(beat)
        return m

    def _clock(self, m: Module, platform) -> None:
        """The ``sync`` domain: the PLL's output, in reset until the PLL has locked and
        :data:`RESET_DELAY_S` has passed; constrained to the achieved frequency."""
        pll = self.pll
        clk_in = platform.request(platform.default_clk, 0, dir="-")
        # The PLL's output, named in the top module and kept by Yosys: the net the clock
        # constraint names.
        pll_clk, pll_lock = Signal(name="pll_clk", attrs={"keep": 1}), Signal(name="pll_lock")
        if pll.family == "ice40":
            # SB_PLL40_PAD: the iCEBreaker's 12 MHz oscillator is on pin 35, the UP5K's PLL
            # input pad, which drives the PLL directly (no SB_IO, no global buffer).
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                p_DIVR=Const(pll.params["DIVR"], 4),
                p_DIVF=Const(pll.params["DIVF"], 7),
                p_DIVQ=Const(pll.params["DIVQ"], 3),
                p_FILTER_RANGE=Const(pll.params["FILTER_RANGE"], 3),
                io_PACKAGEPIN=clk_in.io,
                i_RESETB=Const(1),
                i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=pll_clk,
                o_LOCK=pll_lock,
            )
        elif pll.family == "ecp5":
            m.submodules.clk_in_buffer = clk_buffer = io.Buffer("i", clk_in)
            # As ecppll writes it: feedback from CLKOP, its loop-filter attributes.
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=pll.params["CLKI_DIV"],
                p_CLKFB_DIV=pll.params["CLKFB_DIV"],
                p_CLKOP_DIV=pll.params["CLKOP_DIV"],
                p_CLKOP_CPHASE=pll.params["CLKOP_CPHASE"],
                p_CLKOP_FPHASE=0,
                p_FEEDBK_PATH="CLKOP",
                i_CLKI=clk_buffer.i,
                i_CLKFB=pll_clk,
                i_RST=Const(0),
                i_STDBY=Const(0),
                i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1), i_PHASESTEP=Const(1),
                i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
                o_CLKOP=pll_clk,
                o_LOCK=pll_lock,
            )
        else:  # pragma: no cover - BOARDS names only these families
            raise ValueError(f"no PLL for FPGA family {pll.family!r}")
        platform.add_clock_constraint(pll_clk, pll.out_hz)
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.submodules.lock_reset = lock_reset = LockReset(max(1, math.ceil(RESET_DELAY_S * self.clk_freq)))
        m.d.comb += [
            cd_sync.clk.eq(pll_clk),
            lock_reset.lock.eq(pll_lock),
            cd_sync.rst.eq(lock_reset.rst),
        ]
