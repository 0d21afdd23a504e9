# amaranth: UnusedElaboratable=no
"""The training core: a GEMM co-processor on integer codes behind the host link.

:class:`TrainingCore` is :class:`sw.core_model.CoreModel` in gateware: bytes
of requests in (``rx``), bytes of replies out (``tx``), byte for byte the
model's replies (:mod:`sw.protocol` defines the frames, the commands PING,
RESET, LOAD_MATRIX, RUN, LOAD_THRESHOLDS, ACCUMULATE, READ_SUMS and LOAD_FMAP,
every error and the order of the checks).
:class:`UARTCore` puts it behind 8N1 UART pins for a board.

Datapath
--------
::

    rx -> FrameReceiver --wr--> request buffer (max_payload bytes)
              | event (status, cmd, tag, LEN, the header bytes)
              v
          RequestChecker (the held matrix's, thresholds', map's state beside it):
              | the verdict (the first failing check, in the protocol's order), the plan
              v
          command FSM: the verdict's error reply, or
            LOAD_MATRIX: buffer -> CodeUnpacker -> GemmEngine (plane writer -> matrix planes, row sums)
            LOAD_THRESHOLDS: buffer (byte mode: the unpacker bypassed) -> 4 bytes
                 -> int32 -> SerialThresholdUnit's load (one threshold a beat)
            RUN: per tile of up to `vectors` vectors: buffer -> CodeUnpacker -> GemmEngine
                 (vector planes, vector sums); START; the engine's MacArray walks
                 the plane pairs of every row group, SignedCorrection makes each
                 value, the result memory holds the tile; then the result memory,
                 per vector and row -> CodePacker: each value's low `width` bytes,
                 LE, a stream beat each (the reply's width byte first: the fewest
                 bytes holding 2**(bit_length(cols) + m_bits + v_bits) - 1 >= cols
                 * n_m * n_v, sw.contract.link.accumulator_width), or, packed
                 (FLAG_PACKED, with packed_accumulators), its low `bits` in one beat
                 (bits = bit_length(cols * n_m * n_v) + 1, accumulator_bits),
                 or, activated: the result memory, one value a stream beat ->
                 SerialThresholdUnit (one threshold compared a cycle, code = count
                 of passes) -> [GroupMax: a pooled window's pool**2 vectors' max,
                 per row, with max_pool > 1] -> CodePacker
            ACCUMULATE (with sums): a RUN whose values, instead of the reply, go one a
                 cycle into a BatchSum (floor(M * value * 2**(32 - shift)) added to, or
                 with `first` written over, sum slot + v*rows + r); the empty reply once
                 the last is written
            READ_SUMS: BatchSum's read port -> SumReader: the sums' low `width` bytes, LE,
                 or (width 0, SUM_FLOAT32) through a SumToFloat the 4 bytes of each sum's
                 binary32 pattern, LE; a byte a cycle
            LOAD_FMAP (with a feature map): buffer -> CodeUnpacker -> WindowGenerator's map
            RUN, ACCUMULATE with the window flag: the tile's vectors from the WindowGenerator
                 (sw.contract.window: each code the map's under the window, or 0) in
                 place of the buffer's codes; the rest as above
            LOAD_MATRIX with the window flag: the matrix's rows, the window's first `rows`
                 vectors, from the WindowGenerator into the plane writer, one code a cycle
              | reply body (status, tag, LEN, payload) as it is made
              v
          FrameTransmitter (SYNC, CRC) -> tx

A request is executed only after its CRC has checked, so an error reply
never changes the core's state, and the receiver takes no byte while a
request is executed or answered (``rx.ready`` low: lock step).

Memories (:class:`amaranth.lib.memory.Memory`, each written whole words so
that it maps onto block RAM): the request buffer (``max_payload`` bytes);
the engine's (:attr:`TrainingCore.memory_bits`: ``pe`` banks of matrix
planes, ``vectors`` banks of vector planes, the code sums, the results of a
tile); with the activation stage (``max_act_bits > 0``), the threshold
unit's (:attr:`hw.serial_threshold.SerialThresholdUnit.memories`: ``max_rows
* 2**max_act_bits`` int32 thresholds, ``max_rows`` directions); with batch
sums (``sum_slots > 0``), the sums, ``sum_slots`` words of ``sum_bits``
(:class:`hw.batch_sum.BatchSum`), zeroed after a reset and by RESET (a sweep
of ``sum_slots`` cycles, which the next request waits for); with a feature
map (``fmap_codes > 0``), its ``fmap_codes`` codes of ``max_bits``
(:class:`hw.window.WindowGenerator`), forgotten by RESET.

Activation (:func:`sw.numeric.apply_thresholds`): an activated RUN streams
each tile's values out of the result memory (the tile's drain), each tagged with
its row, into a :class:`hw.serial_threshold.SerialThresholdUnit` (``n_a = 2**A
- 1`` cycles a value: one 32-bit comparator, one threshold a cycle), whose
codes go to a :class:`hw.code_packer.CodePacker`, whose bytes are the reply
body while the RUN goes on; ``DONE`` waits for its last byte.  The
thresholds (``t_loaded`` rows of ``t_bits`` bits) are forgotten by RESET and
by LOAD_MATRIX with ``offset = 0``.

Arithmetic: :class:`hw.gemm.GemmEngine` (unsigned AND + popcount over plane
pairs, then the signed-odd correction), exactly
:func:`sw.bitplanes.signed_matmul`, with bits and signedness chosen per RUN
(vector) and per LOAD_MATRIX (matrix) at run time.

Cycle cost of a RUN (``count`` vectors, matrix ``rows x cols`` of ``m_bits``
bits, vector ``v_bits`` bits, ``tx`` never stalling)::

    per tile:    load     unpack codes * (1 + v_bits / 8) + folds * v_bits per vector
                 compute  GemmEngine.tile_cycles(rows, cols, m_bits, v_bits)   (:meth:`TrainingCore.run_cycles`)
                 drain    the tile's values out of the result memory, while the next
                          tile loads (its compute waits for both):
                 reply    2 + r (the first read, its r = result_stages and the value
                          slice), then width cycles per value, a byte a cycle through
                          the CodePacker
                 packed:  the same at bits / 8 cycles per value (the packer takes the
                          next value as the last byte of one leaves; a value a cycle
                          at most)
                 activated: instead, 2 + r + (values - 1) * (2**A - 1) (the first
                     read and r more, then its values into the SerialThresholdUnit,
                     one every 2**A - 1 cycles), and 2**A +
                     SerialThresholdUnit.latency after the last tile (its last code
                     through the value slice; the packed codes leave meanwhile)
                 ACCUMULATE: instead, 1 + r, then 1 per value into the batch sums,
                     and BatchSum.latency before the reply
    READ_SUMS:   a byte a cycle (hw.sum_reader.SumReader: width bytes a sum, width 0: 4),
                 the first SumReader.latency (+ SumToFloat.latency at width 0) cycles
                 after the request is decided, while the reply's header leaves

so a tile costs ``3 + max(load, the previous tile's drain) + compute`` (3:
TILE, VECTOR's first cycle, START) and the last drain comes on top, plus the
request's and the reply's bytes (one per cycle) and about six cycles of
handshakes and checks per request (the checks take
:attr:`hw.request_checker.RequestChecker.latency` cycles: 5, 7 with packed
accumulators).  The compute is ``period =
max(folds * m_bits * v_bits, pe * vectors)`` cycles per row group (``folds
= ceil(cols / simd)``) and a pipeline tail per tile: the array does ``pe *
vectors * simd`` AND+popcount bit pairs per cycle.  The link is the
bottleneck by far: e.g. one 256-code 8-bit vector takes 22 ms on a
115,200-baud UART, the compute of 32 rows of it ``8 * 32 * 64`` cycles at
the default ``pe = 4, simd = 8`` (1.4 ms at 12 MHz).
LOAD_THRESHOLDS takes one cycle per record byte.
"""

from contextlib import contextmanager
from dataclasses import replace
from math import ceil
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from sw.contract import link as L
from sw.contract import window as W
from sw.contract.codes import MAX_CODE_BITS
from sw.contract.core import CORE_DEFAULTS, CoreConfig
from sw.contract.gradients import SCALE_MANTISSA_BITS
from sw.contract.link import idle_timeout_cycles

from .batch_sum import BatchSum
from .sum_reader import SumReader
from .code_packer import CodePacker
from .code_unpacker import CodeUnpacker
from .frame_rx import FrameReceiver
from .frame_tx import BODY_LAYOUT, FrameTransmitter
from .gemm import GemmEngine
from .group_max import GroupMax
from .block_ram import NO_RW_CHECK, registered_read
from .request_checker import RequestChecker
from .serial_threshold import SerialThresholdUnit
from .layouts import FLAGS_LAYOUT, header_view
from .params import check_int
from .skid_buffer import SkidBuffer
from .uart import UARTReceiver, UARTTransmitter
from .window import WindowGenerator

__all__ = ["TrainingCore", "UARTCore", "CORE_DEFAULTS", "DEFAULT_CLK_FREQ", "DEFAULT_IDLE_TIMEOUT"]

# CORE_DEFAULTS (defined in sw.contract.core, the one definition, re-exported
# here) fits the block RAM (EBR, 30 x 4 kbit) of an iCE40 UP5K: the 32 x 256
# x 8-bit matrix is 64 kbit of planes (16 EBRs), the 1 KiB request buffer 2,
# the thresholds (32 rows x 16 int32 slots at max_act_bits = 4) 4 (see
# tests/hw/test_core.py for the whole count).  The boards build presets of
# their own (boards/top.py: CORE_PRESETS).

