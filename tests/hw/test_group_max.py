"""hw.group_max.GroupMax against sw.intref.maxpool_codes, in the Amaranth simulator.

The codes of a map's positions go in the order of a pooled PATCH window
(:func:`sw.contract.window.window_index`: pooling window after pooling window,
each window's ``p**2`` positions consecutive, ``rows`` codes a position); the
unit's output must be the map max-pooled ``p x p``, row-major, rows fastest.
"""

import random

import numpy as np
import pytest

from hw.group_max import GroupMax
from sim.amaranth_sim import simulate, stream_get_n, stream_put_all
from sw.contract.window import PATCH, FmapShape, Window, window_index
from sw.intref import maxpool_codes
from tests.hw.helpers import unelaborated

PERIOD = 10e-9


def pooled_order(codes, pool):
    """The ``(rows, H, W)`` codes as a pooled window makes its positions: for each vector
    (a position, :func:`window_index`'s order with a 1 x 1 kernel), every row's code."""
    rows, h, w = codes.shape
    window = Window(1, 1, 0, PATCH, w // pool * pool, pool=pool)
    count = (h // pool) * (w // pool) * pool * pool
    index, inside = window_index(FmapShape(1, h, w), window, np.arange(count), 0)
    assert inside.all()
    return codes.reshape(rows, -1)[:, index].T  # (count, rows)


def run(dut, words, outputs, *, rows, group_log, seed):
    rng = random.Random(seed)
    got = []

    async def producer(ctx):
        ctx.set(dut.rows, rows)
        ctx.set(dut.group_log, group_log)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await stream_put_all(ctx, dut.i, words, rng=rng, gap=0.3)

    async def consumer(ctx):
        await ctx.tick()
        got.extend(await stream_get_n(ctx, dut.o, outputs, rng=random.Random(seed + 1), stall=0.3))
        ctx.set(dut.o.ready, 1)
        for _ in range(8):
            assert not ctx.get(dut.o.valid), "a code past the last group"
            await ctx.tick()

    simulate(dut, producer, consumer, deadline=PERIOD * (20 * len(words) + 100))
    return got


@pytest.mark.parametrize("act_bits", [1, 2, 4])
@pytest.mark.parametrize("pool", [1, 2, 4])
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_group_max_is_the_max_pool(act_bits, pool, rows):
    seed = act_bits * 100 + pool * 10 + rows
    rng = np.random.default_rng(seed)
    h, w = 2 * pool + 1, 3 * pool  # a partial pooling row is dropped, as by maxpool_codes
    codes = rng.integers(0, 1 << act_bits, (rows, h, w))
    codes[:, 0, 0] = (1 << act_bits) - 1  # the top code in a window's first position
    order = pooled_order(codes, pool)
    words = [{"code": int(c), "last": int(i == order.size - 1)} for i, c in enumerate(order.reshape(-1))]
    expected = maxpool_codes(codes[None], pool)[0]  # (rows, h // pool, w // pool)
    expected = expected.reshape(rows, -1).T.reshape(-1)
    dut = GroupMax(act_bits=act_bits, max_rows=8, max_group_log=4)
    got = run(dut, words, len(expected), rows=rows, group_log=2 * (pool.bit_length() - 1), seed=seed)
    assert [g.code for g in got] == expected.tolist()
    assert [g.last for g in got] == [0] * (len(expected) - 1) + [1]


@pytest.mark.parametrize("kwargs, message", [
    ({"act_bits": 0, "max_rows": 4, "max_group_log": 2}, "act_bits"),
    ({"act_bits": 2, "max_rows": 0, "max_group_log": 2}, "max_rows"),
    ({"act_bits": 2, "max_rows": 4, "max_group_log": -1}, "max_group_log"),
])
def test_parameters_are_checked(kwargs, message):
    with unelaborated(), pytest.raises(ValueError, match=message):
        GroupMax(**kwargs)
