"""Popcount: the number of set bits of a word, as a tree of full adders.

``popcount(x) = sum_i x_i`` for a ``width``-bit word ``x``; the result takes
``bits_for(width) = ceil_log2(width + 1)`` bits.  It is the inner kernel of
every bit-plane product (paper Eqn 3, see :mod:`sw.bitplanes`), so its cost
is multiplied by every plane pair of every processing element.

Three architectures build the same function from full adders (3:2 counters):

``"chain"`` (default)
    A tree of *rows* of full adders.  Each node adds the counts of two
    subtrees plus one fresh input bit, which enters as the row's carry-in::

        count(bits) = count(left) + count(right) + cin      (ripple adder)

    Leaves (two 1-bit operands plus a carry-in) are single full adders built
    from gates.  Wider rows are written as one adder, so the synthesiser maps
    each onto the dedicated carry chain, which does the majority half of
    every full adder in the row for free.  Depth is about
    ``log2(width)``; the row at level ``l`` ripples through ``l`` bits.

``"packed"`` (for ECP5)
    The same tree, every level of it on carry chains, leaves included: the
    rows of one level are laid end to end in shared adders of up to
    :data:`CHAIN_POSITIONS` bits.  Each row takes one position to inject its
    carry-in (both operand bits equal to ``cin``: that position's carry-out
    is ``cin``, whatever comes in) and one per operand bit; the injection
    position's sum bit is the previous row's carry-out.  So a row over
    ``k``-bit operands costs ``k + 1`` positions (one LUT4 each, a CCU2C
    holds two) and a leaf full adder two.  No logic is left outside the
    carry chains, which matters on ECP5: there ``synth_ecp5`` leaves adders
    of up to 4 output bits (``"chain"``'s two lowest levels) and every gate
    to ``abc9``, which for depth merges them, and whatever logic feeds the
    tree, into 5-7 input LUTs (PFUMX/L6MUX21) at about twice the LUT4s.
    Carry chains are boxes to ``abc9``: the logic before the tree maps on
    its own.  The price is speed: each level is a carry chain between two
    routing hops, and timing analysis follows the carry through a whole
    chain.  On ECP5 Fmax is 15-25 % below ``"chain"``'s unpipelined (5-15 %
    fused with a mask) and 20-35 % below with a register on every level
    (still 200-280 MHz).  On the iCE40UP5K it is 20-55 % below, for about
    10 % fewer logic cells on a plain popcount and 2-12 % more behind an
    AND (and at 256 bits, pipelined, nextpnr-ice40's default router did not
    converge on it): there ``"chain"`` is the better choice.

``"dadda"`` (for ASICs, or fabrics without carry chains)
    Column compression: Dadda's schedule of 3:2 and 2:2 counters reduces the
    single column of ``width`` bits to two rows (heights ``.. 9, 6, 4, 3, 2``),
    then one final carry-propagate adder sums them.  Logic depth is
    ``O(log_1.5 width)`` full adders plus one short adder.

AND + popcount: ``popcount_tree(m, bits, mask=mask)`` counts ``bits &
mask``.  With ``"packed"`` the AND is fused into the first level: one LUT4
takes two AND pairs and gives their 2-bit sum (``p0 ^ p1``, ``p0 & p1``),
so the leaves cost no more LUTs than the ANDs alone and the tree starts
from 2-bit counts; other architectures count ``bits & mask``.

Cost (``python -m bench.popcount_luts``, report in
``bench/reports/popcount_luts.md``): per input bit at 256 bits,
combinational, ECP5 ``synth_ecp5`` as the board builds run it, counted as
LUT4 + 2 per CCU2C (yosys) / ``TRELLIS_COMB`` (nextpnr); iCE40 logic cells:

=====================  =============  =============  =============
256 bits               behavioural    chain          packed
=====================  =============  =============  =============
ECP5 popcount          4.29 / 4.31    3.78 / 4.29    1.61 / 1.87
ECP5 ``a & b``         5.53 / 5.55    3.58 / 4.09    2.41 / 2.63 *
iCE40 popcount         1.97           1.75           1.56
iCE40 ``a & b``        2.74           2.25           2.32 *
=====================  =============  =============  =============

(* with ``mask=``, fused.)  A behavioural ``sum`` is already a Wallace tree
in yosys (``maccmap``); the explicit Dadda tree does no better on an FPGA.
A register on every level of ``"chain"`` also stops ``abc9``'s merging:
1.95 / 2.46 per bit on ECP5 for a plain popcount, but 3.68 / 4.19 with an
AND in front of it.

Pipelining: ``stages`` register cuts are spread evenly over the tree's levels
(:func:`popcount_depth`), the last one on the output, so latency is exactly
``stages`` cycles and throughput one word per cycle.  Every value that
crosses a cut is registered, including input bits consumed higher up.
``"packed"`` has the levels of ``"chain"`` (same :func:`popcount_depth`);
fused with a mask its tree may be shallower, and the spare levels come
last (the count passes through them).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from amaranth.hdl import Cat, Const, EnableInserter, Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .params import check_choice, check_int

__all__ = ["ARCHS", "CHAIN_POSITIONS", "popcount_depth", "popcount_max_stages", "popcount_tree",
           "PopcountTree"]

#: Tree architectures understood by :func:`popcount_tree`.
ARCHS = ("chain", "dadda", "packed")

#: Longest shared carry chain of a ``"packed"`` level, in adder bits (an ECP5
#: CCU2C holds two).  Timing analysis follows the carry through every row of
#: a chain (the rows are independent, but a carry path is a carry path), so
#: longer chains are slower; each chain also costs nextpnr-ecp5 a feed-in and
#: a feed-out CCU2C.  At 256 bits, 16 / 32 / 64 positions measured 2.09 /
#: 1.87 / 1.72 TRELLIS_COMB per bit and 290 / 248 / (unlimited) 142 MHz with
#: a register on every level.
CHAIN_POSITIONS = 32


# ---------------------------------------------------------------- planning
#
# Both trees are planned in plain Python first, so their depth is known
# without building hardware and the gateware below only walks the plan.


@dataclass(eq=False)
class _Node:
    """``a + b + cin`` where ``a``, ``b`` are nodes, pairs or input bit
    indices and ``cin`` is an input bit index or ``None``."""
    a: "_Node | _Pair | int"
    b: "_Node | _Pair | int"
    cin: "int | None"
    level: int
    max: int


@dataclass(eq=False)
class _Pair:
    """Input bits ``lo`` and ``lo + 1`` as a 2-bit count (a fused leaf of
    ``"packed"`` with a mask: ``p0 ^ p1``, ``p0 & p1``, one LUT4 each)."""
    lo: int
    level = 0
    max = 2


def _plan_chain(lo: int, hi: int, *, pairs: bool = False) -> "_Node | _Pair | int":
    """The ``"chain"`` tree over input bits ``lo .. hi - 1``; with ``pairs``,
    its leaves are :class:`_Pair` (the fused tree of ``"packed"``)."""
    n = hi - lo
    if n == 1:
        return lo
    if n == 2:
        if pairs:
            return _Pair(lo)
        return _Node(lo, lo + 1, None, level=1, max=2)  # half adder
    # One bit is the carry-in.  Of the other n - 1, the larger operand takes
    # a perfect tree of 2**j - 1 bits (every node has a carry-in and every
    # result fills its width), the smaller one the rest.  As shallow as an
    # even split, and within a logic cell or two of the cheapest tree found
    # by exhaustive search, where an even split can cost 25 % more (100 bits).
    # With pairs the perfect trees hold 2, 5, 11, .. 3 * 2**j - 1 bits.
    rest = n - 1
    left = 2 if pairs else 1
    while left < (rest + 1) // 2:
        left = 2 * left + 1
    left = min(left, rest - 1)
    a = _plan_chain(lo + 1, lo + 1 + left, pairs=pairs)
    b = _plan_chain(lo + 1 + left, hi, pairs=pairs)
    level = 1 + max(_level(a), _level(b))
    return _Node(a, b, lo, level=level, max=_max(a) + _max(b) + 1)


def _level(node) -> int:
    return 0 if isinstance(node, int) else node.level


def _max(node) -> int:
    return 1 if isinstance(node, int) else node.max


def _nodes_by_level(root) -> dict[int, list[_Node]]:
    by_level: dict[int, list[_Node]] = {}
    pending = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, _Node):
            by_level.setdefault(node.level, []).append(node)
            pending += [node.a, node.b]
    return by_level


def _dadda_targets(width: int) -> list[int]:
    """Column heights after each Dadda stage: ``.., 9, 6, 4, 3, 2``."""
    heights = [2]
    while heights[-1] < width:
        heights.append(heights[-1] * 3 // 2)
    return [h for h in reversed(heights) if h < width]


def popcount_depth(width: int, *, arch: str = "chain") -> int:
    """Adder levels of the ``arch`` tree over ``width`` bits (0 for one bit).

    ``"chain"`` and ``"packed"``: levels of ripple rows; ``"dadda"``: counter
    stages plus the final adder.
    """
    check_int("width", width, 1)
    check_choice("arch", arch, ARCHS)
    if arch in ("chain", "packed"):
        return _level(_plan_chain(0, width))
    if width == 1:
        return 0
    return len(_dadda_targets(width)) + 1


def popcount_max_stages(width: int, *, arch: str = "chain") -> int:
    """Largest ``stages`` allowed: one register per level (at least one, which
    for a one-bit word is just the output register)."""
    return max(1, popcount_depth(width, arch=arch))


# ---------------------------------------------------------------- gateware


def _full_adder(a: Value, b: Value, c: Value) -> tuple[Value, Value]:
    """3:2 counter: ``a + b + c = sum + 2 carry``."""
    return a ^ b ^ c, (a & b) | (a & c) | (b & c)


def _half_adder(a: Value, b: Value) -> tuple[Value, Value]:
    """2:2 counter: ``a + b = sum + 2 carry``."""
    return a ^ b, a & b


class _Stager:
    """Registers every live value after the levels chosen for ``stages`` cuts."""

    def __init__(self, m: Module, *, depth: int, stages: int, domain: str):
        self._m = m
        self._domain = domain
        # ceil(k * depth / stages), k = 1 .. stages: evenly spaced, distinct
        # while stages <= depth, and the last cut is always the output.
        self._cuts = {ceil(k * depth / stages) for k in range(1, stages + 1)}

    def after(self, level: int, values: dict) -> dict:
        if level not in self._cuts:
            return values
        staged = {}
        for key, value in values.items():
            # No reset: validity travels beside the data (see PopcountTree),
            # and a reset-less datapath spares the FPGA a reset net per bit.
            reg = Signal(value.shape(), name=f"s{level}_{len(staged)}", reset_less=True)
            self._m.d[self._domain] += reg.eq(value)
            staged[key] = reg
        return staged


def _build_chain(m: Module, bits: Value, stager: _Stager) -> Value:
    root = _plan_chain(0, len(bits))
    by_level = _nodes_by_level(root)
    live = stager.after(0, {i: bits[i] for i in range(len(bits))})
    for level in range(1, _level(root) + 1):
        for index, node in enumerate(by_level[level]):
            a, b = live.pop(node.a), live.pop(node.b)
            cin = None if node.cin is None else live.pop(node.cin)
            if max(len(a), len(b)) == 1:
                total = Cat(*(_half_adder(a, b) if cin is None else _full_adder(a, b, cin)))
            elif cin is None:
                total = a + b
            else:
                # Cat(cin, a) + Cat(cin, b) = 2 (a + b + cin): bit 0 only
                # generates the carry cin, so the whole node is one carry
                # chain.  Written as a + b + cin, yosys' alumacc would fuse
                # the tree back into one $macc (a Wallace tree of LUTs).
                total = (Cat(cin, a) + Cat(cin, b))[1:]
            count = Signal(range(node.max + 1), name=f"l{level}_{index}")
            m.d.comb += count.eq(total)
            live[node] = count
        live = stager.after(level, live)
    (result,) = live.values()
    return result


def _build_packed(m: Module, bits: Value, stager: _Stager, *, depth: int,
                  mask: "Value | None" = None) -> Value:
    width = len(bits)
    root = _plan_chain(0, width, pairs=mask is not None)
    by_level = _nodes_by_level(root)
    # The leaves: input bits, or with a mask the ANDs, fused in pairs.
    leaves: dict = {}
    pending = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, _Node):
            pending += [node.a, node.b] + ([] if node.cin is None else [node.cin])
        elif mask is None:
            leaves[node] = bits[node]
        elif isinstance(node, _Pair):
            p0 = bits[node.lo] & mask[node.lo]
            p1 = bits[node.lo + 1] & mask[node.lo + 1]
            pair = Signal(2, name=f"pair{node.lo}")
            m.d.comb += pair.eq(Cat(p0 ^ p1, p0 & p1))
            leaves[node] = pair
        else:
            product = Signal(name=f"and{node}")
            m.d.comb += product.eq(bits[node] & mask[node])
            leaves[node] = product

    live = stager.after(0, leaves)
    # A fused tree may be shallower than `depth`: its count passes through
    # the last levels (and their registers, if any).
    for level in range(1, depth + 1):
        rows = []  # (node, operand width k): k + 1 positions on a chain
        for node in by_level.get(level, []):
            rows.append((node, max(_max(node.a), _max(node.b)).bit_length()))
        chains: list[list] = []
        for row in rows:
            if not chains or sum(k + 1 for _, k in chains[-1]) + row[1] + 1 > CHAIN_POSITIONS:
                chains.append([])
            chains[-1].append(row)
        for index, chain in enumerate(chains):
            a_bits: list[Value] = []
            b_bits: list[Value] = []
            outputs = []
            for node, k in chain:
                a, b = live.pop(node.a), live.pop(node.b)
                cin = Const(0, 1) if node.cin is None else live.pop(node.cin)
                # Injection position (sum: the previous row's carry-out;
                # carry-out: cin), then a + b on k positions.
                outputs.append((node, len(a_bits) + 1))
                a_bits += [cin] + [a[i] if i < len(a) else Const(0, 1) for i in range(k)]
                b_bits += [cin] + [b[i] if i < len(b) else Const(0, 1) for i in range(k)]
            used = max(start + bits_for(node.max) for node, start in outputs)
            total = Signal(used, name=f"l{level}_chain{index}")
            m.d.comb += total.eq(Cat(*a_bits) + Cat(*b_bits))
            for node, start in outputs:
                count = Signal(range(node.max + 1), name=f"l{level}_{len(live)}")
                m.d.comb += count.eq(total[start:start + len(count)])
                live[node] = count
        live = stager.after(level, live)
    (result,) = live.values()
    return result


def _build_dadda(m: Module, bits: Value, stager: _Stager) -> Value:
    width = len(bits)
    # Live values are keyed by (column, index); a column holds bits of weight
    # 2**column.
    live = stager.after(0, {(0, i): bits[i] for i in range(width)})
    targets = _dadda_targets(width)
    for level, target in enumerate(targets, start=1):
        columns: list[list[Value]] = []
        for (column, _), bit in live.items():
            columns += [[] for _ in range(column + 1 - len(columns))]
            columns[column].append(bit)
        reduced: list[list[Value]] = [[] for _ in range(len(columns) + 1)]
        carries_in = 0
        for column, heap in enumerate(columns):
            # The column's height next level: what is left here, one sum per
            # counter, and the carries the column below sends up this level.
            height = len(heap) + carries_in
            counters = 0
            while height > target:
                if height - target >= 2 and len(heap) >= 3:
                    s, c = _full_adder(*heap[:3])
                    heap, height = heap[3:], height - 2
                else:
                    assert len(heap) >= 2, "Dadda schedule ran out of bits"
                    s, c = _half_adder(*heap[:2])
                    heap, height = heap[2:], height - 1
                for weight, value in ((column, s), (column + 1, c)):
                    bit = Signal(name=f"l{level}_c{weight}_{len(reduced[weight])}")
                    m.d.comb += bit.eq(value)
                    reduced[weight].append(bit)
                counters += 1
            reduced[column] += heap
            carries_in = counters
        live = stager.after(level, {(column, i): bit
                                    for column, heap in enumerate(reduced)
                                    for i, bit in enumerate(heap)})
    if width == 1:
        return live[(0, 0)]
    # Final carry-propagate adder over the (at most) two remaining rows.
    rows = [[Const(0, 1)] * (bits_for(width)) for _ in range(2)]
    for (column, i), bit in live.items():
        if column < bits_for(width):  # higher columns only ever hold zeros
            rows[i][column] = bit
    count = Signal(range(width + 1), name="sum")
    m.d.comb += count.eq(Cat(rows[0]) + Cat(rows[1]))
    (result,) = stager.after(len(targets) + 1, {"sum": count}).values()
    return result


def popcount_tree(m: Module, bits, *, stages: int = 0, domain: str = "sync",
                  arch: str = "chain", name: "str | None" = None, mask=None) -> Value:
    """Instantiate a popcount tree of ``bits`` (or of ``bits & mask``) inside
    module ``m``.

    Returns a value of ``bits_for(len(bits))`` bits (``range(len(bits) + 1)``)
    equal to the number of ones of ``bits`` (``bits & mask``) as it was
    ``stages`` cycles of ``domain`` earlier.  The tree lives in its own
    submodule (named ``name`` if given), so this may be called anywhere,
    inside control flow too.  Its registers have no clock enable of their
    own: to stall the tree, wrap the calling module in
    :class:`amaranth.hdl.EnableInserter`, which reaches into the submodule.

    Parameters
    ----------
    m : Module
        Module to add the tree to.
    bits : value-like
        The word to count, at least one bit.
    stages : int
        Register levels, ``0 .. popcount_max_stages(len(bits), arch=arch)``;
        the latency in cycles.  The last register is on the output.
    domain : str
        Clock domain of the registers (unused when ``stages == 0``).
    arch : str
        One of :data:`ARCHS` (see the module docstring).
    name : str or None
        Submodule name; ``None`` adds it anonymously.
    mask : value-like or None
        Count ``bits & mask`` (as wide as ``bits``): the AND of a bit-plane
        product.  ``"packed"`` fuses it into its first level (two AND pairs
        per LUT4); the other architectures count the AND.

    Raises
    ------
    ValueError
        If ``bits`` is empty, ``mask`` is not as wide, ``stages`` is out of
        range or ``arch`` unknown.
    """
    bits = Value.cast(bits)
    width = len(bits)
    check_int("len(bits)", width, 1)
    if mask is not None:
        mask = Value.cast(mask)
        if len(mask) != width:
            raise ValueError(f"mask must be as wide as bits ({width}), got {len(mask)} bits")
    check_choice("arch", arch, ARCHS)
    _check_stages(stages, width, arch)
    if not isinstance(domain, str) or domain == "comb":
        raise ValueError(f"domain must be the name of a clocked domain, not {domain!r}")

    tree = Module()
    if name is None:
        m.submodules += tree
    else:
        m.submodules[name] = tree
    # Depth 0 (one bit) still allows one stage: a cut after "level 0".
    depth = popcount_depth(width, arch=arch)
    stager = _Stager(tree, depth=depth, stages=stages, domain=domain)
    if arch == "packed":
        count = _build_packed(tree, bits, stager, depth=depth, mask=mask)
    else:
        if mask is not None:
            masked = Signal(width, name="masked")
            tree.d.comb += masked.eq(bits & mask)
            bits = masked
        build = _build_chain if arch == "chain" else _build_dadda
        count = build(tree, bits, stager)
    # Hand back a plain, correctly shaped signal whatever the last level was.
    result = Signal(range(width + 1), name="count")
    tree.d.comb += result.eq(count)
    return result


class PopcountTree(wiring.Component):
    """Streaming popcount: one ``width``-bit word in, its number of ones out.

    ``o.payload = popcount(i.payload) = sum_i i.payload[i]``, by
    :func:`popcount_tree`.

    Latency ``stages`` cycles (``0``: combinational, ``o`` mirrors ``i``);
    throughput one word per cycle while ``o.ready`` is high.  With
    ``stages > 0`` every register shares one clock enable, high when the
    output is empty or taken (``~o.valid | o.ready``): a result waiting on
    ``o.ready`` freezes the pipeline behind it, and ``i.ready`` is that
    enable (it depends on ``o.ready`` combinationally, never on ``i.valid``).
    Reset empties the pipeline.

    Parameters
    ----------
    width : int
        Word width, ``>= 1``.
    stages : int
        Pipeline registers, ``0 .. popcount_max_stages(width, arch=arch)``.
    arch : str
        Tree architecture, one of :data:`ARCHS`.

    Members
    -------
    i : ``In(stream.Signature(width))``
        Words to count.
    o : ``Out(stream.Signature(range(width + 1)))``
        Their popcounts, in order.
    """

    def __init__(self, width: int, *, stages: int = 0, arch: str = "chain"):
        check_int("width", width, 1)
        check_choice("arch", arch, ARCHS)
        _check_stages(stages, width, arch)
        self._width = width
        self._stages = stages
        self._arch = arch
        super().__init__({
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(range(width + 1))),
        })

    width = property(lambda self: self._width)
    stages = property(lambda self: self._stages)
    arch = property(lambda self: self._arch)
    latency = property(lambda self: self._stages, doc="Cycles from ``i`` to ``o``.")

    def elaborate(self, platform):
        m = Module()
        if self._stages == 0:
            m.d.comb += [
                self.o.payload.eq(popcount_tree(m, self.i.payload, arch=self._arch, name="tree")),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
            return m

        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        count = popcount_tree(m, self.i.payload, stages=self._stages, arch=self._arch, name="tree")
        valid = Signal(self._stages)  # one bit per stage, beside the data
        m.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
        m.d.comb += [
            self.i.ready.eq(advance),
            self.o.valid.eq(valid[-1]),
            self.o.payload.eq(count),
        ]
        # One enable for every register, the tree's included.
        return EnableInserter(advance)(m)


# ---------------------------------------------------------------- validation


def _check_stages(stages, width: int, arch: str) -> None:
    check_int("stages", stages, 0, popcount_max_stages(width, arch=arch),
              note=f"one register per level of a {width}-bit {arch!r} tree")
