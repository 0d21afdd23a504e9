# amaranth: UnusedElaboratable=no
"""boards.top: the core runs from the FPGA's PLL (its Verilog instance, its clock constraint, the UART
divisor and idle timeout from the achieved frequency), held in reset until the PLL locks; the boards'
default frequencies and core presets; the UART's rate (divisor, achieved rate, error, refusals)."""

import re

import pytest
from amaranth.sim import Simulator

from boards.build import board_verilog
from boards.top import BOARDS, CORE_PRESETS, DEFAULT_FREQ_MHZ, BoardTop, LockReset, UARTRate, uart_rate
from sw.cli import main
from sw.contract.core import CORE_DEFAULTS
from sw.contract.link import RX_IDLE_TIMEOUT_S


#: A small core over the ULX3S preset (drains divide pe; few batch sums), for what is the board's, not the core's.
SMALL_ULX3S = {"pe": 1, "simd": 8, "vectors": 1, "drains": 1, "popcount_stages": 1, "sum_slots": 512}

#: The PLL's output wire, kept (Yosys would merge it into the clock net otherwise).
KEPT_PLL_CLK = r"\(\* keep = 32'd1 \*\)\n(?:\s*\(\*[^\n]*\*\)\n)*\s*wire pll_clk;"


def _instance(text: str, cell: str) -> str:
    """The text of the one ``cell #( ... );`` instance in ``text``."""
    found = re.findall(rf"^\s*{cell} #\(.*?\n\s*\);", text, re.MULTILINE | re.DOTALL)
    assert len(found) == 1, f"{len(found)} {cell} instances"
    return found[0]


def test_one_default_frequency_and_one_core_preset_per_board():
    assert set(DEFAULT_FREQ_MHZ) == set(BOARDS) == set(CORE_PRESETS)
    assert DEFAULT_FREQ_MHZ == {"icebreaker": 30, "ulx3s": 72}
    # The measured presets (boards/reports/): the default limits, the boards' own arrays; the
    # ULX3S's larger matrix and frames and its batch sums (the iCEBreaker has no room for them;
    # its codes stop at the digits net's widths, W,A,G = 1,2,6).
    assert CORE_PRESETS == {
        "icebreaker": {**CORE_DEFAULTS, "max_bits": 6, "max_act_bits": 2, "pe": 8, "simd": 32, "vectors": 1,
                       "popcount_stages": 2,
                       "popcount_arch": "chain", "fetch_stages": 0, "drains": 1, "matrix_memory": "block"},
        "ulx3s": {**CORE_DEFAULTS, "max_rows": 64, "max_cols": 1024, "max_payload": 4096, "sum_slots": 16384,
                  "sum_bits": 96, "fmap_codes": 4096, "packed_accumulators": 1, "max_pool": 4, "pe": 8,
                  "simd": 32, "vectors": 16, "popcount_stages": 5,
                  "popcount_arch": "packed", "fetch_stages": 1, "drains": 8, "matrix_memory": "block"},
    }
    for board in BOARDS:
        assert BoardTop(board).core_params == CORE_PRESETS[board]
    # 12 MHz * 80 / 32 = 30 MHz (DIVR 0, DIVF 79, DIVQ 5): 10 cycles a bit at 3 Mbaud, no error
    icebreaker = BoardTop("icebreaker")
    assert icebreaker.clk_freq == 30_000_000
    assert icebreaker.pll.params == {"DIVR": 0, "DIVF": 79, "DIVQ": 5, "FILTER_RANGE": 1}
    assert icebreaker.uart == UARTRate(asked=3_000_000, divisor=10, achieved=3_000_000, error=0.0)
    # 25 MHz * 23 / 8 = 71.875 MHz (asked 72): 71.875 / 3 = 23.96 -> 24 cycles a bit,
    # 2,994,791.7 baud (0.17 % slow)
    ulx3s = BoardTop("ulx3s")
    assert ulx3s.clk_freq == 71_875_000
    assert ulx3s.uart == UARTRate(asked=3_000_000, divisor=24, achieved=2_994_792, error=pytest.approx(0.0017361, abs=1e-7))


def test_boards_report_the_achieved_rate_in_ping():
    # 30 MHz / 115200 = 260.42: divisor 260 makes 115384.6 baud, PING says 115385
    top = BoardTop("icebreaker", baud=115_200)
    assert (top.core.divisor, top.core.achieved_baud, top.core.core.info.baud) == (260, 115_385, 115_385)
    assert top.uart.error == pytest.approx(0.0016026, abs=1e-7)  # (115384.6 - 115200) / 115200
    # 71.875 MHz / 115200 = 623.91: divisor 624 makes 115184.3 baud
    top = BoardTop("ulx3s", baud=115_200)
    assert (top.core.divisor, top.core.core.info.baud) == (624, 115_184)
    assert BoardTop("ulx3s").core.core.info.baud == 2_994_792