#: The clock the default core is sized for (the iCEBreaker's 12 MHz).
DEFAULT_CLK_FREQ = 12_000_000
#: Idle timeout in cycles by default: :data:`sw.contract.link.RX_IDLE_TIMEOUT_S` at :data:`DEFAULT_CLK_FREQ`.
DEFAULT_IDLE_TIMEOUT = idle_timeout_cycles(DEFAULT_CLK_FREQ)

# Reply payload kinds of the short messages (everything but accumulators).
_MSG_EMPTY, _MSG_ERROR, _MSG_PING, _MSG_LOADED = range(4)


class _OneHotFSM:
    """A one-hot state machine (Amaranth's ``m.FSM`` encodes its states in binary,
    and Yosys does not re-encode a register with an initial value): one flip-flop
    per state, so a state's test is one bit and each state's next value is an OR
    of the transitions into it, not a decode of the whole state vector.

    ``with fsm.state(name):`` is ``m.State(name)``; ``fsm.goto(name)`` is
    ``m.next = name``.  Exactly one state bit is high at any time."""

    def __init__(self, m, init):
        self._m, self._init = m, init
        self._bits, self._enter, self._leave = {}, {}, {}
        self._declared = set()
        self._current = None

    def _bit(self, name):
        if name not in self._bits:
            self._bits[name] = Signal(name=f"state_{name}", init=int(name == self._init))
            self._enter[name] = Signal(name=f"enter_{name}")
            self._leave[name] = Signal(name=f"leave_{name}")
        return self._bits[name]

    def ongoing(self, name):
        return self._bit(name)

    @contextmanager
    def state(self, name):
        assert name not in self._declared and self._current is None, name
        self._declared.add(name)
        self._current = name
        with self._m.If(self._bit(name)):
            yield
        self._current = None

    def goto(self, name):
        assert self._current is not None and name != self._current, (self._current, name)
        self._bit(name)
        self._m.d.comb += [self._enter[name].eq(1), self._leave[self._current].eq(1)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            assert self._init in self._declared and set(self._bits) == self._declared, \
                set(self._bits) ^ self._declared
            for name, bit in self._bits.items():
                self._m.d.sync += bit.eq((bit & ~self._leave[name]) | self._enter[name])
        return False


class TrainingCore(wiring.Component):
    """GEMM co-processor on codes behind the host-link protocol (module docstring).

    Parameters
    ----------
    max_rows, max_cols : int
        Largest matrix, ``1 .. 65535`` each (reported by PING).
    max_bits : int
        Widest code, ``1 .. 8``; LOAD_MATRIX and RUN take ``1 .. max_bits``.
    pe, simd : int
        Rows computed in parallel (``1 .. max_rows``) and columns per fold
        (``1 .. max_cols``); reported by PING.
    vectors : int
        Vectors of a tile, ``1 .. 256``: each matrix plane word fetched
        meets all of them, so the core does ``pe * vectors * simd``
        AND+popcount bit pairs per cycle (:attr:`ops_per_cycle`).  Not
        reported by PING: no byte on the link depends on it.
    popcount_stages, popcount_arch, fetch_stages, drains :
        Pipeline registers in each popcount tree (Fmax against latency), the
        tree's architecture (:data:`hw.popcount.ARCHS`: ``"packed"`` is the
        smallest on ECP5), registers after the plane buffers' reads (and, if
        any, one after the threshold unit's, its ``read_stages``, one after the
        result banks', :attr:`result_stages`, and a skid buffer after the
        request buffer's: a cycle more for each request) and the
        chains a row group's sums leave through (a divisor of ``pe``; each
        chain has its own signed correction and results bank)
        (:class:`hw.mac_array.MacArray`, :class:`hw.gemm.GemmEngine`).
    matrix_memory : str
        Where the matrix's bit planes are held: ``"block"`` (block RAM) or
        ``"spram"`` (the iCE40 UltraPlus's single-port SPRAMs; ``pe * simd <=
        64``) (:class:`hw.gemm.GemmEngine`).
    max_payload : int
        Largest request and reply payload, ``13 .. 4096``.  The protocol's
        invariants must hold: one vector and its reply fit a frame
        (``max_payload >= 4 + ceil(max_cols * max_bits / 8)`` and ``>= 4 *
        max_rows``); and ``max_cols * (2**max_bits - 1)**2 < 2**31``.
    max_act_bits : int
        Widest activation code of the threshold stage, ``0 .. 8`` (reported
        by PING); 0 builds no activation stage (no threshold memory:
        LOAD_THRESHOLDS is an unknown command, the activate flag a bad
        flag).  One row's thresholds must fit a payload: ``max_payload >= 6
        + 1 + 4 * (2**max_act_bits - 1)``.
    sum_slots, sum_bits : int
        The batch sums of weight gradients (ACCUMULATE, READ_SUMS; reported
        by PING): ``sum_slots`` sums (``0 .. 65535``; 0, the default, builds
        none: both are unknown commands) of ``sum_bits`` bits
        (``88 .. 128``; 0 without sums), kept by a :class:`hw.batch_sum.BatchSum`.
    fmap_codes : int
        Codes of the feature-map memory (LOAD_FMAP, the window flag of RUN
        and ACCUMULATE; reported by PING), ``0 .. 65535``; 0, the default,
        builds none (LOAD_FMAP is an unknown command, the window flag a bad
        flag).  Vectors are then made on the core from the map
        (:class:`hw.window.WindowGenerator`, :mod:`sw.contract.window`) at
        one code a cycle, as fast as the buffer's are unpacked.
    packed_accumulators : int
        1: RUN takes :data:`~sw.contract.link.FLAG_PACKED` (reported by
        PING), its accumulators then leaving as one bit stream of
        :func:`~sw.contract.link.accumulator_bits` each (the product's exact
        bound, by shifts and subtracts and a priority encoder among the
        checks, one more cycle of them); 0, the default: the flag is a bad
        flag, accumulators leave in whole bytes.
    max_pool : int
        The largest pool of a window (1, 2 or 4, reported by PING; with a
        feature map and the activation stage): an activated RUN through a
        pooled window (:mod:`sw.contract.window`) replies each pooling
        window's max code per row, made by a :class:`hw.group_max.GroupMax`
        between the threshold stage and the packer.  1, the default: none.
    idle_timeout : int
        Cycles without a byte after which a partial request is dropped
        (the protocol asks for 0.01 .. 0.5 s; :class:`UARTCore` converts).
    baud : int
        The UART bit rate PING reports, ``0 .. 2**32 - 1``; only reported
        (:class:`UARTCore` passes its achieved rate); 0, the default: a
        byte-stream core, no UART.

    Ports
    -----
    rx : ``In(stream.Signature(8))``
        Request bytes.  ``ready`` is low while a request is being executed
        or answered.
    tx : ``Out(stream.Signature(8))``
        Reply bytes.  Back-pressure stalls the core (never loses a byte).

    Latency and throughput
    ----------------------
    Requests are taken at one byte per cycle.  The reply's SYNC leaves
    about six cycles after a request's last CRC byte, eight with packed
    accumulators (the receiver's event, then
    :attr:`hw.request_checker.RequestChecker.latency` cycles of checks; a
    BAD_LENGTH reply right after LEN_H); a RUN then sends its 4 header bytes (and, for accumulators, the
    width byte) and each tile's values as the tile drains, while the next
    one loads (module docstring: cycles per RUN, :meth:`run_cycles`); an
    activated RUN its packed codes as they are made.  One request at a time.
    """

    def __init__(self, max_rows: int = CORE_DEFAULTS["max_rows"],
                 max_cols: int = CORE_DEFAULTS["max_cols"], *,
                 max_bits: int = CORE_DEFAULTS["max_bits"], pe: int = CORE_DEFAULTS["pe"],
                 simd: int = CORE_DEFAULTS["simd"], max_payload: int = CORE_DEFAULTS["max_payload"],
                 max_act_bits: int = CORE_DEFAULTS["max_act_bits"], sum_slots: int = CORE_DEFAULTS["sum_slots"],
                 sum_bits: int = CORE_DEFAULTS["sum_bits"], fmap_codes: int = CORE_DEFAULTS["fmap_codes"],
                 packed_accumulators: int = CORE_DEFAULTS["packed_accumulators"],
                 max_pool: int = CORE_DEFAULTS["max_pool"], vectors: int = 1,
                 popcount_stages: int = 0, popcount_arch: str = "chain", fetch_stages: int = 0,
                 drains: int = 1, matrix_memory: str = "block", idle_timeout: int = DEFAULT_IDLE_TIMEOUT,
                 baud: int = 0):
        self._max_rows = check_int("max_rows", max_rows, 1, 0xFFFF)
        self._max_cols = check_int("max_cols", max_cols, 1, 0xFFFF)
        self._max_bits = check_int("max_bits", max_bits, 1, MAX_CODE_BITS)
        self._pe = check_int("pe", pe, 1, max_rows)
        self._simd = check_int("simd", simd, 1, max_cols)
        self._max_payload = check_int("max_payload", max_payload, L.LOAD_HEADER + 1, L.MAX_PAYLOAD)
        self._max_act_bits = check_int("max_act_bits", max_act_bits, 0, MAX_CODE_BITS,
                                       note="0: no activation stage")
        self._vectors = check_int("vectors", vectors, 1, 256)
        self._idle_timeout = check_int("idle_timeout", idle_timeout, 1)
        self._sum_slots = check_int("sum_slots", sum_slots, 0, L.MAX_SUM_SLOTS, note="0: no batch sums")
        self._sum_bits = check_int("sum_bits", sum_bits, 0, L.MAX_SUM_BITS)
        self._fmap_codes = check_int("fmap_codes", fmap_codes, 0, L.MAX_FMAP_CODES, note="0: no feature map")
        self._packed_accumulators = check_int("packed_accumulators", packed_accumulators, 0, 1,
                                              note="1: RUN takes FLAG_PACKED")
        self._max_pool = check_int("max_pool", max_pool, 1, W.MAX_POOL, note="1: no pooling")
        self._config = CoreConfig(max_rows, max_cols, max_bits, pe, simd, max_payload, max_act_bits,
                                  sum_slots, sum_bits, fmap_codes, packed_accumulators, max_pool)
        problems = self._config.problems()
        if problems:
            raise ValueError("core parameters break the protocol: " + "; ".join(problems))
        self._info = replace(self._config.info(), baud=check_int("baud", baud, 0, (1 << 32) - 1,
                                                                  note="0: not a UART core"))
        self._gemm = GemmEngine(pe=pe, vectors=vectors, simd=simd, max_bits=max_bits, max_rows=max_rows,
                                max_cols=max_cols, popcount_stages=popcount_stages, popcount_arch=popcount_arch,
                                fetch_stages=fetch_stages, drains=drains, matrix_memory=matrix_memory,
                                result_stages=min(fetch_stages, 1))
        # A register after the threshold memory's, the result banks' and the request buffer's
        # reads where the plane buffers' reads have one.
        self._threshold = (SerialThresholdUnit(max_act_bits, max_rows, read_stages=min(fetch_stages, 1))
                           if max_act_bits else None)
        self._request_slice = fetch_stages > 0
        self._checker = RequestChecker(self._config)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
        })

    max_rows = property(lambda self: self._max_rows)
    max_cols = property(lambda self: self._max_cols)
    max_bits = property(lambda self: self._max_bits)
    pe = property(lambda self: self._pe)
    simd = property(lambda self: self._simd)
    max_payload = property(lambda self: self._max_payload)
    max_act_bits = property(lambda self: self._max_act_bits)
    sum_slots = property(lambda self: self._sum_slots)
    sum_bits = property(lambda self: self._sum_bits)
    fmap_codes = property(lambda self: self._fmap_codes)
    packed_accumulators = property(lambda self: self._packed_accumulators)
    max_pool = property(lambda self: self._max_pool)
    idle_timeout = property(lambda self: self._idle_timeout)
    config = property(lambda self: self._config, doc="The limits (:class:`sw.contract.core.CoreConfig`).")
    info = property(lambda self: self._info, doc="What PING reports (:class:`sw.contract.core.CoreInfo`).")
    vectors = property(lambda self: self._vectors, doc="Vectors of a tile (each matrix word meets them all).")
    ops_per_cycle = property(lambda self: self._gemm.ops_per_cycle,
                             doc="AND+popcount bit pairs per compute cycle, ``pe * vectors * simd``.")
    result_stages = property(lambda self: self._gemm.result_stages,
                             doc="Registers after the result banks' reads, ``min(fetch_stages, 1)``: a cycle "
                                 "more per value a reply reads, and per tile a stream reads.")
    request_stages = property(lambda self: int(self._request_slice),
                              doc="Skid buffers after the request buffer's read, ``min(fetch_stages, 1)``: "
                                  "a cycle more per request.")
    activation_latency = property(lambda self: self._threshold.latency if self._threshold else 0,
                                  doc="The threshold unit's latency, from a value's last threshold read "
                                      "to its code (:attr:`hw.serial_threshold.SerialThresholdUnit.latency`).")

    @property
    def memories(self) -> dict:
        """Each memory as ``(count, depth, width)``: the ``request`` buffer, the
        engine's (:attr:`hw.gemm.GemmEngine.memories`) and, with the activation
        stage, the threshold unit's (:attr:`hw.serial_threshold.SerialThresholdUnit.memories`)."""
        memories = {"request": (1, self._max_payload, 8), **self._gemm.memories}
        if self._threshold is not None:
            memories.update(self._threshold.memories)
        if self._sum_slots:
            memories["sums"] = (1, self._sum_slots, self._sum_bits)
        if self._fmap_codes:
            memories["fmap"] = (1, self._fmap_codes, self._max_bits)
        return memories

    @property
    def memory_bits(self) -> dict:
        """Bits of each of :attr:`memories`."""
        return {name: count * depth * width for name, (count, depth, width) in self.memories.items()}

    def run_cycles(self, count: int, rows: int, cols: int, m_bits: int, v_bits: int) -> int:
        """Compute cycles of a RUN of ``count`` vectors on a ``rows x cols`` matrix:
        ``ceil(count / vectors)`` tiles of :meth:`hw.gemm.GemmEngine.tile_cycles`
        (states ``START`` .. ``COMPUTE``: the array's issue, its pipeline and the
        last group's drain).  Unpacking the vectors, the replies and the
        activation come on top, at link speed."""
        return ceil(count / self._vectors) * self._gemm.tile_cycles(rows, cols, m_bits, v_bits)

    # ------------------------------------------------------------------ gateware

    def elaborate(self, platform):
        # The sections below add their units and logic to one module in this order (the
        # netlist, and with it the boards' placement, follows it).  `s` holds the signals and
        # units that more than one section reads, under the names the comments use; a
        # section's own stay local.  The state machine's states are one-hot (_OneHotFSM).
        m, s = Module(), SimpleNamespace()
        self._link(m, s)
        self._request_reader(m, s)
        self._engine(m, s)
        self._reply_units(m, s)
        self._request_decoding(m, s)
        self._held_state(m, s)
        self._reply_message(m, s)
        self._tile_state(m, s)
        self._drain_state(m, s)
        self._engine_wiring(m, s)
        self._reply_values(m, s)
        self._drain(m, s)
        self._engine_clear(m, s)
        with _OneHotFSM(m, "IDLE") as s.fsm:
            self._fsm_decide(m, s)
            self._fsm_replies(m, s)
            self._fsm_load_matrix(m, s)
            if self._fmap_codes:
                self._fsm_load_fmap(m, s)
            if self._max_act_bits:
                self._fsm_load_thresholds(m, s)
            self._fsm_run(m, s)
            if self._sum_slots:
                self._fsm_sums(m, s)
        return m

    def _link(self, m, s):
        """The link: receiver, framer (through the reply body's skid buffer) and the request buffer."""
        m.submodules.receiver = s.receiver = FrameReceiver(self._max_payload, timeout=self._idle_timeout,
                                                           head_bytes=self._checker.head_bytes)
        m.submodules.framer = framer = FrameTransmitter()
        wiring.connect(m, wiring.flipped(self.rx), s.receiver.i)
        wiring.connect(m, framer.o, wiring.flipped(self.tx))
        # The reply body reaches the framer through a skid buffer (full rate): no path runs
        # from the message multiplexers into its CRC, nor from the framer's state into them.
        m.submodules.body_slice = body_slice = SkidBuffer(BODY_LAYOUT)
        wiring.connect(m, body_slice.o, framer.i)
        s.body = body_slice.i
        s.event = s.receiver.o.payload
        s.head = s.event.head

        # Written only while the receiver takes a payload, read only while a command runs
        # (one request at a time): no read meets a write, so no read-first emulation.
        m.submodules.request = s.request = Memory(shape=8, depth=self._max_payload, init=[], attrs=NO_RW_CHECK)
        req_w = s.request.write_port()
        m.d.comb += [
            req_w.addr.eq(s.receiver.wr.payload.addr),
            req_w.data.eq(s.receiver.wr.payload.data),
            req_w.en.eq(s.receiver.wr.valid),
            s.receiver.wr.ready.eq(1),
        ]

    def _request_reader(self, m, s):
        """The request buffer's byte reader into the code unpacker (or, in byte mode, the FSM)."""
        max_bits = self._max_bits
        # Request buffer -> unpacker: a byte reader with one prefetch register
        # (the read port's data holds while the unpacker is full), its bytes a
        # stream (`req_bytes`), through a skid buffer where the block RAM's
        # clock-to-out is slow (`fetch_stages`: the ECP5's 5.8 ns).  It reads at
        # most two bytes past a payload, and the slice holds two more (never
        # used; the address wraps, `rd_start` drops them).
        m.submodules.unpacker = s.unpacker = CodeUnpacker(max_bits)
        rd_addr = Signal(range(self._max_payload + 2))
        rd_valid = Signal()
        s.rd_active = Signal()  # comb: the FSM wants codes
        s.rd_start = Signal()  # comb: restart at rd_base, drop what is held
        s.rd_base = Signal(range(L.LOAD_HEADER + 1))
        s.unpack_bits = Signal(range(max_bits + 1))
        rd_advance = Signal()
        # Byte mode (LOAD_THRESHOLDS): the FSM takes the bytes itself
        # (`rd_take`), bypassing the unpacker, whose codes may be narrower
        # than a byte.
        s.rd_bytes = Signal()  # comb: byte mode
        s.rd_take = Signal()  # comb: byte mode, the FSM takes `req_bytes.payload`
        fetched = s.req_bytes = stream.Signature(8).create()
        if self._request_slice:
            m.submodules.request_slice = request_slice = SkidBuffer(8)
            wiring.connect(m, fetched, request_slice.i)
            m.d.comb += request_slice.clear.eq(s.rd_start)
            s.req_bytes = request_slice.o
        m.d.comb += [
            fetched.valid.eq(rd_valid),
            fetched.payload.eq(registered_read(m, s.request, rd_addr, rd_advance)),
            rd_advance.eq(~rd_valid | fetched.ready),
            s.req_bytes.ready.eq(Mux(s.rd_bytes, s.rd_take, s.unpacker.i.ready)),
            s.unpacker.i.valid.eq(s.req_bytes.valid & ~s.rd_bytes),
            s.unpacker.i.payload.eq(s.req_bytes.payload),
            s.unpacker.bits.eq(s.unpack_bits),
            s.unpacker.clear.eq(s.rd_start),
        ]
        with m.If(s.rd_start):
            m.d.sync += [rd_addr.eq(s.rd_base), rd_valid.eq(0)]
        with m.Elif(rd_advance):
            m.d.sync += rd_valid.eq(s.rd_active)
            with m.If(s.rd_active):
                m.d.sync += rd_addr.eq(rd_addr + 1)
        s.new_code = s.unpacker.o.payload

    def _engine(self, m, s):
        """The GEMM engine, the window generator and the code slice into the engine."""
        max_bits = self._max_bits
        fmap = self._fmap_codes
        # Matrix and vector codes go through the engine's plane writer; RUN's
        # values come back from its result memory.
        m.submodules.gemm = s.gemm = self._gemm
        # The feature map (LOAD_FMAP) and the window generator making a windowed RUN's or
        # ACCUMULATE's vectors from it (sw.contract.window), in place of the unpacker's.
        if fmap:
            m.submodules.window = s.window = WindowGenerator(depth=fmap, max_bits=max_bits, max_cols=self._max_cols)
        # The codes reach the engine through a skid buffer: its `ready`, `valid`
        # and payload are flip-flops, so no path runs from the plane writer's
        # handshake back through the unpacker and the byte reader into the
        # block RAM's read enable, or from the unpacker's reservoir into the
        # writer's staging register.  The FSM counts the codes going in.
        m.submodules.code_slice = s.code_slice = SkidBuffer(s.gemm.codes.payload.shape())
        wiring.connect(m, s.code_slice.o, s.gemm.codes)
        s.to_vectors = Signal()  # the engine takes vector codes (a RUN)
        s.v_window = Signal()  # a windowed RUN, ACCUMULATE or LOAD_MATRIX: its codes come from the window generator
        s.v_settled = Signal()  # VECTOR's second cycle on (a tile's codes are taken)
        if fmap:  # (every command that writes the engine sets v_window)
            m.d.comb += s.code_slice.i.payload.code.eq(Mux(s.v_window, s.window.o.payload, s.new_code))
        else:
            m.d.comb += s.code_slice.i.payload.code.eq(s.new_code)
        m.d.comb += s.code_slice.clear.eq(s.rd_start)
        s.code_taken = Signal()  # the unpacker's (the generator's) code enters the slice
        m.d.comb += s.code_taken.eq(s.code_slice.i.valid & s.code_slice.i.ready)
        s.codes_written = Signal()  # every code taken is in the plane buffers
        m.d.comb += s.codes_written.eq(s.code_slice.empty & ~s.gemm.writing)

    def _reply_units(self, m, s):
        """The reply's units: the packer, the activation stage, max-pool, the batch sums and their reader."""
        act_bits = self._max_act_bits
        packed_bits = self._config.packed_bits
        pool = self._max_pool > 1
        sums = self._sum_slots
        # A RUN's reply body after its header (and width byte): one CodePacker packs its
        # values, the result memory's (the drain: each accumulator's low `width` bytes, a
        # beat each, or, packed, its low accumulator_bits in one beat) or the activation
        # stage's codes (the drain -> threshold unit -> [GroupMax ->]), and its bytes are
        # the body while `streaming`.
        m.submodules.packer = s.packer = CodePacker(max(act_bits, 8, packed_bits))
        s.acc_values = stream.Signature(s.packer.in_layout).create()  # the drain's beats into the packer
        if act_bits:
            m.submodules.threshold = s.threshold = self._threshold
        if pool:  # a pooled window's codes: each pooling window's max per row, into the packer
            m.submodules.group_max = s.group_max = GroupMax(act_bits=act_bits, max_rows=self._max_rows,
                                                            max_group_log=2 * exact_log2(self._max_pool))

        # Batch sums (ACCUMULATE, READ_SUMS): each value of an ACCUMULATE is one
        # sample's partial sum, scaled and added into its sum by the unit.
        if sums:
            m.submodules.sums = s.batch_sum = BatchSum(slots=sums, partial_bits=len(s.gemm.result),
                                                       sum_bits=self._sum_bits)
            # READ_SUMS: the sums' bytes (width 0: the binary32 bits of their 24-bit truncation).
            m.submodules.sum_reader = s.sum_reader = SumReader(slots=sums, sum_bits=self._sum_bits,
                                                               read_latency=BatchSum.read_latency)

    def _request_decoding(self, m, s):
        """The request checker and the header's fields the commands read."""
        fmap = self._fmap_codes
        act_bits = self._max_act_bits
        sums = self._sum_slots
        packed = self._packed_accumulators
        # The checks and the products the commands take (RequestChecker), from the event
        # and what the core holds (`held`); the commands' actions read the header too.
        m.submodules.checker = s.checker = self._checker
        s.held = Signal(s.checker.held.shape())
        m.d.comb += [s.checker.request.eq(s.event), s.checker.held.eq(s.held)]
        s.command, s.verdict, s.plan = s.checker.command, s.checker.verdict, s.checker.plan
        load = header_view(s.head, L.LOAD_FIELDS, flags=FLAGS_LAYOUT)
        s.l_rows, s.l_cols, s.l_bits, s.l_flags = load.rows, load.cols, load.bits, load.flags
        s.l_offset, s.l_count = load.offset, load.count
        run = header_view(s.head, L.RUN_FIELDS, flags=FLAGS_LAYOUT)  # (ACCUMULATE's count, bits, flags too)
        s.r_count, s.r_bits, s.r_flags = run.count, run.bits, run.flags
        s.r_activate = s.r_flags.activate if act_bits else 0
        s.r_first = s.r_flags.first if sums else 0
        s.r_packed = s.r_flags.packed if packed else 0
        s.accumulate = header_view(s.head, L.ACCUMULATE_FIELDS)
        s.read_sums = header_view(s.head, L.READ_SUMS_FIELDS)
        thresholds_head = header_view(s.head, L.THRESHOLD_FIELDS)
        s.h_offset, s.h_count, s.h_bits = thresholds_head.offset, thresholds_head.count, thresholds_head.bits
        s.cmd = s.event.cmd
        s.r_window = s.r_flags.window if fmap else 0
        s.l_window = s.l_flags.window if fmap else 0  # LOAD_MATRIX: the matrix's rows from a window
        if fmap:
            s.load_fmap = header_view(s.head, L.LOAD_FMAP_FIELDS)
        # A LOAD_MATRIX (LOAD_FMAP) at offset 0 starts a new matrix (map): registered while
        # the request is checked, so DECIDE's enables (the held shape's flip-flops) test a
        # flip-flop, not a compare of the header.
        s.l_new = Signal()
        m.d.sync += s.l_new.eq(s.l_offset == 0)
        if fmap:
            s.f_new = Signal()
            m.d.sync += s.f_new.eq(s.load_fmap.offset == 0)

    def _held_state(self, m, s):
        """What the core holds (the checker's ``held``): the matrix, the feature map, the thresholds."""
        fmap = self._fmap_codes
        act_bits = self._max_act_bits
        # What the core holds, as the checker reads it.
        matrix = s.held.matrix  # a matrix is being loaded or loaded (has): its shape, its codes loaded
        s.has_shape, s.m_rows, s.m_cols = matrix.has, matrix.rows, matrix.cols
        s.m_bits, s.m_flags = matrix.bits, matrix.flags
        s.m_total, s.m_loaded = matrix.total, matrix.loaded
        if fmap:
            # The feature map: its shape and bits (of LOAD_FMAP at offset 0), codes loaded.
            s.f_has, s.f_shape, s.f_bits = s.held.fmap.has, s.held.fmap.dims, s.held.fmap.bits
            s.f_total, s.f_loaded = s.held.fmap.total, s.held.fmap.loaded
            s.f_addr = Signal(range(fmap))  # LOAD_FMAP: where the next code goes
            s.w_held = Signal.like(s.window.window)  # the RUN's or ACCUMULATE's window, held while it runs
            m.d.comb += [
                s.window.shape.eq(s.f_shape),
                s.window.window.eq(s.w_held),
                s.window.cols.eq(s.m_cols),
            ]
        s.max_count = s.checker.max_count
        if act_bits:
            # Of the threshold set: its bits, the rows with thresholds.
            s.t_bits, s.t_loaded = s.held.thresholds.bits, s.held.thresholds.loaded
            n_a = Signal(act_bits)  # thresholds per row, 2**t_bits - 1
            m.d.comb += n_a.eq((1 << s.t_bits) - 1)
            s.t_idx_last = Signal(act_bits)  # n_a - 1, registered (t_bits is set two cycles before THR)
            m.d.sync += s.t_idx_last.eq(n_a - 1)

    def _reply_message(self, m, s):
        """A short reply's message (status, tag, length, payload), a registered byte at a time."""
        fmap = self._fmap_codes
        act_bits = self._max_act_bits
        # Reply message: STATUS TAG LEN_L LEN_H + short payload.
        s.r_status = Signal(8)
        s.r_len = Signal(16)
        s.r_detail = Signal(8)
        s.r_kind = Signal(range(4))
        s.msg_index = Signal(range(4 + L.PING_REPLY))
        ping = self._info.pack()
        loaded = Signal(32)  # LOAD_MATRIX's u32, LOAD_THRESHOLDS's u16
        m.d.comb += loaded.eq(s.m_loaded)
        if act_bits:
            with m.If(s.cmd == L.Cmd.LOAD_THRESHOLDS):
                m.d.comb += loaded.eq(s.t_loaded)
        if fmap:
            with m.If(s.cmd == L.Cmd.LOAD_FMAP):
                m.d.comb += loaded.eq(s.f_loaded)
        # The payload's bytes, registered: r_kind, the command and what it loaded are set by
        # reply() and stay, and a payload byte is wanted four cycles later at the earliest
        # (after the header's), so the selection is off the path into msg_byte.
        payload_bytes = []
        for index in range(L.PING_REPLY):
            error_byte = {0: s.cmd, 1: s.r_detail}.get(index, 0)
            loaded_byte = loaded[8 * index:8 * index + 8] if index < 4 else 0
            payload_byte = Signal(8, name=f"msg_payload{index}")
            m.d.sync += payload_byte.eq(Mux(s.r_kind == _MSG_PING, ping[index],
                                            Mux(s.r_kind == _MSG_LOADED, loaded_byte,
                                                Mux(s.r_kind == _MSG_ERROR, error_byte, 0))))
            payload_bytes.append(payload_byte)
        msg = Array([s.r_status, s.event.tag, s.r_len[:8], s.r_len[8:], *payload_bytes])
        s.msg_last = Signal(range(4 + L.PING_REPLY))  # the message's last byte
        # The message's byte at msg_index, from a register: reply() loads the status, and
        # each byte taken loads the next (msg_next) from msg_ahead = msg_index + 1, kept
        # beside it, so neither a multiplexer over the message nor an adder lies between
        # msg_index and the reply body.
        s.msg_byte = Signal(8)
        s.msg_ahead = Signal(range(4 + L.PING_REPLY + 1))
        s.msg_next = Signal()  # comb: the body takes msg_byte
        with m.If(s.msg_next):
            m.d.sync += [s.msg_index.eq(s.msg_ahead), s.msg_ahead.eq(s.msg_ahead + 1), s.msg_byte.eq(msg[s.msg_ahead])]

    def _tile_state(self, m, s):
        """The load and RUN counters: codes left, a tile's vectors and columns, the values' row and slot."""
        max_bits = self._max_bits
        fmap = self._fmap_codes
        # LOAD_MATRIX, LOAD_FMAP: codes still to take
        s.left = Signal(range(max(self._max_rows * self._max_cols, fmap) + 1))

        # RUN state.
        s.v_signed = Signal()
        s.v_bits = Signal(range(max_bits + 1))
        s.v_left = Signal(range(s.max_count + 1))  # vectors still to do
        s.nv = Signal(range(self._vectors + 1))  # vectors of this tile
        s.c_col = Signal(range(self._max_cols))  # vector unpack position
        s.c_vec = Signal(range(self._vectors))
        # Registered `x - 1` of the bounds the loops compare with (no subtractor on a compare path).
        s.m_rows_last = Signal.like(s.m_rows)
        s.m_cols_last = Signal.like(s.m_cols)
        s.nv_last = Signal(range(self._vectors))
        m.d.sync += [s.m_rows_last.eq(s.m_rows - 1), s.m_cols_last.eq(s.m_cols - 1), s.nv_last.eq(s.nv - 1)]
        # c_col == m_cols - 1 and c_vec == nv - 1, as registers set with the counters (from
        # m_cols - 2 and nv - 2, registered: see last_row below).
        s.c_col_last = Signal()
        s.c_vec_last = Signal()
        s.m_cols_m2 = Signal.like(s.m_cols)
        m.d.sync += s.m_cols_m2.eq(s.m_cols - 2)
        s.e_slot = Signal(range(self._vectors))  # emit: vector of the tile
        s.e_row = Signal(range(self._max_rows))  # emit: row
        # e_row == m_rows - 1, e_slot == nv - 1, v_left == nv (the tile is the RUN's last) and
        # v_left - nv, as registers: set with the counters (first_value, next_row, next_slot) from
        # bounds registered a cycle before (m_rows - 2 and nv - 2 wrap where no counter meets them).
        s.last_row = Signal()
        s.last_slot = Signal()
        s.last_tile = Signal()
        s.v_rest = Signal.like(s.v_left)
        s.m_rows_m2 = Signal.like(s.m_rows)
        s.nv_m2 = Signal.like(s.nv_last)
        m.d.sync += [s.m_rows_m2.eq(s.m_rows - 2), s.nv_m2.eq(s.nv - 2),
                     s.last_tile.eq(s.v_left == s.nv), s.v_rest.eq(s.v_left - s.nv)]

        # The drain: a computed tile's values stream out of the result memory (stream_tile)
        # while the main state machine loads the next tile's vectors; the next tile
        # computes once it is done.  It keeps its tile's bounds: the next TILE changes nv.
        s.draining = Signal()
        s.d_nv_m2 = Signal.like(s.nv_m2)  # the draining tile's nv - 2
        s.d_last_tile = Signal()  # the draining tile is the RUN's last

    def _drain_state(self, m, s):
        """The drain's and the reply's state: the value's bytes, the reply's width, the sums' operands."""
        act_bits = self._max_act_bits
        packed_bits = self._config.packed_bits
        sums = self._sum_slots
        widest = max(L.ACC_BYTES, L.sum_width(self._sum_bits))  # an accumulator's or a sum's bytes
        s.e_byte = Signal(range(widest))
        # Bytes of each accumulator (sum) of this RUN's (READ_SUMS') reply; of a packed RUN, bits.
        s.e_width = Signal(range(max(widest, packed_bits) + 1))
        s.e_last_byte = Signal(range(widest))  # e_width - 1
        m.d.sync += s.e_last_byte.eq(s.e_width - 1)
        s.v_act = Signal()  # this RUN is activated
        # The drain (stream_tile): the result reads in flight, one bit a stage
        # (the top one: `gemm.result` shows a value not yet taken), and the tile has values
        # not yet read.
        s.t_flight = Signal(s.gemm.result_latency)
        s.t_more = Signal()
        s.v_sum = Signal()  # this RUN is an ACCUMULATE: its values go into the batch sums
        s.v_read = Signal()  # a READ_SUMS: sums follow the width byte
        s.pack_bits = Signal.like(s.packer.bits)  # the packer's code width for this RUN
        if packed_bits:
            s.v_packed = Signal()  # this RUN's accumulators leave packed, a beat each
        s.a_last = Signal()  # the drain: the value offered is the RUN's last (read with it)
        if sums:
            s.s_addr = Signal(range(sums + 1))  # the sum of an ACCUMULATE's next value
            s.s_mantissa = Signal(SCALE_MANTISSA_BITS)  # ACCUMULATE: the sample's scale
            s.s_shift = Signal(L.SHIFT_BITS)
            s.s_first = Signal()
            s.s_float_read = Signal()  # this READ_SUMS sends binary32 sums (width 0)
            m.d.comb += [
                s.batch_sum.mantissa.eq(s.s_mantissa),
                s.batch_sum.shift.eq(s.s_shift),
                s.batch_sum.first.eq(s.s_first),
                s.batch_sum.read_addr.eq(s.sum_reader.read_addr),
                s.sum_reader.read_data.eq(s.batch_sum.read_data),
                s.sum_reader.slot.eq(s.read_sums.slot),
                s.sum_reader.count.eq(s.read_sums.count),
                s.sum_reader.sum_bytes.eq(s.plan.sum_bytes),
                s.sum_reader.binary32.eq(s.plan.sum_float),
            ]
        s.streaming = Signal()  # the packer drives the reply body (a RUN's header, width byte sent)
        if act_bits:
            # LOAD_THRESHOLDS write position.
            s.t_row = Signal(range(self._max_rows + 1))
            s.t_left = Signal(range(self._max_rows + 1))  # rows still to write
            s.t_at_direction = Signal()  # the next byte is a record's direction byte
            s.t_direction = Signal()  # the direction of the row being written (1: -1, acc <= T)
            s.t_idx = Signal(act_bits)  # threshold being assembled
            s.t_byte = Signal(2)  # its bytes taken
            s.t_word = Signal(24)  # its first three bytes (LE: the latest on top)
            s.a_row = Signal.like(s.e_row)  # the drain: the row of the value offered to the threshold unit

    def _engine_wiring(self, m, s):
        """The engine's operands' shapes and the result memory's address; an ACCUMULATE's values into the sums."""
        sums = self._sum_slots
        m.d.comb += [
            s.gemm.to_vectors.eq(s.to_vectors),
            s.gemm.cols.eq(s.m_cols),
            s.gemm.rows.eq(s.m_rows),
            s.gemm.m_bits.eq(s.m_bits),
            s.gemm.m_signed.eq(s.m_flags.signed),
            s.gemm.v_bits.eq(s.v_bits),
            s.gemm.v_signed.eq(s.v_signed),
            s.gemm.result_addr.eq(s.gemm.result_address(s.e_slot, s.e_row)),
        ]
        if sums:  # an ACCUMULATE's value into its sum
            m.d.comb += [s.batch_sum.i.payload.slot.eq(s.s_addr), s.batch_sum.i.payload.partial.eq(s.gemm.result)]
        s.result = s.gemm.result

    def _reply_values(self, m, s):
        """The packer's input (the accumulators' bytes or the activation stage's codes) and its bytes out."""
        act_bits = self._max_act_bits
        packed_bits = self._config.packed_bits
        pool = self._max_pool > 1
        # The packer's input: the activation stage's codes in an activated RUN, else the
        # accumulators (through a skid buffer where the result memory has its register: no
        # path from the banks' select into the packer's shift).
        # The drain's beat into the packer: the offered value's byte e_byte, or, packed, the
        # value; the value's last beat ends it (and the RUN's last value's, the reply).
        s.beat_last = Signal()
        value_byte = s.result.as_unsigned().word_select(s.e_byte[:exact_log2(L.ACC_BYTES)], 8)
        m.d.comb += [
            s.beat_last.eq(s.e_byte == s.e_last_byte),
            s.acc_values.payload.code.eq(value_byte),
            s.acc_values.payload.last.eq(s.a_last & s.beat_last),
            s.packer.bits.eq(s.pack_bits),
        ]
        if packed_bits:
            with m.If(s.v_packed):
                m.d.comb += [s.beat_last.eq(1), s.acc_values.payload.code.eq(s.result)]
        sources = [(~s.v_act, s.acc_values)]
        if act_bits:
            m.d.comb += [
                s.threshold.bits.eq(s.t_bits),
                s.threshold.i.payload.channel.eq(s.a_row),
                s.threshold.i.payload.acc.eq(s.result),
                s.threshold.i.payload.last.eq(s.a_last),
            ]
            codes_out = s.threshold.o
            if pool:  # pool p: groups of p**2 = 2**(2 * log2 p) vectors (the bits of p at 2 and 4)
                wiring.connect(m, s.threshold.o, s.group_max.i)
                m.d.comb += [s.group_max.rows.eq(s.m_rows),
                             s.group_max.group_log.eq(Mux(s.v_window, s.w_held.pool[:3] & 0b110, 0))]
                codes_out = s.group_max.o
            sources.append((s.v_act, codes_out))
        # Either source reaches the packer through a skid buffer: no path runs from the
        # result banks' select into the packer's shift, nor from the reply's `ready` back
        # through the packer into the threshold unit or the drain.
        m.submodules.value_slice = value_slice = SkidBuffer(s.packer.in_layout)
        wiring.connect(m, value_slice.o, s.packer.i)
        for selected, source in sources:
            with m.If(selected):
                m.d.comb += [value_slice.i.valid.eq(source.valid),
                             value_slice.i.payload.code.eq(source.payload.code),
                             value_slice.i.payload.last.eq(source.payload.last),
                             source.ready.eq(value_slice.i.ready)]
        # While a RUN streams, the packer's bytes are the reply body; the one with `last` ends it.
        with m.If(s.streaming):
            m.d.comb += [
                s.body.valid.eq(s.packer.o.valid),
                s.body.payload.eq(s.packer.o.payload),
                s.packer.o.ready.eq(s.body.ready),
            ]
            with m.If(s.packer.o.valid & s.packer.o.ready & s.packer.o.payload.last):
                m.d.sync += s.streaming.eq(0)

    def _drain(self, m, s):
        """The drain, beside the state machine: a computed tile's values to the threshold unit, the
        sums or the packer."""
        act_bits = self._max_act_bits
        sums = self._sum_slots
        # The drain, beside the state machine: into the threshold unit (an activated RUN; the
        # codes reach the packer and the reply on their own), the batch sums (ACCUMULATE, one
        # a cycle) or the packer (a byte a beat, or a packed value).
        last_value = s.last_row & s.last_slot & s.d_last_tile
        with m.If(s.draining):
            with m.If(s.v_act):
                if act_bits:
                    self._stream_tile(m, s, s.threshold.i, [(s.a_row, s.e_row), (s.a_last, last_value)])
            with m.Elif(s.v_sum):
                if sums:
                    with m.If(s.t_flight[-1] & s.batch_sum.i.ready):
                        m.d.sync += s.s_addr.eq(s.s_addr + 1)
                    self._stream_tile(m, s, s.batch_sum.i)
            with m.Else():
                with m.If(s.acc_values.valid & s.acc_values.ready):  # a beat: the value's next byte, or the next value
                    m.d.sync += s.e_byte.eq(Mux(s.beat_last, 0, s.e_byte + 1))
                self._stream_tile(m, s, s.acc_values, [(s.a_last, last_value)], s.beat_last)

    def _engine_clear(self, m, s):
        """The engine's clear, from a flip-flop set with the step into TILE (and LOAD_START of a new matrix)."""
        # The engine's clear (its plane writer's counters start over) comes from a flip-flop,
        # set with the step into TILE and, for a new matrix (offset 0), into LOAD_START: no
        # state decode lies between the FSM and the writer.
        s.engine_clear = Signal()
        m.d.sync += s.engine_clear.eq(0)
        m.d.comb += s.gemm.clear.eq(s.engine_clear)

    def _fsm_decide(self, m, s):
        """IDLE, the checker's pipeline, DECIDE: the verdict's error or the command's first actions."""
        fmap = self._fmap_codes
        act_bits = self._max_act_bits
        sums = self._sum_slots
        packed = self._packed_accumulators
        with s.fsm.state("IDLE"):
            # (With sums: not while they are being zeroed, after a reset or RESET.)
            with m.If(s.receiver.o.valid & (~s.batch_sum.busy if sums else 1)):
                s.fsm.goto("CHECK1")
        checks = [f"CHECK{n}" for n in range(1, s.checker.latency)]  # the checker's pipeline
        for state, after in zip(checks, checks[1:] + ["DECIDE"]):
            with s.fsm.state(state):
                s.fsm.goto(after)
        with s.fsm.state("DECIDE"):  # the verdict is registered: only its actions here
            with m.If(~s.verdict.ok):
                self._error(m, s, s.verdict.status, s.verdict.detail)
            with m.Elif(s.command.ping):
                self._reply(m, s, L.Status.OK, _MSG_PING, L.PING_REPLY)
                s.fsm.goto("REPLY")
            with m.Elif(s.command.reset):
                m.d.sync += [s.has_shape.eq(0), s.m_loaded.eq(0)]
                if act_bits:
                    m.d.sync += s.t_loaded.eq(0)
                if sums:  # zeroed in the background; the next request waits for it
                    m.d.comb += s.batch_sum.clear.eq(1)
                if fmap:
                    m.d.sync += [s.f_has.eq(0), s.f_loaded.eq(0)]
                self._reply(m, s, L.Status.OK, _MSG_EMPTY, 0)
                s.fsm.goto("REPLY")
            with m.Elif(s.command.load_matrix):
                with m.If(s.l_new):
                    m.d.sync += [
                        s.has_shape.eq(1), s.m_rows.eq(s.l_rows), s.m_cols.eq(s.l_cols),
                        s.m_bits.eq(s.l_bits), s.m_flags.eq(s.l_flags), s.m_total.eq(s.plan.total),
                    ]
                    if act_bits:  # thresholds belong to the rows of one matrix
                        m.d.sync += s.t_loaded.eq(0)
                m.d.sync += [s.left.eq(s.l_count), s.rd_base.eq(L.LOAD_HEADER), s.unpack_bits.eq(s.l_bits),
                             s.engine_clear.eq(s.l_new), s.to_vectors.eq(0)]
                if fmap:  # windowed: the codes come from the window generator
                    m.d.sync += [s.v_window.eq(s.l_window), s.w_held.eq(s.plan.window)]
                s.fsm.goto("LOAD_START")
            with m.Elif(s.command.run):
                self._reply(m, s, L.Status.OK, _MSG_EMPTY, 0)
                m.d.sync += [
                    s.r_len.eq(s.plan.reply_size), s.v_act.eq(s.r_activate), s.v_sum.eq(0), s.v_read.eq(0),
                    s.v_left.eq(s.r_count), s.v_bits.eq(s.r_bits), s.v_signed.eq(s.r_flags.signed),
                    s.rd_base.eq(L.RUN_HEADER), s.unpack_bits.eq(s.r_bits), s.to_vectors.eq(1),
                ]
                # The width byte: bytes of each accumulator or, packed, bits; the packer's
                # code width: those bits, or a byte, or the activation code's.
                beat_bits = Mux(s.r_packed, s.plan.packed_bits, 8) if packed else 8
                width = Mux(s.r_packed, s.plan.packed_bits, s.plan.width) if packed else s.plan.width
                m.d.sync += [s.e_width.eq(width),
                             s.pack_bits.eq(Mux(s.r_activate, s.t_bits, beat_bits) if act_bits else beat_bits)]
                if packed:
                    m.d.sync += s.v_packed.eq(s.r_packed)
                if fmap:
                    m.d.sync += [s.v_window.eq(s.r_window), s.w_held.eq(s.plan.window)]
                s.fsm.goto("RUN_START")
            if sums:
                with m.Elif(s.command.accumulate):
                    self._reply(m, s, L.Status.OK, _MSG_EMPTY, 0)  # sent once the sums are written (SUM_WAIT)
                    m.d.sync += [
                        s.v_sum.eq(1), s.v_read.eq(0), s.v_act.eq(0),
                        s.v_left.eq(s.r_count), s.v_bits.eq(s.r_bits), s.v_signed.eq(s.r_flags.signed),
                        s.rd_base.eq(L.ACCUMULATE_HEADER), s.unpack_bits.eq(s.r_bits), s.to_vectors.eq(1),
                        s.s_addr.eq(s.accumulate.slot), s.s_mantissa.eq(s.accumulate.mantissa),
                        s.s_shift.eq(s.accumulate.shift), s.s_first.eq(s.r_first),
                    ]
                    if fmap:
                        m.d.sync += [s.v_window.eq(s.r_window), s.w_held.eq(s.plan.window)]
                    s.fsm.goto("RUN_START")
                with m.Elif(s.command.read_sums):
                    self._reply(m, s, L.Status.OK, _MSG_EMPTY, 0)
                    # The reader starts now: its first sums are read while the header leaves.
                    m.d.comb += s.sum_reader.start.eq(1)
                    m.d.sync += [
                        s.r_len.eq(L.SUMS_REPLY_HEADER + s.plan.sums_bytes), s.e_width.eq(s.plan.sum_bytes),
                        s.s_float_read.eq(s.plan.sum_float), s.v_read.eq(1), s.v_sum.eq(0), s.v_act.eq(0),
                    ]
                    s.fsm.goto("RUN_HEADER")
            if fmap:
                with m.Elif(s.command.load_fmap):
                    with m.If(s.f_new):  # a new map
                        m.d.sync += [
                            s.f_has.eq(1), s.f_shape.eq(s.load_fmap.as_value()[:len(s.f_shape.as_value())]),
                            s.f_bits.eq(s.load_fmap.bits), s.f_total.eq(s.plan.fmap_total),
                        ]
                    m.d.sync += [s.left.eq(s.load_fmap.count), s.f_addr.eq(s.load_fmap.offset),
                                 s.rd_base.eq(L.LOAD_FMAP_HEADER), s.unpack_bits.eq(s.load_fmap.bits)]
                    s.fsm.goto("FMAP_START")
            if act_bits:
                with m.Elif(s.command.load_thresholds):
                    m.d.sync += [
                        s.t_bits.eq(s.h_bits), s.t_row.eq(s.h_offset), s.t_left.eq(s.h_count), s.t_at_direction.eq(1),
                        s.rd_base.eq(L.THRESHOLD_HEADER),
                    ]
                    s.fsm.goto("THR_START")

    def _fsm_replies(self, m, s):
        """REPLY (a short reply's bytes) and DONE (the next request)."""
        with s.fsm.state("REPLY"):  # the whole reply: header + short payload
            m.d.comb += [
                s.body.valid.eq(1),
                s.body.payload.data.eq(s.msg_byte),
                s.body.payload.last.eq(s.msg_index == s.msg_last),
                s.msg_next.eq(s.body.ready),
            ]
            with m.If(s.body.ready):
                with m.If(s.msg_index == s.msg_last):
                    s.fsm.goto("DONE")
        with s.fsm.state("DONE"):  # (a RUN's packer may still be sending)
            with m.If(~s.streaming):
                m.d.comb += s.receiver.o.ready.eq(1)
                s.fsm.goto("IDLE")

    def _loaded_state(self, m, s, state, loaded, value, count_bytes):
        """A load's last state, ``state``: ``loaded`` (the count held, which the next load
        continues from) takes ``value``, and the LOADED reply (that count, ``count_bytes`` bytes) leaves."""
        with s.fsm.state(state):
            m.d.sync += loaded.eq(value)
            self._reply(m, s, L.Status.OK, _MSG_LOADED, count_bytes)
            s.fsm.goto("REPLY")

    def _fsm_load_matrix(self, m, s):
        """LOAD_MATRIX: the codes (or, windowed, the generator's) into the engine's plane writer."""
        fmap = self._fmap_codes
        with s.fsm.state("LOAD_START"):
            m.d.comb += s.rd_start.eq(1)
            if fmap:  # (the matrix's shape, read by the generator, is registered by now)
                m.d.comb += s.window.start.eq(s.v_window)
            s.fsm.goto("LOAD")
        with s.fsm.state("LOAD"):  # codes (or, windowed, the generator's) into the engine's plane writer
            m.d.comb += s.code_slice.i.payload.flush.eq(s.left == 1)
            with m.If(~s.v_window):
                m.d.comb += [
                    s.rd_active.eq(1),
                    s.code_slice.i.valid.eq(s.unpacker.o.valid),
                    s.unpacker.o.ready.eq(s.code_slice.i.ready),
                ]
            if fmap:
                with m.Else():
                    m.d.comb += [
                        s.code_slice.i.valid.eq(s.window.o.valid),
                        s.window.o.ready.eq(s.code_slice.i.ready),
                    ]
            with m.If(s.code_taken):
                m.d.sync += s.left.eq(s.left - 1)
                with m.If(s.left == 1):
                    s.fsm.goto("LOAD_WAIT")
        with s.fsm.state("LOAD_WAIT"):  # the last planes are written
            with m.If(s.codes_written):
                s.fsm.goto("LOAD_DONE")
        self._loaded_state(m, s, "LOAD_DONE", s.m_loaded, s.l_offset + s.l_count, 4)

    def _fsm_load_fmap(self, m, s):
        """LOAD_FMAP (with a feature map): codes into it."""
        with s.fsm.state("FMAP_START"):
            m.d.comb += s.rd_start.eq(1)
            s.fsm.goto("FMAP")
        with s.fsm.state("FMAP"):  # codes into the feature map, one a cycle
            m.d.comb += [
                s.rd_active.eq(1),
                s.unpacker.o.ready.eq(1),
                s.window.write.valid.eq(s.unpacker.o.valid),
                s.window.write.payload.addr.eq(s.f_addr),
                s.window.write.payload.code.eq(s.new_code),
            ]
            with m.If(s.unpacker.o.valid):
                m.d.sync += [s.f_addr.eq(s.f_addr + 1), s.left.eq(s.left - 1)]
                with m.If(s.left == 1):
                    s.fsm.goto("FMAP_DONE")
        self._loaded_state(m, s, "FMAP_DONE", s.f_loaded, s.load_fmap.offset + s.load_fmap.count, 4)

    def _fsm_load_thresholds(self, m, s):
        """LOAD_THRESHOLDS (with an activation stage): the records' bytes into the threshold unit."""
        with s.fsm.state("THR_START"):
            m.d.comb += s.rd_start.eq(1)
            s.fsm.goto("THR")
        with s.fsm.state("THR"):  # records byte by byte: direction, then int32 LE thresholds
            byte = s.req_bytes.payload
            m.d.comb += [s.rd_bytes.eq(1), s.rd_active.eq(1), s.rd_take.eq(s.req_bytes.valid)]
            m.d.comb += [  # (the unit's load is always ready)
                s.threshold.load.payload.channel.eq(s.t_row),
                s.threshold.load.payload.index.eq(s.t_idx),
                s.threshold.load.payload.direction.eq(s.t_direction),
                s.threshold.load.payload.threshold.eq(Cat(s.t_word, byte)),
            ]
            with m.If(s.req_bytes.valid & s.t_at_direction):
                m.d.sync += [s.t_direction.eq(byte[0]), s.t_at_direction.eq(0), s.t_idx.eq(0), s.t_byte.eq(0)]
            with m.Elif(s.req_bytes.valid):
                m.d.sync += [s.t_word.eq(Cat(s.t_word[8:], byte)), s.t_byte.eq(s.t_byte + 1)]
                with m.If(s.t_byte == 3):
                    m.d.comb += s.threshold.load.valid.eq(1)
                    m.d.sync += s.t_idx.eq(s.t_idx + 1)
                    with m.If(s.t_idx == s.t_idx_last):  # the row's last threshold
                        m.d.sync += [s.t_at_direction.eq(1), s.t_row.eq(s.t_row + 1), s.t_left.eq(s.t_left - 1)]
                        with m.If(s.t_left == 1):
                            s.fsm.goto("THR_DONE")
        self._loaded_state(m, s, "THR_DONE", s.t_loaded, s.h_offset + s.h_count, 2)

    def _fsm_run(self, m, s):
        """RUN and ACCUMULATE: the header and width byte, then the tiles: vectors, compute, drain."""
        fmap = self._fmap_codes
        pool = self._max_pool > 1
        sums = self._sum_slots
        with s.fsm.state("RUN_START"):
            m.d.comb += s.rd_start.eq(1)
            if pool:
                m.d.comb += s.group_max.start.eq(1)
            if fmap:
                m.d.comb += s.window.start.eq(s.v_window)
            with m.If(s.v_sum):  # an ACCUMULATE replies once its sums are written
                self._next_tile(m, s)
            with m.Else():
                s.fsm.goto("RUN_HEADER")
        with s.fsm.state("RUN_HEADER"):  # STATUS TAG LEN_L LEN_H, never the last bytes
            m.d.comb += [s.body.valid.eq(1), s.body.payload.data.eq(s.msg_byte), s.msg_next.eq(s.body.ready)]
            with m.If(s.body.ready):
                with m.If(s.msg_index == 3):
                    m.d.sync += s.streaming.eq(s.v_act)
                    with m.If(s.v_act):
                        self._next_tile(m, s)
                    with m.Else():
                        s.fsm.goto("RUN_WIDTH")
        with s.fsm.state("RUN_WIDTH"):  # accumulators (sums): the reply's width byte, never the last
            m.d.comb += [s.body.valid.eq(1), s.body.payload.data.eq(s.e_width)]
            if sums:
                with m.If(s.v_read & s.s_float_read):  # READ_SUMS width 0: the byte is 0, the sums 4 bytes
                    m.d.comb += s.body.payload.data.eq(L.SUM_FLOAT32)
            with m.If(s.body.ready):
                m.d.sync += s.streaming.eq(~s.v_read)
                if sums:
                    with m.If(s.v_read):
                        s.fsm.goto("SUM_SEND")
                    with m.Else():
                        self._next_tile(m, s)
                else:
                    self._next_tile(m, s)
        with s.fsm.state("TILE"):  # the next tile: up to `vectors` vectors (the engine cleared)
            m.d.sync += [s.v_settled.eq(0), s.nv.eq(Mux(s.v_left >= self._vectors, self._vectors, s.v_left)),
                         s.c_col.eq(0), s.c_vec.eq(0), s.c_col_last.eq(s.m_cols_last == 0)]
            s.fsm.goto("VECTOR")
        with s.fsm.state("VECTOR"):  # unpack (or, windowed, make) the tile's vectors into the engine
            # The tile's first code may wait here already (the generator's next one, or the
            # unpacker's, left of the byte the last tile ended in); codes are taken from the
            # state's second cycle on, once the engine's writer and `nv_last` have
            # registered the tile's `nv` (a one-column tile's first code ends its vector).
            m.d.sync += s.v_settled.eq(1)
            with m.If(~s.v_settled):  # nv is registered (nv_last and nv_m2 are not yet)
                m.d.sync += s.c_vec_last.eq(s.nv == 1)
            with m.If(~s.v_window):
                m.d.comb += [
                    s.rd_active.eq(1),
                    s.code_slice.i.valid.eq(s.unpacker.o.valid & s.v_settled),
                    s.unpacker.o.ready.eq(s.code_slice.i.ready & s.v_settled),
                ]
            if fmap:
                with m.Elif(s.v_settled):
                    m.d.comb += [
                        s.code_slice.i.valid.eq(s.window.o.valid),
                        s.window.o.ready.eq(s.code_slice.i.ready),
                    ]
            with m.If(s.code_taken):
                m.d.sync += [s.c_col.eq(s.c_col + 1), s.c_col_last.eq(s.c_col == s.m_cols_m2)]
                with m.If(s.c_col_last):
                    m.d.sync += [s.c_col.eq(0), s.c_col_last.eq(s.m_cols_last == 0),
                                 s.c_vec.eq(s.c_vec + 1), s.c_vec_last.eq(s.c_vec == s.nv_m2)]
                    with m.If(s.c_vec_last):
                        s.fsm.goto("START")
        with s.fsm.state("START"):  # once the last planes are written and the last tile drained
            with m.If(s.codes_written & ~s.draining):
                m.d.comb += s.gemm.start.eq(1)
                s.fsm.goto("COMPUTE")
        with s.fsm.state("COMPUTE"):  # then the drain from the next cycle on (its first read)
            with m.If(s.gemm.done):
                m.d.sync += [*self._first_value(s), s.t_flight.eq(0), s.t_more.eq(1), s.e_byte.eq(0), s.draining.eq(1),
                             s.d_nv_m2.eq(s.nv_m2), s.d_last_tile.eq(s.last_tile), s.v_left.eq(s.v_rest)]
                with m.If(s.last_tile):
                    s.fsm.goto("DRAIN")
                with m.Else():
                    self._next_tile(m, s)
        with s.fsm.state("DRAIN"):  # the last tile's values leave
            with m.If(~s.draining):
                # (an activated RUN's or a RUN's packer may still be sending: DONE waits)
                if sums:
                    with m.If(s.v_sum):
                        s.fsm.goto("SUM_WAIT")
                    with m.Else():
                        s.fsm.goto("DONE")
                else:
                    s.fsm.goto("DONE")

    def _fsm_sums(self, m, s):
        """With batch sums: ACCUMULATE's reply once the sums are written; READ_SUMS' body."""
        with s.fsm.state("SUM_WAIT"):  # the ACCUMULATE's last sum is written: its reply
            with m.If(~s.batch_sum.busy):
                s.fsm.goto("REPLY")
        with s.fsm.state("SUM_SEND"):  # READ_SUMS: the sum reader's bytes are the body
            m.d.comb += [
                s.body.valid.eq(s.sum_reader.o.valid),
                s.body.payload.data.eq(s.sum_reader.o.payload.data),
                s.body.payload.last.eq(s.sum_reader.o.payload.last),
                s.sum_reader.o.ready.eq(s.body.ready),
            ]
            with m.If(s.body.ready & s.sum_reader.o.valid & s.sum_reader.o.payload.last):
                s.fsm.goto("DONE")

