# amaranth: UnusedElaboratable=no
"""Request checker: the verdict on a request, its checks in the protocol's order, pipelined.

The request decoding of :class:`hw.core.TrainingCore`.  From the request, the receiver's
event (``status``, ``cmd``, ``length`` and the command's header bytes, see
:func:`hw.frame_rx.event_layout`) and what the core holds (``held``: the
matrix's shape and how much of it is loaded, the threshold set's, the
feature map's), it finds the first failing check of
:class:`sw.core_model.CoreModel`'s, in the model's order (:mod:`sw.protocol`),
and makes the products that the command's execution needs (``plan``)::

  request, held --> products, registered            rows * cols, count * rows, count * cols * bits,
                    (CHECK1, CHECK2)                an accumulator's bytes; packed: its bits and the
                                                    reply's, by shifts and adds (CHECK_PACK, CHECK_PACK_SUM)
                --> the k_* flags and expected LENs, registered (one register a comparison)
                --> each check's outcome, registered
                --> the verdict: the first failing outcome (a priority chain), registered

No carry chain feeds the priority chain and no multiplier lies on any path
(a DSP block's output is slow): the products are shifts and adds where the
factor is narrow, and the one wide multiplier (``count * rows``) is the
first stage's alone.

Parameters
----------
config : :class:`sw.contract.core.CoreConfig`
    The core's limits (checked by the core): which commands exist, the
    bounds of the checks.

Ports
-----
request : ``In(event_layout(head_bytes))``
    The request: the receiver's event (:func:`hw.frame_rx.event_layout`; :attr:`head_bytes`
    header bytes, those past ``length`` stale).
held : ``In(held_layout(config))``
    What the core holds (:meth:`RequestChecker.held_layout`): ``matrix``
    (``has``: a matrix is being loaded or loaded; ``rows``, ``cols``,
    ``bits``, ``flags`` of LOAD_MATRIX at offset 0; ``total``, its codes;
    ``loaded``, codes loaded), with an activation stage ``thresholds``
    (``bits``, ``loaded`` rows), with a feature map ``fmap`` (``has``,
    ``dims``, its shape (LOAD_FMAP's channels, height, width); ``bits``,
    ``total``, ``loaded``).
command : ``Out(COMMAND_LAYOUT)``
    One flag per command of :class:`sw.contract.link.Cmd` (its name in lower
    case): the request's.
verdict : ``Out(VERDICT_LAYOUT)``
    ``status`` and ``detail`` of the first failing check (OK and NONE if
    none); ``ok``, made beside them: no check fails and the frame was good.
plan : ``Out(plan_layout(config))``
    ``total`` (LOAD_MATRIX: rows * cols), ``reply_size`` (RUN: the reply's
    payload bytes), ``width`` (RUN: bytes an accumulator,
    :func:`sw.contract.link.accumulator_width`); with packed accumulators
    ``packed_bits`` (:func:`sw.contract.link.accumulator_bits`); with batch
    sums ``sums_bytes`` (READ_SUMS: the sums' bytes), ``sum_bytes`` (bytes a
    sum) and ``sum_float`` (width 0, binary32 sums); with a feature map
    ``fmap_total`` (LOAD_FMAP: the map's codes) and ``window`` (the windowed
    command's window header).

Latency and throughput
----------------------
Every output is valid :attr:`RequestChecker.latency` cycles after the first
cycle in which ``request`` is stable (5; 7 with packed accumulators), ``held``
stable since the cycle before (products of the held matrix alone are made a
cycle ahead), and stays valid while they stay.  Each register updates every
cycle: no enable, no start.  One request at a time (the core's lock step:
the event waits while it is checked and executed, and ``held`` changes only
while a request executes).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from sw.contract import link as L
from sw.contract import window as W
from sw.contract.codes import MAX_CODE_BITS
from sw.contract.core import CoreConfig
from sw.contract.gradients import SCALE_MANTISSA_BITS

from .frame_rx import event_layout
from .layouts import FLAGS_LAYOUT, header_view
from .window import SHAPE_LAYOUT, WINDOW_LAYOUT

__all__ = ["RequestChecker", "COMMAND_LAYOUT", "VERDICT_LAYOUT", "bit_length"]

#: ``command``: one flag per command, named as :class:`sw.contract.link.Cmd` in lower case.
COMMAND_LAYOUT = data.StructLayout({cmd.name.lower(): 1 for cmd in L.Cmd})
#: ``verdict``: the first failing check's status and detail, and whether none failed.
VERDICT_LAYOUT = data.StructLayout({"ok": 1, "status": 8, "detail": 8})


def bit_length(value, *, group: int = 4):
    """``value.bit_length()`` of an unsigned value, in a few LUT levels whatever its width.

    A priority chain over the bits is one level a bit; here each ``group`` of bits
    gives its own bit length (one LUT an output bit), and the highest nonzero
    group's is picked by one-hot flags (an AND-OR)."""
    groups = [value[i:i + group] for i in range(0, len(value), group)]
    nonzero = Cat(part.any() for part in groups)
    result = Const(0, range(len(value) + 1))
    for j, part in enumerate(groups):
        length = Const(0, range(len(part) + 1))
        for b in range(len(part)):
            length = Mux(part[b], b + 1, length)
        result = result | Mux(nonzero[j] & ~nonzero[j + 1:].any(), j * group + length, 0)
    return result