@pytest.mark.parametrize("clk, baud, rate", [
    (27_000_000, 3_000_000, (9, 3_000_000, 0.0)),
    # 50 MHz / 3 MHz = 16.67 -> 17 cycles: 2,941,176.5 baud, 1.96 % slow (within 2.5 %)
    (50_000_000, 3_000_000, (17, 2_941_176, 0.0196078)),
    # 4 cycles a bit exactly: the fastest the UART allows
    (12_000_000, 3_000_000, (4, 3_000_000, 0.0)),
    (48_000_000, 12_000_000, (4, 12_000_000, 0.0)),
    ("19875000", "115200", (173, 114_884, 0.0027396)),
])
def test_uart_rate(clk, baud, rate):
    got = uart_rate(int(clk), baud)
    assert (got.asked, got.divisor, got.achieved) == (int(baud), *rate[:2])
    assert got.error == pytest.approx(rate[2], abs=1e-6)


@pytest.mark.parametrize("clk, baud, message", [
    # 27.75 MHz / 3 MHz = 9.25: divisor 9 makes 3,083,333 baud, 2.78 % fast
    (27_750_000, 3_000_000, "3000000 baud is 2.78 % off on a 27.75 MHz core clock (divisor 9 makes 3083333 "
                            "baud; at most 2.5 % is allowed)"),
    # 19.875 MHz / 3 MHz = 6.625: divisor 7 makes 2,839,286 baud, 5.36 % slow
    (19_875_000, 3_000_000, "3000000 baud is 5.36 % off on a 19.875 MHz core clock"),
    # 10 MHz / 3 MHz = 3.33 -> 3 cycles, fewer than the receiver's 4
    (10_000_000, 3_000_000, "3000000 baud is too fast for a 10 MHz core clock: the UART needs at least 4 clock "
                            "cycles a bit, so at most 2500000 baud"),
    # 11 MHz / 3 MHz = 3.67 -> 4 cycles, but 2.75 Mbaud is 8.33 % slow
    (11_000_000, 3_000_000, "3000000 baud is 8.33 % off on a 11 MHz core clock (divisor 4 makes 2750000 baud"),
    (27_000_000, 0, "must be a whole number of bits per second in 300..12000000"),
    (27_000_000, 20_000_000, "must be a whole number of bits per second in 300..12000000"),
    (27_000_000, 3e6, "got 3000000.0"),
    (27_000_000, "3M", "got '3M'"),
    (27_000_000, True, "got True"),
])
def test_uart_rate_refusals(clk, baud, message):
    with pytest.raises(ValueError) as info:
        uart_rate(clk, baud)
    assert message in str(info.value)


def test_board_top_refuses_a_rate_its_clock_cannot_make():
    # the iCEBreaker's old default clock, 27.75 MHz (--freq 28), misses 3 Mbaud by 2.78 %
    with pytest.raises(ValueError, match=r"3000000 baud is 2\.78 % off on a 27\.75 MHz core clock"):
        BoardTop("icebreaker", freq_mhz=28)
    assert BoardTop("icebreaker", freq_mhz=28, baud=115_200).core.achieved_baud == 115_145  # divisor 241: 115145.2


def test_icebreaker_core_runs_at_the_pll_frequency():
    # 12 MHz * 53 / 32 = 19.875 MHz (DIVR 0, DIVF 52, DIVQ 5): the highest at or below 20
    top = BoardTop("icebreaker", freq_mhz=20, baud=115_200)
    assert top.clk_freq == 19_875_000
    assert top.core.divisor == round(19_875_000 / 115_200) == 173  # 12 MHz gave 104
    assert top.core.core.idle_timeout == round(RX_IDLE_TIMEOUT_S * 19_875_000)
    assert top.pll.params == {"DIVR": 0, "DIVF": 52, "DIVQ": 5, "FILTER_RANGE": 1}
    # asked in MHz, as a number or as text: 48 exactly (12 * 64 / 16)
    assert BoardTop("icebreaker", freq_mhz="48").clk_freq == BoardTop("icebreaker", freq_mhz=48.0).clk_freq == 48e6
    assert BoardTop("icebreaker", freq_mhz=48).core.divisor == 16  # 3 Mbaud


def test_ulx3s_core_runs_at_the_pll_frequency():
    top = BoardTop("ulx3s", freq_mhz=50, pe=2, drains=2)  # (the preset's 8 chains need pe >= 8)
    assert top.clk_freq == 50_000_000 and top.core.divisor == 17  # 3 Mbaud, 1.96 % slow
    assert BoardTop("ulx3s", freq_mhz=50, baud=115_200).core.divisor == 434  # 25 MHz gave 217
    assert top.pll.params == {"CLKI_DIV": 1, "CLKFB_DIV": 2, "CLKOP_DIV": 12, "CLKOP_CPHASE": 5}
    assert top.core_params == {**CORE_PRESETS["ulx3s"], "pe": 2, "drains": 2}