# ---------------------------------------------------------- helpers of the sections

    def _first_value(self, s):
        """The drain's first value: row 0 of the tile's first vector, with its bound flags."""
        return [s.e_row.eq(0), s.e_slot.eq(0), s.last_row.eq(s.m_rows_last == 0), s.last_slot.eq(s.nv_last == 0)]

    def _next_row(self, s):
        """The drain's next row of the same vector."""
        return [s.e_row.eq(s.e_row + 1), s.last_row.eq(s.e_row == s.m_rows_m2)]

    def _next_slot(self, s):
        """The drain's next vector of the tile, from row 0."""
        return [s.e_row.eq(0), s.last_row.eq(s.m_rows_last == 0),
                s.e_slot.eq(s.e_slot + 1), s.last_slot.eq(s.e_slot == s.d_nv_m2)]

    def _reply(self, m, s, status, kind, size, detail=0):
        """Load a short reply's message: ``status``, the payload's ``kind`` and ``size`` bytes
        (an error's ``detail``); REPLY (or a RUN's header) sends it."""
        m.d.sync += [s.r_status.eq(status), s.r_kind.eq(kind), s.r_detail.eq(detail), s.r_len.eq(size),
                     s.msg_index.eq(0), s.msg_ahead.eq(1), s.msg_byte.eq(status), s.msg_last.eq(3 + size)]

    def _stream_tile(self, m, s, sink, tags=(), beat_last=1):
        """The drain: the tile's values out of the result memory into ``sink``.

        The value read in one cycle is offered ``gemm.result_latency`` cycles later
        (``t_flight``); the reads advance while the offered value is taken (its last beat,
        ``beat_last``), and hold (``result_en`` low) while it is not.  ``tags``, (signal,
        value) pairs, go with each value: ``value`` as it is read, in ``signal`` while it is
        offered.  The tile's last value taken, the drain ends."""
        take = Signal()
        offered = s.t_flight[-1]
        in_flight = s.t_flight[:-1].any()  # reads on their way to `gemm.result` behind it
        m.d.comb += [sink.valid.eq(offered), take.eq(~offered | (sink.ready & beat_last)),
                     s.gemm.result_en.eq(take)]
        with m.If(take):
            m.d.sync += s.t_flight.eq(Cat(s.t_more, s.t_flight[:-1]))
            for signal, value in tags:
                for stage in range(s.gemm.result_latency - 1):
                    read = Signal.like(signal, name=f"{signal.name}_read{stage}")
                    m.d.sync += read.eq(value)
                    value = read
                m.d.sync += signal.eq(value)
            with m.If(s.t_more):  # value (e_slot, e_row) is read now: on to the next
                m.d.sync += s.t_more.eq(~(s.last_row & s.last_slot))
                with m.If(~s.last_row):
                    m.d.sync += self._next_row(s)
                with m.Else():
                    m.d.sync += self._next_slot(s)
            with m.Elif(~in_flight):  # the tile's last value taken now
                m.d.sync += s.draining.eq(0)

    def _error(self, m, s, status, detail=L.Detail.NONE):
        """The error reply ``status`` (``detail``), then REPLY."""
        self._reply(m, s, status, _MSG_ERROR, L.ERROR_PAYLOAD, detail)
        s.fsm.goto("REPLY")

    def _next_tile(self, m, s):
        """On to TILE, the engine cleared on the way (its writer's counters start over)."""
        s.fsm.goto("TILE")
        m.d.sync += s.engine_clear.eq(1)


