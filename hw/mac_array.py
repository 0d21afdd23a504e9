# amaranth: UnusedElaboratable=no
"""MAC array: ``pe x vectors`` bit-serial dot-product units over plane buffers, precision chosen per run.

A tile is ``pe`` rows of a matrix by ``vectors`` vectors: each plane word
fetched from the matrix buffer (``pe x simd`` bits) meets every vector of
the tile, and each vector word (``vectors x simd`` bits) every row, so
``pe * vectors * simd`` AND+popcount bit pairs (ops) are done per cycle by
``pe * vectors`` :class:`hw.dot_product.DotProduct` units.  For one tile
(``start``), with ``groups`` row groups of ``folds`` folds at ``m_bits`` x
``v_bits`` planes (run-time inputs), the issue stage walks the plane pairs
by falling weight, as the units' Horner sums want them::

    for group g: for weight s = m_bits + v_bits - 2 down to 0:
        for matrix plane i, vector plane k with i + k = s (i rising): for fold f:
            read matrix word (block g * folds + f, plane i) and vector word (fold f, plane k)
            beat: first at the group's first pair, double at the first pair of
            every lower weight, last at the group's final pair

so each unit ``(p, j)`` ends a group with ``U = sum_c q[g*pe + p, c] *
p_j[c]``, the unsigned dot product of codes (paper Eqn 3).  The ``pe *
vectors`` sums of a group are copied at once into ``drains`` shift chains,
chain ``c`` holding PE rows ``c * pe/drains .. (c + 1) * pe/drains - 1`` of
every vector (rows fastest, then slots), and leave one per chain per cycle
on ``o[c]`` (``row``, ``slot``, ``sum``) while the next group computes; the
chains run in lockstep (every cycle they carry the same slot and the same
row offset within their rows, and they end together).  With ``drain = pe
* vectors / drains`` a group therefore occupies the issue stage for::

    period = max(folds * m_bits * v_bits, drain)    cycles

(the second term only when a group is too short to hide the chains' drain),
and a tile of ``groups`` groups takes, from ``start`` to its last sum::

    tile_cycles = (groups - 1) * period + folds * m_bits * v_bits + latency + drain - 1

(:meth:`MacArray.tile_cycles`; ``latency`` is :attr:`MacArray.latency`).  Plane words are
addressed as :class:`hw.plane_writer.PlaneWriter` lays them out; the buffers
are :class:`hw.plane_buffer.PlaneBuffer` (one-cycle reads).

The three training products of a DoReFa layer map onto it by what the host
loads as the matrix and streams as vectors: forward ``W`` by activations,
backward-input ``W^T`` by gradients, backward-weight per sample ``G_b`` by
activation patches; the signed readings are applied after the sum by
:class:`hw.signed_correction.SignedCorrection`.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from sw.contract.codes import MAX_CODE_BITS

from .dot_product import DotProduct
from .params import check_choice, check_divisor, check_int
from .popcount import ARCHS

__all__ = ["MacArray"]


class MacArray(wiring.Component):
    """``pe x vectors`` dot-product units fed one plane pair per cycle (module docstring).

    Parameters
    ----------
    pe, vectors, simd : int
        Rows and vectors of a tile, lanes per plane word; ``>= 1``.
    max_bits : int
        Widest code, ``1 .. 8``.
    max_rows, max_cols : int
        Largest matrix (``>= pe``, ``>= simd`` not required): sizes the
        addresses, the counters and the sums.
    popcount_stages, popcount_arch :
        Of each unit's popcount tree.
    fetch_stages : int
        Registers between the buffers' read data and the units, ``0 .. 2``
        (a block RAM's clock-to-out is slow: on ECP5 it alone is 5.6 ns).
    drains : int
        Output chains, a divisor of ``pe`` (each takes ``pe / drains`` whole
        PE rows): a group's sums leave in ``pe * vectors / drains`` cycles.

    Latency and throughput
    ----------------------
    ``pe * vectors * simd`` bit pairs per issue cycle; a group's first sums
    are on ``o`` :attr:`latency` cycles after its last pair is issued, its
    last :attr:`drain` ``- 1`` cycles after those; a tile ends
    :meth:`tile_cycles` cycles after ``start`` (module docstring).

    Ports
    -----
    start : ``In(1)``
        Begin a tile with the run-time inputs below (set at least a cycle
        before ``start`` and held stable until
        ``o`` carries ``final``).
    groups, folds, m_bits, v_bits : ``In``
        Row groups (``1 .. ceil(max_rows / pe)``), folds per row, plane
        counts of each side.
    m_addr, m_en : ``Out``; m_data : ``In(ArrayLayout(simd, pe))``
        The matrix buffer's read port (data one cycle after the address).
    v_addr, v_en : ``Out``; v_data : ``In(ArrayLayout(simd, vectors))``
        The vector buffer's read port.
    o : ``Out(stream.Signature(StructLayout({"row", "slot", "sum", "final"}), always_ready=True)).array(drains)``
        Chain ``c``'s sums, one per cycle while a group drains; ``final`` on
        the tile's last (on every chain, in the same cycle).  Rows past the
        matrix and slots past the vectors loaded come out too (their sums
        are meaningless; the consumer drops them).
    busy : ``Out(1)``
        The issue stage is walking a tile.
    """

    def __init__(self, *, pe: int, vectors: int = 1, simd: int, max_bits: int = MAX_CODE_BITS,
                 max_rows: int, max_cols: int, popcount_stages: int = 0, popcount_arch: str = "chain",
                 fetch_stages: int = 0, drains: int = 1):
        self._pe = check_int("pe", pe, 1)
        self._drains = check_divisor("drains", drains, pe, note=f"a divisor of pe = {pe}: whole rows per chain")
        self._vectors = check_int("vectors", vectors, 1)
        self._simd = check_int("simd", simd, 1)
        self._max_bits = check_int("max_bits", max_bits, 1, MAX_CODE_BITS)
        self._max_rows = check_int("max_rows", max_rows, 1)
        self._max_cols = check_int("max_cols", max_cols, 1)
        self._popcount_arch = check_choice("popcount_arch", popcount_arch, ARCHS)
        self._fetch_stages = check_int("fetch_stages", fetch_stages, 0, 2)
        self._max_folds = -(-max_cols // simd)
        self._max_groups = -(-max_rows // pe)
        # Built here so that their parameters are checked (and their latency known) now.
        # Padding lanes hold code 0 on the matrix side, so no sum exceeds max_cols real lanes.
        self._units = [[DotProduct(simd, max_bits=max_bits, max_lanes=max(max_cols, simd),
                                   popcount_stages=popcount_stages, popcount_arch=popcount_arch)
                        for _ in range(vectors)] for _ in range(pe)]
        plane_bits = ceil_log2(max_bits)
        sum_bits = self._units[0][0].sum_bits
        super().__init__({
            "start": In(1),
            "groups": In(range(self._max_groups + 1)),
            "folds": In(range(self._max_folds + 1)),
            "m_bits": In(range(max_bits + 1)),
            "v_bits": In(range(max_bits + 1)),
            "m_addr": Out(bits_for(self._max_groups * self._max_folds - 1) + plane_bits),
            "m_en": Out(1),
            "m_data": In(data.ArrayLayout(simd, pe)),
            "v_addr": Out(bits_for(self._max_folds - 1) + plane_bits),
            "v_en": Out(1),
            "v_data": In(data.ArrayLayout(simd, vectors)),
            "o": Out(stream.Signature(data.StructLayout({
                "row": range(self._max_groups * pe),
                "slot": range(vectors),
                "sum": sum_bits,
                "final": 1,
            }), always_ready=True)).array(drains),
            "busy": Out(1),
        })

    pe = property(lambda self: self._pe)
    vectors = property(lambda self: self._vectors)
    simd = property(lambda self: self._simd)
    max_bits = property(lambda self: self._max_bits)
    drains = property(lambda self: self._drains)

    @property
    def ops_per_cycle(self) -> int:
        """AND+popcount bit pairs per cycle: ``pe * vectors * simd``."""
        return self._pe * self._vectors * self._simd

    @property
    def drain(self) -> int:
        """Cycles a group's sums take to leave: ``pe * vectors / drains``."""
        return self._pe * self._vectors // self._drains

    @property
    def latency(self) -> int:
        """Cycles from the last pair's issue to the group's first sum on ``o`` (the memory
        read, the fetch stages, the unit's :attr:`~hw.dot_product.DotProduct.latency` and the
        copy into the chain)."""
        return 1 + self._fetch_stages + self._units[0][0].latency + 1

    def period(self, folds: int, m_bits: int, v_bits: int) -> int:
        """Issue cycles of one group: ``max(folds * m_bits * v_bits, drain)``."""
        return max(folds * m_bits * v_bits, self.drain)

    def tile_cycles(self, groups: int, folds: int, m_bits: int, v_bits: int) -> int:
        """Cycles from the one with ``start`` high to the one with the ``final`` sum on ``o``
        (``0`` would be the same cycle): ``(groups - 1) * period + folds * m_bits * v_bits +
        latency + drain - 1``."""
        pairs = folds * m_bits * v_bits
        return (groups - 1) * self.period(folds, m_bits, v_bits) + pairs + self.latency + self.drain - 1

    def elaborate(self, platform):
        m = Module()
        pe, vectors, max_bits = self._pe, self._vectors, self._max_bits
        plane_bits = ceil_log2(max_bits)

        # ------------------------------------------------------------ issue
        group = Signal(range(self._max_groups))
        fold = Signal(range(self._max_folds))
        base = Signal(range(self._max_groups * self._max_folds + 1))  # group * folds
        weight = Signal(range(2 * max_bits - 1))  # s = i + k
        i = Signal(range(max_bits))
        k = Signal(range(max_bits))
        # Cycles of the group still to come before the previous group's drain is hidden, less
        # one (counting down to 0; only with a drain of more than 2 cycles).
        wait = Signal(range(max(self.drain - 1, 1)))
        pairs_done = Signal()
        opens = Signal()  # the next beat opens a weight (doubles the sums)

        def address(plane, word):
            return Cat(plane[:plane_bits], word) if plane_bits else word
        issuing = Signal()
        m.d.comb += [
            issuing.eq(self.busy & ~pairs_done),
            self.m_addr.eq(address(i, base + fold)),
            self.v_addr.eq(address(k, fold)),
            self.m_en.eq(issuing),
            self.v_en.eq(issuing),
        ]
        # Registered bounds (inputs stable from `start` on): no subtractor on a compare path.
        folds_last = Signal.like(fold)
        groups_last = Signal.like(group)
        m_bits_last = Signal.like(i)
        v_bits_last = Signal.like(k)
        i_before_last = Signal(range(-1, max_bits))  # m_bits - 2
        top_weight = Signal.like(weight)
        one_pair = Signal()  # a single plane on either side: one pair at every weight
        m.d.sync += [folds_last.eq(self.folds - 1), groups_last.eq(self.groups - 1),
                     m_bits_last.eq(self.m_bits - 1), v_bits_last.eq(self.v_bits - 1),
                     i_before_last.eq(self.m_bits - 2), top_weight.eq(self.m_bits + self.v_bits - 2),
                     one_pair.eq((self.m_bits == 1) | (self.v_bits == 1))]
        # The walk's tests of the pair now issued, each a flip-flop set with the step that
        # reaches that pair, so the step itself decides on registered bits only.
        last_fold = Signal()  # fold == folds_last
        last_of_weight = Signal()  # i == m_bits_last or k == 0 (i = min(s, m_bits - 1))
        weight_zero = Signal()  # weight == 0
        first_pair = Signal()  # fold == 0 and weight == top_weight: the group's first pair
        drained = Signal()  # drain - 1 cycles of the group passed: the previous group's drain is hidden

        def restart_wait():
            # A group opens: drain - 1 cycles to hide (``drained`` at once with a drain of 1).
            return [wait.eq(max(self.drain - 2, 0)), drained.eq(self.drain <= 1)]

        last_pair = last_fold & last_of_weight & weight_zero
        # The first pair of the next lower weight s - 1, (max(0, s - 1 - (v_bits - 1)),
        # min(s - 1, v_bits - 1)), kept ready: from weight s's (i, k), i - 1 while i > 0,
        # else k - 1.
        next_i, next_k = Signal.like(i), Signal.like(k)

        def lower(first_i, first_k):
            return [next_i.eq(Mux(first_i == 0, 0, first_i - 1)), next_k.eq(Mux(first_i == 0, first_k - 1, first_k))]

        # The beat's sideband, registered: it meets the words read this cycle.
        b_valid, b_first, b_double, b_last = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [
            b_valid.eq(issuing),
            b_first.eq(first_pair),
            b_double.eq(opens),
            b_last.eq(last_pair),
        ]

        def open_group():
            # The top weight's one pair: (m_bits - 1, v_bits - 1).
            return [fold.eq(0), last_fold.eq(folds_last == 0), first_pair.eq(1), weight.eq(top_weight),
                    weight_zero.eq(top_weight == 0), i.eq(m_bits_last), k.eq(v_bits_last), last_of_weight.eq(1),
                    *lower(m_bits_last, v_bits_last)]

        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), group.eq(0), base.eq(0), *restart_wait(),
                         pairs_done.eq(0), opens.eq(0), *open_group()]
        with m.Elif(self.busy):
            # drain - 1 cycles passed by the end of this one (always, at a drain of 2 or less)
            if self.drain > 2:
                m.d.sync += [wait.eq(wait - (wait != 0)), drained.eq(drained | (wait == 0))]
            else:
                m.d.sync += drained.eq(1)
            with m.If(issuing):
                m.d.sync += [fold.eq(fold + 1), last_fold.eq(fold + 1 == folds_last), opens.eq(0),
                             first_pair.eq(0)]
                with m.If(last_fold):
                    m.d.sync += [fold.eq(0), last_fold.eq(folds_last == 0), i.eq(i + 1), k.eq(k - 1),
                                 last_of_weight.eq((i == i_before_last) | (k == 1))]
                    with m.If(last_of_weight):
                        # Weight s - 1 < top: its first pair is its last only at weight 0 or
                        # with one plane on a side.
                        m.d.sync += [opens.eq(1), weight.eq(weight - 1), weight_zero.eq(weight == 1),
                                     i.eq(next_i), k.eq(next_k), last_of_weight.eq((weight == 1) | one_pair),
                                     *lower(next_i, next_k)]
                        with m.If(weight_zero):
                            m.d.sync += [pairs_done.eq(1), opens.eq(0), *open_group()]
            # The group ends once its pairs are issued and the chain's drain is hidden.
            with m.If((pairs_done | (issuing & last_pair)) & drained):
                m.d.sync += [*restart_wait(), pairs_done.eq(0), group.eq(group + 1),
                             base.eq(base + self.folds)]
                with m.If(group == groups_last):
                    m.d.sync += self.busy.eq(0)

        # ------------------------------------------------------------ fetch
        m_words, v_words = self.m_data, self.v_data
        for stage in range(self._fetch_stages):
            m_next = Signal.like(m_words, name=f"m_fetch{stage}")
            v_next = Signal.like(v_words, name=f"v_fetch{stage}")
            sideband = [Signal(name=f"{n}_fetch{stage}") for n in ("valid", "first", "double", "last")]
            m.d.sync += [m_next.eq(m_words), v_next.eq(v_words),
                         *(a.eq(b) for a, b in zip(sideband, (b_valid, b_first, b_double, b_last)))]
            m_words, v_words = m_next, v_next
            b_valid, b_first, b_double, b_last = sideband

        # ------------------------------------------------------------ units
        sums = []
        for p in range(pe):
            for j in range(vectors):
                unit = self._units[p][j]
                m.submodules[f"unit{p}_{j}"] = unit
                m.d.comb += [
                    unit.i.valid.eq(b_valid),
                    unit.i.payload.m.eq(m_words[p]),
                    unit.i.payload.v.eq(v_words[j]),
                    unit.i.payload.first.eq(b_first),
                    unit.i.payload.double.eq(b_double),
                    unit.i.payload.last.eq(b_last),
                ]
                sums.append(unit.o.payload)  # index j * pe + p below: rows fastest
        sums = [sums[p * vectors + j] for j in range(vectors) for p in range(pe)]
        capture = self._units[0][0].o.valid  # every unit ends its sum in the same cycle

        # ------------------------------------------------------------ drain
        # Chain c holds PE rows c*per .. (c+1)*per - 1 of every vector, rows fastest; all chains
        # shift together, so one set of counters says which (row offset, slot) each carries.
        per = pe // self._drains
        chains = [[Signal(len(sums[0]), name=f"chain{c}_{n}") for n in range(self.drain)]
                  for c in range(self._drains)]
        d_active = Signal()
        d_q = Signal(range(per))
        d_j = Signal(range(vectors))
        d_row = Signal(range(self._max_groups * pe + 1))  # first row of the group draining
        d_group = Signal(range(self._max_groups))
        d_last = (d_q == per - 1) & (d_j == vectors - 1)
        for c, chain in enumerate(chains):
            m.d.comb += [
                self.o[c].valid.eq(d_active),
                self.o[c].payload.row.eq(d_row + (c * per) + d_q),
                self.o[c].payload.slot.eq(d_j),
                self.o[c].payload.sum.eq(chain[0]),
                self.o[c].payload.final.eq(d_last & (d_group == groups_last)),
            ]
        with m.If(d_active):
            for chain in chains:
                m.d.sync += [a.eq(b) for a, b in zip(chain, chain[1:])]
            m.d.sync += d_q.eq(d_q + 1)
            with m.If(d_q == per - 1):
                m.d.sync += [d_q.eq(0), d_j.eq(d_j + 1)]
            with m.If(d_last):
                m.d.sync += [d_active.eq(0), d_j.eq(0), d_row.eq(d_row + pe), d_group.eq(d_group + 1)]
        with m.If(self.start):
            m.d.sync += [d_row.eq(0), d_group.eq(0)]
        with m.If(capture):  # a group's sums (overrides the shift: its last drain cycle is now)
            for c, chain in enumerate(chains):
                m.d.sync += [a.eq(sums[j * pe + c * per + q])
                             for a, (j, q) in zip(chain, ((j, q) for j in range(vectors) for q in range(per)))]
            m.d.sync += [d_active.eq(1), d_q.eq(0), d_j.eq(0)]
        return m