@pytest.mark.parametrize("freq, message", [
    (300, "the iCE40 PLL cannot make 300 MHz from the 12 MHz clock; allowed: 16.125..275 MHz"),
    ("fast", "the core clock must be a number of MHz, got 'fast'"),
    (0, "the core clock must be a positive number of MHz, got 0"),
])
def test_board_top_refuses_a_frequency_the_pll_cannot_make(freq, message):
    with pytest.raises(ValueError) as info:
        BoardTop("icebreaker", freq_mhz=freq)
    assert message in str(info.value)


def test_icebreaker_verilog_has_the_pll():
    text = board_verilog("icebreaker", freq_mhz=20, baud=115_200)
    pll = _instance(text, "SB_PLL40_PAD")
    # DIVR 0, DIVF 52 = 0x34, DIVQ 5, FILTER_RANGE 1, simple feedback; the 12 MHz pin drives it directly
    for setting in (".DIVR(4'h0)", ".DIVF(7'h34)", ".DIVQ(3'h5)", ".FILTER_RANGE(3'h1)", '.FEEDBACK_PATH("SIMPLE")',
                    ".PACKAGEPIN(clk12_0__io)", ".PLLOUTGLOBAL(clk)", ".RESETB(1'h1)", ".BYPASS(1'h0)"):
        assert setting in pll, setting
    # its output clocks the core and is kept under the name the constraint uses
    assert re.search(KEPT_PLL_CLK, text) and "assign pll_clk = clk;" in text
    header = text.split("*/")[0]
    # nextpnr's constraint is the achieved frequency, on the PLL's output
    assert "set_frequency pll_clk 19.875\n" in header and "set_io clk12_0__io 35\n" in header
    # another frequency, other dividers: 48 MHz = 12 * 64 / 16
    pll48 = _instance(board_verilog("icebreaker", freq_mhz=48), "SB_PLL40_PAD")
    assert ".DIVF(7'h3f)" in pll48 and ".DIVQ(3'h4)" in pll48


def test_ulx3s_verilog_has_the_pll(tmp_path, capsys):
    out = tmp_path / "ulx3s.v"
    # `dorefa generate core --board` writes what `dorefa build --board` builds: the preset, the default clock
    assert main(["generate", "core", "--board", "ulx3s", "-o", str(out)]) == 0
    assert out.read_text() == board_verilog("ulx3s")
    # another clock: the PLL's dividers (a small core: the preset's would only take longer)
    text = board_verilog("ulx3s", freq_mhz=50, core_params=SMALL_ULX3S)
    pll = _instance(text, "EHXPLLL")
    for setting in (".CLKI_DIV(32'd1)", ".CLKFB_DIV(32'd2)", ".CLKOP_DIV(32'd12)", ".CLKOP_CPHASE(32'd5)",
                    '.FEEDBK_PATH("CLKOP")', ".CLKOP(clk)", ".CLKFB(clk)"):
        assert setting in pll, setting
    assert re.search(KEPT_PLL_CLK, text) and "assign pll_clk = clk;" in text
    assert 'FREQUENCY NET "pll_clk" 50000000.0 HZ;' in text.split("*/")[0]


def test_lock_reset_holds_reset_until_the_pll_locks():
    dut = LockReset(delay=5)
    trace = []

    async def bench(ctx):
        for lock in [0] * 4 + [1] * 10 + [0] * 4 + [1] * 3:
            ctx.set(dut.lock, lock)
            await ctx.tick()
            trace.append(ctx.get(dut.rst))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # trace[i] is rst after clock edge i + 1.  lock is 1 from edge 5 (trace[4]): the synchroniser's
    # second flip-flop has it after edge 6, the timer counts 1..5 at edges 7..11, ready is set at
    # edge 12 (trace[11]): delay + 2 edges with rst still high.
    assert trace[:4] == [1] * 4
    assert trace[4:14] == [1] * 7 + [0] * 3
    # lock falls from edge 15: seen after edge 16, ready cleared at edge 17 (trace[16]), and rst stays
    # high while lock comes back (it would take delay + 2 more edges)
    assert trace[14:] == [0, 0] + [1] * 5


@pytest.mark.parametrize("delay", [0, -1, 2.5, True])
def test_lock_reset_delay_must_be_a_positive_count(delay):
    with pytest.raises(ValueError, match="delay must be a positive number of cycles"):
        LockReset(delay)