class UARTCore(wiring.Component):
    """:class:`TrainingCore` behind 8N1 UART pins (a board's serial port).

    ::

        rx pin -> UARTReceiver -> FIFO (fifo_depth bytes) -> TrainingCore -> FIFO (2 bytes)
               -> UARTTransmitter -> tx pin

    The FIFO holds what the host sends while the core answers a frame
    rejected at its header (BAD_LENGTH: the core replies at once and then
    hunts through the rest of that request), so the receiver never drops
    a byte on a lock-step host.  The two-byte FIFO before the transmitter
    gives the core a ``ready`` made of the FIFO's own registers (the
    transmitter takes a byte every ``10 * divisor`` cycles, so it costs no
    throughput): without it the transmitter's ``ready`` ran through the
    frame transmitter into the core's state machine and on to its far
    registers, the ULX3S preset's critical path (73.06 MHz against 75).

    Parameters
    ----------
    clk_freq : int or float
        Clock frequency in Hz.
    baud : int
        Bit rate asked; ``divisor = round(clk_freq / baud)`` must be ``>= 4``.
        The rate achieved, ``round(clk_freq / divisor)`` (:attr:`achieved_baud`),
        is what PING reports (:class:`TrainingCore`'s ``baud``).
    fifo_depth : int
        Bytes between the UART receiver and the core, ``>= 1``.
    idle_timeout_s : float
        The core's idle timeout in seconds, ``0.01 .. 0.5`` (protocol).
    **params
        :class:`TrainingCore` parameters (``max_rows``, ``max_cols``,
        ``max_bits``, ``pe``, ``simd``, ``max_payload``, ``max_act_bits``).

    Ports
    -----
    rx : ``In(1, init=1)``
        Serial line from the host (asynchronous; synchronised inside).
    tx : ``Out(1, init=1)``
        Serial line to the host.
    """

    def __init__(self, clk_freq, baud: int = 115200, *, fifo_depth: int = 16,
                 idle_timeout_s: float = L.RX_IDLE_TIMEOUT_S, **params):
        if isinstance(clk_freq, bool) or not isinstance(clk_freq, (int, float)) or clk_freq <= 0:
            raise ValueError(f"clk_freq must be a positive frequency in Hz, got {clk_freq!r}")
        check_int("baud", baud, 1)
        lo, hi = L.RX_IDLE_TIMEOUT_RANGE_S
        if not isinstance(idle_timeout_s, (int, float)) or not lo <= idle_timeout_s <= hi:
            raise ValueError(f"idle_timeout_s must be in {lo} .. {hi} s (protocol), got {idle_timeout_s!r}")
        self._fifo_depth = check_int("fifo_depth", fifo_depth, 1)
        self._divisor = round(clk_freq / baud)
        if self._divisor < 4:
            raise ValueError(f"clk_freq {clk_freq} Hz is too slow for {baud} baud "
                             f"(divisor {clk_freq / baud:.2f} < 4 cycles per bit)")
        self._achieved_baud = round(clk_freq / self._divisor)
        self.core = TrainingCore(idle_timeout=idle_timeout_cycles(clk_freq, idle_timeout_s),
                                 baud=self._achieved_baud, **params)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
        })

    divisor = property(lambda self: self._divisor)
    achieved_baud = property(lambda self: self._achieved_baud,
                             doc="The bit rate the divisor makes, ``round(clk_freq / divisor)`` (PING's ``baud``).")
    fifo_depth = property(lambda self: self._fifo_depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UARTReceiver(self._divisor)
        m.submodules.uart_tx = uart_tx = UARTTransmitter(self._divisor)
        m.submodules.fifo = buffer = fifo.SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        m.submodules.core = core = self.core
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        wiring.connect(m, uart_rx.o, buffer.w_stream)
        wiring.connect(m, buffer.r_stream, core.rx)
        m.submodules.tx_fifo = tx_fifo = fifo.SyncFIFOBuffered(width=8, depth=2)
        wiring.connect(m, core.tx, tx_fifo.w_stream)
        wiring.connect(m, tx_fifo.r_stream, uart_tx.i)
        return m