class RequestChecker(wiring.Component):
    """Every check of a request, registered, and the first failing one (module docstring)."""

    def __init__(self, config: CoreConfig):
        if not isinstance(config, CoreConfig) or config.problems():
            raise ValueError(f"config must be a CoreConfig without problems, got {config!r}")
        self._config = config
        super().__init__({
            "request": In(event_layout(self.head_bytes)),
            "held": In(self.held_layout(config)),
            "command": Out(COMMAND_LAYOUT),
            "verdict": Out(VERDICT_LAYOUT),
            "plan": Out(self.plan_layout(config)),
        })

    config = property(lambda self: self._config)

    @property
    def max_count(self) -> int:
        """The most vectors a RUN may ask: more never fit a reply, of accumulators (the width
        byte and at least a byte each; packed, at least 2 bits each) or of activation codes
        (at least a bit each)."""
        c = self._config
        return 8 * c.max_payload if c.max_act_bits or c.packed_accumulators else c.max_payload - L.RUN_REPLY_HEADER
    latency = property(lambda self: 7 if self._config.packed_accumulators else 5,
                       doc="Cycles from stable inputs to valid outputs (module docstring).")

    @property
    def head_bytes(self) -> int:
        """Header bytes the checks read: the longest header of the config's commands (a
        windowed command's window header after its own)."""
        heads = [L.LOAD_HEADER, L.RUN_HEADER, L.THRESHOLD_HEADER, L.ACCUMULATE_HEADER, L.READ_SUMS_HEADER]
        if self._config.fmap_codes:
            heads += [L.LOAD_FMAP_HEADER, L.RUN_HEADER + L.WINDOW_HEADER, L.ACCUMULATE_HEADER + L.WINDOW_HEADER,
                      L.LOAD_HEADER + L.WINDOW_HEADER]
        return max(heads)

    @staticmethod
    def held_layout(config: CoreConfig) -> data.StructLayout:
        """The layout of ``held``, what the core holds (module docstring)."""
        total = config.max_rows * config.max_cols
        bits = range(config.max_bits + 1)
        members = {"matrix": data.StructLayout({
            "has": 1, "rows": range(config.max_rows + 1), "cols": range(config.max_cols + 1), "bits": bits,
            "flags": FLAGS_LAYOUT, "total": range(total + 1), "loaded": range(total + 1)})}
        if config.max_act_bits:
            members["thresholds"] = data.StructLayout({
                "bits": range(config.max_act_bits + 1), "loaded": range(config.max_rows + 1)})
        if config.fmap_codes:
            members["fmap"] = data.StructLayout({
                "has": 1, "dims": SHAPE_LAYOUT, "bits": bits,
                "total": range(config.fmap_codes + 1), "loaded": range(config.fmap_codes + 1)})
        return data.StructLayout(members)

    @staticmethod
    def plan_layout(config: CoreConfig) -> data.StructLayout:
        """The layout of ``plan``, the products the command's execution needs (module docstring)."""
        members = {"total": range(config.max_rows * config.max_cols + 1), "reply_size": 16,
                   "width": range(L.ACC_BYTES + 1)}
        if config.packed_accumulators:
            members["packed_bits"] = range(config.packed_bits + 1)
        if config.sum_slots:
            sum_bytes = max(L.sum_width(config.sum_bits), L.FLOAT_SUM_BYTES)
            members.update(sums_bytes=range(0xFFFF * sum_bytes + 1), sum_bytes=range(sum_bytes + 1),
                           sum_float=1)
        if config.fmap_codes:
            members.update(fmap_total=range(0xFFFF * W.MAX_SIDE * W.MAX_SIDE + 1), window=WINDOW_LAYOUT)
        return data.StructLayout(members)

    def elaborate(self, platform):
        m = Module()
        c = self._config
        max_bits, act_bits, sums, fmap = c.max_bits, c.max_act_bits, c.sum_slots, c.fmap_codes
        packed, pool = c.packed_accumulators, c.max_pool > 1
        request, held, plan = self.request, self.held, self.plan
        cmd, length = request.cmd, request.length
        matrix = held.matrix

        def header(fields, offset=0, **shapes):
            return header_view(request.head, fields, offset, **shapes)
        load = header(L.LOAD_FIELDS, flags=FLAGS_LAYOUT)
        l_rows, l_cols, l_bits, l_flags = load.rows, load.cols, load.bits, load.flags
        l_offset, l_count = load.offset, load.count
        run = header(L.RUN_FIELDS, flags=FLAGS_LAYOUT)
        r_count, r_bits, r_flags = run.count, run.bits, run.flags
        r_activate = r_flags.activate if act_bits else 0
        # ACCUMULATE's count, bits and flags sit where RUN's do: one decoding serves both.
        assert all(L.ACCUMULATE_FIELDS.offset(name) == L.RUN_FIELDS.offset(name) for name in L.RUN_FIELDS.names)
        accumulate = header(L.ACCUMULATE_FIELDS, flags=FLAGS_LAYOUT)
        read_sums = header(L.READ_SUMS_FIELDS)
        thresholds_head = header(L.THRESHOLD_FIELDS)
        h_offset, h_count = thresholds_head.offset, thresholds_head.count
        h_bits, h_flags = thresholds_head.bits, thresholds_head.flags
        r_window = r_flags.window if fmap else 0
        l_window = l_flags.window if fmap else 0  # LOAD_MATRIX: the matrix's rows from a window
        matrix_ready = matrix.has & (matrix.loaded == matrix.total)
        if fmap:
            load_fmap = header(L.LOAD_FMAP_FIELDS)
            f_held = held.fmap
            fmap_ready = f_held.has & (f_held.loaded == f_held.total)
            # The window header: after RUN's header, ACCUMULATE's or LOAD_MATRIX's.
            w_at = {L.Cmd.ACCUMULATE: L.ACCUMULATE_HEADER, L.Cmd.LOAD_MATRIX: L.LOAD_HEADER}
            w_value = header(L.WINDOW_FIELDS, L.RUN_HEADER).as_value()
            for command, offset in w_at.items():
                w_value = Mux(cmd == command, header(L.WINDOW_FIELDS, offset).as_value(), w_value)
            # Registered: the checks of its fields (k_window, CHECK2 on) start from a register,
            # not from the receiver's header through the command's multiplexer (the ULX3S's
            # critical path with a register on every popcount level).  Valid from CHECK1 on.
            w_fields = plan.window
            m.d.sync += w_fields.eq(w_value)

        # Products for the checks, registered (the request is stable while it waits), of
        # a count truncated to max_count's bits: they are used only once the count
        # passed its bound.
        total_max = c.max_rows * c.max_cols
        max_run_count = c.max_payload - L.RUN_REPLY_HEADER
        max_count = self.max_count
        # An ACCUMULATE's count passed `count <= sum_slots` before its products matter.
        count_bits = bits_for(max(max_count, sums))
        bits_bits = bits_for(MAX_CODE_BITS)  # a bits field that passed its check
        p_total = plan.total
        p_load_bits = Signal(range(total_max * max_bits + 1))
        p_reply = Signal(range(max(max_count, sums) * c.max_rows + 1))  # count * rows
        p_run_codes = Signal(range(max(max_count, sums) * c.max_cols + 1))
        p_run_bits = Signal(range(max(max_count, sums) * c.max_cols * max_bits + 1))
        m.d.sync += [
            p_total.eq(l_rows[:bits_for(c.max_rows)] * l_cols[:bits_for(c.max_cols)]),
            p_load_bits.eq(l_count[:bits_for(total_max)] * l_bits[:bits_bits]),
            p_reply.eq(r_count[:count_bits] * matrix.rows),
            p_run_codes.eq(r_count[:count_bits] * matrix.cols),
            p_run_bits.eq(p_run_codes * r_bits[:bits_bits]),
        ]
        # An accumulator's bytes in the reply (L.accumulator_width): the fewest holding
        # bit_length(cols) + m_bits + v_bits + 1 bits, an adder on the held matrix's
        # column bits (CHECK1) and a compare (CHECK2).  A bits field past max_bits is
        # refused before it matters.
        cols_length = Signal(range(bits_for(c.max_cols) + 1))  # bit_length(matrix.cols)
        m.d.sync += cols_length.eq(0)
        for n in range(len(matrix.cols)):
            with m.If(matrix.cols[n]):
                m.d.sync += cols_length.eq(n + 1)
        p_acc_bits = Signal(range(bits_for(c.max_cols) + 2 * max_bits + 2))
        p_width = plan.width
        m.d.sync += [
            p_acc_bits.eq(cols_length + matrix.bits + r_bits[:bits_for(max_bits)] + 1),
            p_width.eq(L.ACC_BYTES),
        ]
        for width in reversed(range(1, L.ACC_BYTES)):
            with m.If(p_acc_bits <= 8 * width):
                m.d.sync += p_width.eq(width)
        if act_bits:
            t_bits, t_loaded = held.thresholds.bits, held.thresholds.loaded
            # Activated reply bits, count * rows * A (registered after p_reply).
            p_act_bits = Signal(range(max_count * c.max_rows * act_bits + 1))
            # LOAD_THRESHOLDS record bytes, count * (1 + 4 * (2**bits - 1)), by
            # shifts (used once count <= rows and bits <= max_act_bits passed).
            h_count_rows = h_count[:bits_for(c.max_rows)]
            p_records = Signal(range(c.max_rows * L.threshold_record_size(act_bits) + 1))
            m.d.sync += [
                p_act_bits.eq(p_reply * t_bits),
                p_records.eq((h_count_rows << (h_bits[:bits_for(act_bits)] + 2)) - (h_count_rows << 1)
                             - h_count_rows),
            ]

        if packed:
            # FLAG_PACKED: L.accumulator_bits, bit_length(cols * n_m * n_v) + 1 bits an accumulator
            # (n = 2**bits - 1: shifts and subtracts), and the reply's count * rows * that bits.
            # cols * n_m is of the held matrix (always registered); the bound is registered in
            # the request's first cycle, its bit length in CHECK1, the reply's bits in two halves
            # of shifts and adds in CHECK2, their sum in CHECK_PACK.
            bound_max = c.max_cols * ((1 << max_bits) - 1) ** 2
            p_cols_nm = Signal(range(c.max_cols * ((1 << max_bits) - 1) + 1))
            p_bound = Signal(range(bound_max + 1))
            widest_packed = c.packed_bits
            p_packed_bits = plan.packed_bits
            p_packed_reply = Signal(range(max_count * c.max_rows * widest_packed + 1))
            terms = [Mux(bit, p_reply << n, 0) for n, bit in enumerate(p_packed_bits)]
            halves = [Signal(p_packed_reply.shape(), name=f"p_packed_half{n}") for n in range(2)]
            m.d.sync += [
                p_cols_nm.eq((matrix.cols << matrix.bits) - matrix.cols),
                p_bound.eq((p_cols_nm << r_bits[:bits_bits]) - p_cols_nm),
                p_packed_bits.eq(bit_length(p_bound) + 1),
                halves[0].eq(sum(terms[:len(terms) // 2])),
                halves[1].eq(sum(terms[len(terms) // 2:])),
                p_packed_reply.eq(halves[0] + halves[1]),
            ]

        # Every arithmetic check, registered: the verdict only picks the first failing
        # one, so no carry chain feeds its priority chain.  A check of several
        # comparisons registers each on its own (any_registered): their OR comes after
        # the flip-flops, in the cycle that registers the checks' outcomes.
        def any_registered(name, *conditions):
            flags = Signal(len(conditions), name=name)
            m.d.sync += flags.eq(Cat(*conditions))
            return flags.any()

        # `a + b > bound`, a position and a count past a bound: their low bits (as many as
        # the bound has) added, a short carry chain, and any higher bit set exceeds it.
        def exceeds(a, b, bound):
            width = len(bound) if isinstance(bound, Value) else bits_for(bound)
            return (a[:width] + b[:width] > bound) | a[width:].any() | b[width:].any()

        # A request's expected LEN (header and packed codes) is registered, and compared
        # with LEN in the cycle that registers the checks' outcomes (k_*_length).
        def length_differs(name, expected):
            registered = Signal(expected.shape(), name=name)
            m.d.sync += registered.eq(expected)
            return length != registered
        acc_bytes = L.RUN_REPLY_HEADER + Mux(p_width[1], Mux(p_width[0], p_reply + (p_reply << 1), p_reply << 1),
                                             Mux(p_width[0], p_reply, p_reply << 2))  # 1 + width * count * rows
        r_packed = r_flags.packed if packed else 0
        if packed:
            acc_bytes = Mux(r_packed, L.RUN_REPLY_HEADER + ((p_packed_reply + 7) >> 3), acc_bytes)
        # RUN: the reply cannot fit a frame.  Its accumulators' bytes (plain or packed) are
        # registered, and compared in the cycle that registers the checks' outcomes; the
        # count's bound by kind of reply, registered on its own.
        p_acc_bytes = Signal(acc_bytes.shape())
        m.d.sync += p_acc_bytes.eq(acc_bytes)
        too_many = [Mux(r_packed, r_count > max_count, r_count > max_run_count) if packed else r_count > max_run_count]
        acc_too_big = p_acc_bytes > c.max_payload
        if act_bits:  # ceil(bits / 8) > max_payload  <=>  bits > 8 * max_payload
            too_many = [~r_activate & too_many[0], r_activate & (r_count > max_count),
                        r_activate & (p_act_bits > 8 * c.max_payload)]
            acc_too_big = ~r_activate & acc_too_big
        k_run_too_big = any_registered("k_run_too_big", *too_many) | acc_too_big
        # LOAD_MATRIX: count 0 or past the matrix (a windowed one makes the whole matrix:
        # offset 0, count rows * cols)
        k_load_count = any_registered("k_load_count", l_count == 0, exceeds(l_offset, l_count, p_total),
                                      l_window & ((l_offset != 0) | (l_count != p_total)))
        # LOAD_MATRIX, RUN: LEN is not the header and the packed codes (vectors)
        k_load_length = length_differs("load_length", Mux(l_window, L.LOAD_HEADER + L.WINDOW_HEADER,
                                                          L.LOAD_HEADER + ((p_load_bits + 7) >> 3)))
        k_run_length = length_differs("run_length", Mux(r_window, L.RUN_HEADER + L.WINDOW_HEADER,
                                                        L.RUN_HEADER + ((p_run_bits + 7) >> 3)))
        if act_bits:
            # A pooled window's reply: a code per row of each pooling window, count // pool**2
            # vectors (count, a multiple of pool**2, is checked with the window).
            act_reply_bits = Mux(r_window, p_act_bits >> (w_fields.pool[:3] & 0b110), p_act_bits) if pool \
                else p_act_bits
            # LOAD_THRESHOLDS: count 0 or past the matrix's rows
            k_thr_count = any_registered("k_thr_count", h_count == 0, exceeds(h_offset, h_count, matrix.rows))
            # LOAD_THRESHOLDS: LEN is not the header and the records
            k_thr_length = length_differs("thr_length", L.THRESHOLD_HEADER + p_records)
            m.d.sync += plan.reply_size.eq(Mux(r_activate, (act_reply_bits + 7) >> 3, acc_bytes))
        else:
            m.d.sync += plan.reply_size.eq(acc_bytes)
        if fmap:
            # LOAD_FMAP: the map's codes, height * width then * channels, and its packed
            # bits; the window's field ranges (sw.contract.window.Window.problems).
            shape_bits = bits_for(W.MAX_SIDE * W.MAX_SIDE)
            p_plane = Signal(range(W.MAX_SIDE * W.MAX_SIDE + 1))
            p_fmap_total = plan.fmap_total
            p_fmap_bits = Signal(range(fmap * max_bits + 1))
            k_pooled = Signal()  # RUN, ACCUMULATE, LOAD_MATRIX: a pooled window (only an activated RUN's)
            k_pool_count = Signal()  # RUN: count not whole pooling windows
            first_x_bound = Mux(w_fields.order == W.PATCH, w_fields.out_width, w_fields.kernel)
            w_pool = w_fields.pool
            pool_ok = 0
            for p in W.POOLS:
                if p <= c.max_pool:
                    pool_ok = pool_ok | (w_pool == p)
            pool_m1 = (w_pool - 1)[:2]  # 1 or 3: the low bits a pooled window's positions align on
            pooled = w_pool != 1
            m.d.sync += [
                k_pooled.eq(pooled),
                k_pool_count.eq((r_count[:4] & Mux(w_pool == 4, 0b1111, 0b11)) != 0),
                p_plane.eq(load_fmap.height * load_fmap.width),
                p_fmap_total.eq(load_fmap.channels * p_plane[:shape_bits]),
                p_fmap_bits.eq(load_fmap.count[:bits_for(fmap)] * load_fmap.bits[:bits_bits]),
            ]
            # LOAD_FMAP: LEN is not the header and the packed codes
            k_fmap_length = length_differs("fmap_length", L.LOAD_FMAP_HEADER + ((p_fmap_bits + 7) >> 3))
            # LOAD_FMAP: a zero dimension or more codes than the memory holds; count 0 or past the map
            k_fmap_shape = any_registered("k_fmap_shape", load_fmap.channels == 0, load_fmap.height == 0,
                                          load_fmap.width == 0, p_fmap_total > fmap)
            k_fmap_count = any_registered("k_fmap_count", load_fmap.count == 0,
                                          exceeds(load_fmap.offset, load_fmap.count, p_fmap_total))
            # RUN, ACCUMULATE, LOAD_MATRIX: a window field out of its range
            k_window = any_registered(
                "k_window", w_fields.kernel == 0, w_fields.kernel > W.MAX_KERNEL,
                w_fields.stride == 0, w_fields.stride > W.MAX_STRIDE,
                w_fields.pad >= w_fields.kernel, w_fields.order > W.SHIFT,
                w_fields.out_width == 0, w_fields.channel >= f_held.dims.channels,
                w_fields.x >= first_x_bound,
                (w_fields.order == W.SHIFT) & (w_fields.y >= w_fields.kernel),
                ~pool_ok,
                pooled & ((w_fields.order != W.PATCH)
                          | (((w_fields.out_width | w_fields.y | w_fields.x)[:2] & pool_m1) != 0)))
        if sums:
            sum_width = L.sum_width(c.sum_bits)
            k_sums_too_big = Signal()  # READ_SUMS: the reply cannot fit a frame
            s_width = read_sums.width
            s_bytes = plan.sum_bytes
            # Registered (CHECK1), so that no multiplexer feeds the DSP block of sums_bytes.
            m.d.sync += [plan.sum_float.eq(s_width == L.SUM_FLOAT32),
                         s_bytes.eq(Mux(s_width == L.SUM_FLOAT32, L.FLOAT_SUM_BYTES, s_width[:bits_for(sum_width)]))]
            m.d.sync += [  # count * bytes (CHECK2)
                plan.sums_bytes.eq(read_sums.count * s_bytes),
                k_sums_too_big.eq(L.SUMS_REPLY_HEADER + plan.sums_bytes > c.max_payload),
            ]
            # ACCUMULATE: LEN is not the header and the packed vectors
            k_acc_length = length_differs("acc_length", Mux(r_window, L.ACCUMULATE_HEADER + L.WINDOW_HEADER,
                                                            L.ACCUMULATE_HEADER + ((p_run_bits + 7) >> 3)))
            # ACCUMULATE: count 0 or its sums past the last; READ_SUMS: count 0 or past the last sum
            k_acc_count = any_registered("k_acc_count", r_count == 0, r_count > sums,
                                         exceeds(accumulate.slot, p_reply, sums))
            k_sums_count = any_registered("k_sums_count", read_sums.count == 0,
                                          exceeds(read_sums.slot, read_sums.count, sums))

        def bad_bits_or_flags(bits, flags, allowed=L.FLAG_SIGNED):
            return (bits == 0) | (bits > max_bits), (flags.as_value() & ~allowed & 0xFF) != 0

        # The verdict: the first check that fails, in the protocol's order (OK: none).
        # Each check's outcome is registered (from the header and the k_* flags), the
        # verdict made from those bits alone (a priority chain) and registered itself.
        c_status = Signal(8)
        c_detail = Signal(8)
        m.d.sync += [self.verdict.status.eq(c_status), self.verdict.detail.eq(c_detail)]

        def held_flag(value, name):
            # `value` a cycle later (its inputs hold while a request is checked).
            flag = Signal(name=name)
            m.d.sync += flag.eq(value)
            return flag

        accepted = []  # per command: it is the request's and none of its checks fails

        def first_failing(commands, checks):
            # checks: (failed, status, detail) in the protocol's order, of `commands`.
            fails = [held_flag(failed, "fails") for failed, _, _ in checks]
            accepted.append(Cat(*(is_cmd[command] for command in commands)).any() & ~Cat(*fails).any())
            for index, (fail, (_, status, detail)) in enumerate(zip(fails, checks)):
                with (m.If if index == 0 else m.Elif)(fail):
                    m.d.comb += [c_status.eq(status), c_detail.eq(detail)]

        S, D = L.Status, L.Detail
        is_cmd = {command: getattr(self.command, command.name.lower()) for command in L.Cmd}
        m.d.sync += [is_cmd[command].eq(cmd == command) for command in L.Cmd]
        bad_frame = held_flag(request.status != S.OK, "bad_frame")
        m.d.comb += [c_status.eq(S.OK), c_detail.eq(D.NONE)]
        with m.If(bad_frame):
            m.d.comb += [c_status.eq(request.status), c_detail.eq(D.NONE)]
        with m.Elif(is_cmd[L.Cmd.PING] | is_cmd[L.Cmd.RESET]):
            first_failing([L.Cmd.PING, L.Cmd.RESET], [(length != 0, S.BAD_LENGTH, D.NONE)])

        # A windowed request's last checks (`windowed`: its window flag, `bits`: its codes'): a
        # complete map, of the request's bits, and a window in range.  A pooled window
        # (pool_refused: where it may not be) is a bad window too.
        def window_checks(windowed, bits, pool_refused):
            return [
                (windowed & ~fmap_ready, S.BAD_STATE, D.NO_FMAP),
                (windowed & (bits != f_held.bits), S.BAD_PARAMS, D.BITS),
                (windowed & (k_window | pool_refused), S.BAD_PARAMS, D.WINDOW),
            ] if fmap else []
        window_flag = L.FLAG_WINDOW if fmap else 0
        with m.Elif(is_cmd[L.Cmd.LOAD_MATRIX]):
            bad_bits, bad_flags = bad_bits_or_flags(l_bits, l_flags, L.FLAG_SIGNED | window_flag)
            continues = ((l_rows == matrix.rows) & (l_cols == matrix.cols) & (l_bits == matrix.bits)
                         & (l_flags.as_value() == matrix.flags.as_value()) & (l_offset == matrix.loaded)
                         & matrix.has)
            first_failing([L.Cmd.LOAD_MATRIX], [
                (length < L.LOAD_HEADER, S.BAD_LENGTH, D.NONE),
                (bad_bits, S.BAD_PARAMS, D.BITS),
                (bad_flags, S.BAD_PARAMS, D.FLAGS),
                ((l_rows == 0) | (l_rows > c.max_rows), S.BAD_PARAMS, D.ROWS),
                ((l_cols == 0) | (l_cols > c.max_cols), S.BAD_PARAMS, D.COLS),
                (k_load_count, S.BAD_PARAMS, D.COUNT),
                (k_load_length, S.BAD_LENGTH, D.NONE),
                ((l_offset != 0) & ~continues, S.BAD_STATE, D.SEQUENCE),
                *window_checks(l_window, l_bits, k_pooled if fmap else 0),
            ])
        with m.Elif(is_cmd[L.Cmd.RUN]):
            allowed = (L.FLAG_SIGNED | (L.FLAG_ACTIVATE if act_bits else 0) | window_flag
                       | (L.FLAG_PACKED if packed else 0))
            bad_bits, bad_flags = bad_bits_or_flags(r_bits, r_flags, allowed)
            if packed and act_bits:  # accumulators packed, or activation codes: not both
                bad_flags = bad_flags | (r_packed & r_activate)
            no_thresholds = r_activate & (t_loaded != matrix.rows) if act_bits else 0
            first_failing([L.Cmd.RUN], [
                (length < L.RUN_HEADER, S.BAD_LENGTH, D.NONE),
                (~matrix_ready, S.BAD_STATE, D.NO_MATRIX),
                (bad_bits, S.BAD_PARAMS, D.BITS),
                (bad_flags, S.BAD_PARAMS, D.FLAGS),
                (no_thresholds, S.BAD_STATE, D.NO_THRESHOLDS),
                (r_count == 0, S.BAD_PARAMS, D.COUNT),
                (k_run_too_big, S.BAD_PARAMS, D.REPLY_TOO_BIG),
                (k_run_length, S.BAD_LENGTH, D.NONE),
                *window_checks(r_window, r_bits, k_pooled & (~r_activate | k_pool_count) if fmap else 0),
            ])
        if act_bits:
            with m.Elif(is_cmd[L.Cmd.LOAD_THRESHOLDS]):
                continues = (h_offset == t_loaded) & (h_bits == t_bits)
                first_failing([L.Cmd.LOAD_THRESHOLDS], [
                    (length < L.THRESHOLD_HEADER, S.BAD_LENGTH, D.NONE),
                    (~matrix_ready, S.BAD_STATE, D.NO_MATRIX),
                    ((h_bits == 0) | (h_bits > act_bits), S.BAD_PARAMS, D.BITS),
                    (h_flags != 0, S.BAD_PARAMS, D.FLAGS),
                    (k_thr_count, S.BAD_PARAMS, D.COUNT),
                    (k_thr_length, S.BAD_LENGTH, D.NONE),
                    ((h_offset != 0) & ~continues, S.BAD_STATE, D.SEQUENCE),
                ])
        if sums:
            with m.Elif(is_cmd[L.Cmd.ACCUMULATE]):
                bad_bits, bad_flags = bad_bits_or_flags(r_bits, r_flags, L.FLAG_SIGNED | L.FLAG_FIRST | window_flag)
                first_failing([L.Cmd.ACCUMULATE], [
                    (length < L.ACCUMULATE_HEADER, S.BAD_LENGTH, D.NONE),
                    (~matrix_ready, S.BAD_STATE, D.NO_MATRIX),
                    (bad_bits, S.BAD_PARAMS, D.BITS),
                    (bad_flags, S.BAD_PARAMS, D.FLAGS),
                    ((accumulate.mantissa >> SCALE_MANTISSA_BITS) != 0, S.BAD_PARAMS, D.SCALE),
                    (k_acc_count, S.BAD_PARAMS, D.COUNT),
                    (k_acc_length, S.BAD_LENGTH, D.NONE),
                    *window_checks(r_window, r_bits, k_pooled if fmap else 0),
                ])
            with m.Elif(is_cmd[L.Cmd.READ_SUMS]):
                first_failing([L.Cmd.READ_SUMS], [
                    (length != L.READ_SUMS_HEADER, S.BAD_LENGTH, D.NONE),
                    (s_width > sum_width, S.BAD_PARAMS, D.WIDTH),  # 0 is SUM_FLOAT32
                    (k_sums_count, S.BAD_PARAMS, D.COUNT),
                    (k_sums_too_big, S.BAD_PARAMS, D.REPLY_TOO_BIG),
                ])
        if fmap:
            with m.Elif(is_cmd[L.Cmd.LOAD_FMAP]):
                f_bad_bits = (load_fmap.bits == 0) | (load_fmap.bits > max_bits)
                continues = ((load_fmap.as_value()[:8 * L.LOAD_FMAP_FIELDS.offset("bits")]
                              == f_held.dims.as_value())
                             & (load_fmap.bits == f_held.bits) & (load_fmap.offset == f_held.loaded) & f_held.has)
                first_failing([L.Cmd.LOAD_FMAP], [
                    (length < L.LOAD_FMAP_HEADER, S.BAD_LENGTH, D.NONE),
                    (f_bad_bits, S.BAD_PARAMS, D.BITS),
                    (k_fmap_shape, S.BAD_PARAMS, D.SHAPE),
                    (k_fmap_count, S.BAD_PARAMS, D.COUNT),
                    (k_fmap_length, S.BAD_LENGTH, D.NONE),
                    ((load_fmap.offset != 0) & ~continues, S.BAD_STATE, D.SEQUENCE),
                ])
        with m.Else():
            m.d.comb += [c_status.eq(S.BAD_COMMAND), c_detail.eq(D.NONE)]
        # OK, in parallel with the status (not a compare after it): the core tests one bit.
        m.d.sync += self.verdict.ok.eq(~bad_frame & Cat(*accepted).any())
        return m
