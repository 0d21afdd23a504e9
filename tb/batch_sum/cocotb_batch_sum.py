"""cocotb tests of :class:`hw.batch_sum.BatchSum` against the contract's aligned terms.

Run through ``tb/test_batch_sum_tb.py``; :func:`sim.cocotb_runner.tb_config`
gives ``slots``, ``partial_bits``, ``sum_bits``, ``slot_bits`` (the payload's
slot field), ``beats`` and ``seed``.  The bench plays the core: beats of
(slot, partial) with the sample's mantissa, shift and ``first`` beside each,
random idle cycles (garbage on every input while idle) or back to back, runs of
one slot (every beat a forwarding hazard); then, once ``busy`` falls, it reads
every slot.  Each expected sum is :func:`sw.contract.gradients.aligned_term`
added (or written, ``first``) in Python integers, :func:`~sw.contract.gradients.wrap_sum`;
nothing expected comes from the unit.  Payloads are packed here from the
documented layout (``slot`` in the low ``slot_bits``, then ``partial``).  The
module is not named ``test_*.py``, so pytest never imports it.
"""

import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hw.batch_sum import BatchSum
from sim.cocotb_runner import tb_config
from sw.contract.gradients import SCALE_MANTISSA_BITS, aligned_term, wrap_sum
from tb.common import Scoreboard, reset, start_clock

MANTISSA_TOP = (1 << SCALE_MANTISSA_BITS) - 1
EDGE_SHIFTS = (0, 1, 31, 32, 33, 63, 100, 255)


def program(config, rng) -> list[tuple]:
    """``beats`` of ``(slot, partial, mantissa, shift, first)``: samples of a few beats
    each (the sample's mantissa and shift, ``first`` on a batch's first sample),
    slots random or in runs of one slot."""
    pb = config["partial_bits"]
    low, high = -(1 << (pb - 1)), (1 << (pb - 1)) - 1
    beats, sample = [], 0
    while len(beats) < config["beats"]:
        mantissa = rng.choice([0, 1, MANTISSA_TOP, rng.randrange(MANTISSA_TOP + 1)])
        shift = rng.choice(EDGE_SHIFTS) if rng.random() < 0.6 else rng.randrange(256)
        first = sample % 5 == 0
        run_slot = rng.randrange(config["slots"]) if rng.random() < 0.3 else None
        for _ in range(rng.randint(1, 2 * config["slots"])):
            slot = run_slot if run_slot is not None else rng.randrange(config["slots"])
            partial = rng.choice([0, 1, -1, low, high, rng.randint(low, high)])
            beats.append((slot, partial, mantissa, shift, first))
        sample += 1
    return beats[:config["beats"]]


def model(config, beats, sums=None) -> list[int]:
    sums = list(sums or [0] * config["slots"])
    for slot, partial, mantissa, shift, first in beats:
        term = aligned_term(mantissa, partial, shift)
        sums[slot] = term if first else sums[slot] + term
    return [wrap_sum(s, config["sum_bits"]) for s in sums]


def pack(config, slot, partial) -> int:
    return slot | ((partial & ((1 << config["partial_bits"]) - 1)) << config["slot_bits"])


class Core:
    """Drives the unit's inputs as the core does, one beat per cycle at most."""

    def __init__(self, dut, config, rng):
        self.dut, self.config, self.rng = dut, config, rng

    def garbage(self):
        dut, config, rng = self.dut, self.config, self.rng
        dut.i__valid.value = 0
        dut.i__payload.value = pack(config, rng.randrange(config["slots"]),
                                    rng.randint(-(1 << (config["partial_bits"] - 1)),
                                                (1 << (config["partial_bits"] - 1)) - 1))
        dut.mantissa.value = rng.randrange(MANTISSA_TOP + 1)
        dut.shift.value = rng.randrange(256)
        dut.first.value = rng.randrange(2)
        dut.read_addr.value = rng.randrange(config["slots"])

    async def wait_idle(self):
        """Garbage in (``i.valid`` low) until ``busy`` falls."""
        while True:
            self.garbage()
            await ReadOnly()
            if int(self.dut.busy.value) == 0:
                break
            await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)

    async def play(self, beats, gap) -> int:
        """Offer each beat until taken, after random idle cycles; the cycles taken."""
        dut, cycles = self.dut, 0
        for slot, partial, mantissa, shift, first in beats:
            while gap and self.rng.random() < gap:
                self.garbage()
                await RisingEdge(dut.clk)
                cycles += 1
            dut.i__valid.value = 1
            dut.i__payload.value = pack(self.config, slot, partial)
            dut.mantissa.value, dut.shift.value, dut.first.value = mantissa, shift, int(first)
            while True:
                await ReadOnly()
                taken = int(dut.i__ready.value) == 1
                await RisingEdge(dut.clk)
                cycles += 1
                if taken:
                    break
        self.garbage()
        return cycles

    async def read_all(self) -> list[int]:
        await self.wait_idle()
        sums = []
        for slot in range(self.config["slots"]):
            self.garbage()
            self.dut.read_addr.value = slot
            await ClockCycles(self.dut.clk, BatchSum.read_latency)
            await ReadOnly()
            sums.append(self.dut.read_data.value.to_signed())
            await RisingEdge(self.dut.clk)
        return sums


async def bring_up(dut, config, seed) -> Core:
    start_clock(dut)
    core = Core(dut, config, random.Random(seed))
    core.garbage()
    dut.clear.value = 0
    await reset(dut)
    return core


@cocotb.test()
async def random_beats(dut):
    """Beats with random idle cycles, read back twice (a batch, then more samples on it)."""
    config = tb_config()
    core = await bring_up(dut, config, config["seed"])
    rng = random.Random(config["seed"] + 1)
    beats = program(config, rng)
    half = len(beats) // 2
    scoreboard = Scoreboard("batch_sum", dut._log)
    await core.play(beats[:half], gap=0.4)
    scoreboard.check(model(config, beats[:half]), await core.read_all())
    await core.play(beats[half:], gap=0.4)
    scoreboard.check(model(config, beats), await core.read_all())
    dut._log.info("batch_sum: %d beats, %d sums checked", len(beats), scoreboard.checked)


@cocotb.test()
async def back_to_back(dut):
    """No idle cycles: one beat a cycle, whatever the slots (forwarding, never a stall)."""
    config = tb_config()
    core = await bring_up(dut, config, config["seed"] + 10)
    beats = program(config, random.Random(config["seed"] + 11))
    await core.wait_idle()  # the sums zeroed after the reset (i.ready low meanwhile)
    cycles = await core.play(beats, gap=0.0)
    assert cycles == len(beats), (cycles, len(beats))
    Scoreboard("batch_sum", dut._log).check(model(config, beats), await core.read_all())


@cocotb.test()
async def clear_zeroes_every_sum(dut):
    """After some beats, ``clear``: every sum reads 0, and the next beats add to 0."""
    config = tb_config()
    core = await bring_up(dut, config, config["seed"] + 20)
    rng = random.Random(config["seed"] + 21)
    await core.play(program(config, rng), gap=0.2)
    await core.wait_idle()
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    scoreboard = Scoreboard("batch_sum", dut._log)
    scoreboard.check([0] * config["slots"], await core.read_all())
    beats = [(slot, partial, mantissa, shift, False) for slot, partial, mantissa, shift, _ in program(config, rng)]
    await core.play(beats, gap=0.2)
    scoreboard.check(model(config, beats), await core.read_all())
