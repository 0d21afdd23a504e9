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
        m = Module()
        max_bits = self._max_bits

        # ---------------------------------------------------------- link
        fmap = self._fmap_codes
        m.submodules.receiver = receiver = FrameReceiver(self._max_payload, timeout=self._idle_timeout,
                                                         head_bytes=self._checker.head_bytes)
        m.submodules.framer = framer = FrameTransmitter()
        wiring.connect(m, wiring.flipped(self.rx), receiver.i)
        wiring.connect(m, framer.o, wiring.flipped(self.tx))
        # The reply body reaches the framer through a skid buffer (full rate): no path runs
        # from the message multiplexers into its CRC, nor from the framer's state into them.
        m.submodules.body_slice = body_slice = SkidBuffer(BODY_LAYOUT)
        wiring.connect(m, body_slice.o, framer.i)
        body = body_slice.i
        event = receiver.o.payload
        head = event.head

        # Written only while the receiver takes a payload, read only while a command runs
        # (one request at a time): no read meets a write, so no read-first emulation.
        m.submodules.request = request = Memory(shape=8, depth=self._max_payload, init=[], attrs=NO_RW_CHECK)
        req_w = request.write_port()
        m.d.comb += [
            req_w.addr.eq(receiver.wr.payload.addr),
            req_w.data.eq(receiver.wr.payload.data),
            req_w.en.eq(receiver.wr.valid),
            receiver.wr.ready.eq(1),
        ]

        # Request buffer -> unpacker: a byte reader with one prefetch register
        # (the read port's data holds while the unpacker is full), its bytes a
        # stream (`req_bytes`), through a skid buffer where the block RAM's
        # clock-to-out is slow (`fetch_stages`: the ECP5's 5.8 ns).  It reads at
        # most two bytes past a payload, and the slice holds two more (never
        # used; the address wraps, `rd_start` drops them).
        m.submodules.unpacker = unpacker = CodeUnpacker(max_bits)
        rd_addr = Signal(range(self._max_payload + 2))
        rd_valid = Signal()
        rd_active = Signal()  # comb: the FSM wants codes
        rd_start = Signal()  # comb: restart at rd_base, drop what is held
        rd_base = Signal(range(L.LOAD_HEADER + 1))
        unpack_bits = Signal(range(max_bits + 1))
        rd_advance = Signal()
        # Byte mode (LOAD_THRESHOLDS): the FSM takes the bytes itself
        # (`rd_take`), bypassing the unpacker, whose codes may be narrower
        # than a byte.
        rd_bytes = Signal()  # comb: byte mode
        rd_take = Signal()  # comb: byte mode, the FSM takes `req_bytes.payload`
        fetched = req_bytes = stream.Signature(8).create()
        if self._request_slice:
            m.submodules.request_slice = request_slice = SkidBuffer(8)
            wiring.connect(m, fetched, request_slice.i)
            m.d.comb += request_slice.clear.eq(rd_start)
            req_bytes = request_slice.o
        m.d.comb += [
            fetched.valid.eq(rd_valid),
            fetched.payload.eq(registered_read(m, request, rd_addr, rd_advance)),
            rd_advance.eq(~rd_valid | fetched.ready),
            req_bytes.ready.eq(Mux(rd_bytes, rd_take, unpacker.i.ready)),
            unpacker.i.valid.eq(req_bytes.valid & ~rd_bytes),
            unpacker.i.payload.eq(req_bytes.payload),
            unpacker.bits.eq(unpack_bits),
            unpacker.clear.eq(rd_start),
        ]
        with m.If(rd_start):
            m.d.sync += [rd_addr.eq(rd_base), rd_valid.eq(0)]
        with m.Elif(rd_advance):
            m.d.sync += rd_valid.eq(rd_active)
            with m.If(rd_active):
                m.d.sync += rd_addr.eq(rd_addr + 1)
        new_code = unpacker.o.payload

        # ---------------------------------------------------------- GEMM engine
        # Matrix and vector codes go through the engine's plane writer; RUN's
        # values come back from its result memory.
        m.submodules.gemm = gemm = self._gemm
        # The feature map (LOAD_FMAP) and the window generator making a windowed RUN's or
        # ACCUMULATE's vectors from it (sw.contract.window), in place of the unpacker's.
        if fmap:
            m.submodules.window = window = WindowGenerator(depth=fmap, max_bits=max_bits, max_cols=self._max_cols)
        # The codes reach the engine through a skid buffer: its `ready`, `valid`
        # and payload are flip-flops, so no path runs from the plane writer's
        # handshake back through the unpacker and the byte reader into the
        # block RAM's read enable, or from the unpacker's reservoir into the
        # writer's staging register.  The FSM counts the codes going in.
        m.submodules.code_slice = code_slice = SkidBuffer(gemm.codes.payload.shape())
        wiring.connect(m, code_slice.o, gemm.codes)
        to_vectors = Signal()  # the engine takes vector codes (a RUN)
        v_window = Signal()  # a windowed RUN, ACCUMULATE or LOAD_MATRIX: its codes come from the window generator
        v_settled = Signal()  # VECTOR's second cycle on (a tile's codes are taken)
        if fmap:  # (every command that writes the engine sets v_window)
            m.d.comb += code_slice.i.payload.code.eq(Mux(v_window, window.o.payload, new_code))
        else:
            m.d.comb += code_slice.i.payload.code.eq(new_code)
        m.d.comb += code_slice.clear.eq(rd_start)
        code_taken = Signal()  # the unpacker's (the generator's) code enters the slice
        m.d.comb += code_taken.eq(code_slice.i.valid & code_slice.i.ready)
        codes_written = Signal()  # every code taken is in the plane buffers
        m.d.comb += codes_written.eq(code_slice.empty & ~gemm.writing)

        # A RUN's reply body after its header (and width byte): one CodePacker packs its
        # values, the result memory's (the drain: each accumulator's low `width` bytes, a
        # beat each, or, packed, its low accumulator_bits in one beat) or the activation
        # stage's codes (the drain -> threshold unit -> [GroupMax ->]), and its bytes are
        # the body while `streaming`.
        act_bits = self._max_act_bits
        packed_bits = self._config.packed_bits
        m.submodules.packer = packer = CodePacker(max(act_bits, 8, packed_bits))
        acc_values = stream.Signature(packer.in_layout).create()  # the drain's beats into the packer
        if act_bits:
            m.submodules.threshold = threshold = self._threshold
        pool = self._max_pool > 1
        if pool:  # a pooled window's codes: each pooling window's max per row, into the packer
            m.submodules.group_max = group_max = GroupMax(act_bits=act_bits, max_rows=self._max_rows,
                                                          max_group_log=2 * exact_log2(self._max_pool))

        # Batch sums (ACCUMULATE, READ_SUMS): each value of an ACCUMULATE is one
        # sample's partial sum, scaled and added into its sum by the unit.
        sums = self._sum_slots
        if sums:
            m.submodules.sums = batch_sum = BatchSum(slots=sums, partial_bits=len(gemm.result),
                                                     sum_bits=self._sum_bits)
            # READ_SUMS: the sums' bytes (width 0: the binary32 bits of their 24-bit truncation).
            m.submodules.sum_reader = sum_reader = SumReader(slots=sums, sum_bits=self._sum_bits,
                                                             read_latency=BatchSum.read_latency)

        # ---------------------------------------------------------- request decoding
        # The checks and the products the commands take (RequestChecker), from the event
        # and what the core holds (`held`); the commands' actions read the header too.
        m.submodules.checker = checker = self._checker
        held = Signal(checker.held.shape())
        m.d.comb += [checker.request.eq(event), checker.held.eq(held)]
        command, verdict, plan = checker.command, checker.verdict, checker.plan
        load = header_view(head, L.LOAD_FIELDS, flags=FLAGS_LAYOUT)
        l_rows, l_cols, l_bits, l_flags = load.rows, load.cols, load.bits, load.flags
        l_offset, l_count = load.offset, load.count
        run = header_view(head, L.RUN_FIELDS, flags=FLAGS_LAYOUT)  # (ACCUMULATE's count, bits, flags too)
        r_count, r_bits, r_flags = run.count, run.bits, run.flags
        r_activate = r_flags.activate if act_bits else 0
        r_first = r_flags.first if sums else 0
        packed = self._packed_accumulators
        r_packed = r_flags.packed if packed else 0
        accumulate = header_view(head, L.ACCUMULATE_FIELDS)
        read_sums = header_view(head, L.READ_SUMS_FIELDS)
        thresholds_head = header_view(head, L.THRESHOLD_FIELDS)
        h_offset, h_count, h_bits = thresholds_head.offset, thresholds_head.count, thresholds_head.bits
        cmd = event.cmd
        r_window = r_flags.window if fmap else 0
        l_window = l_flags.window if fmap else 0  # LOAD_MATRIX: the matrix's rows from a window
        if fmap:
            load_fmap = header_view(head, L.LOAD_FMAP_FIELDS)
        # A LOAD_MATRIX (LOAD_FMAP) at offset 0 starts a new matrix (map): registered while
        # the request is checked, so DECIDE's enables (the held shape's flip-flops) test a
        # flip-flop, not a compare of the header.
        l_new = Signal()
        m.d.sync += l_new.eq(l_offset == 0)
        if fmap:
            f_new = Signal()
            m.d.sync += f_new.eq(load_fmap.offset == 0)

        # ---------------------------------------------------------- state
        # What the core holds, as the checker reads it.
        matrix = held.matrix  # a matrix is being loaded or loaded (has): its shape, its codes loaded
        has_shape, m_rows, m_cols, m_bits, m_flags = matrix.has, matrix.rows, matrix.cols, matrix.bits, matrix.flags
        m_total, m_loaded = matrix.total, matrix.loaded
        if fmap:
            # The feature map: its shape and bits (of LOAD_FMAP at offset 0), codes loaded.
            f_has, f_shape, f_bits = held.fmap.has, held.fmap.dims, held.fmap.bits
            f_total, f_loaded = held.fmap.total, held.fmap.loaded
            f_addr = Signal(range(fmap))  # LOAD_FMAP: where the next code goes
            w_held = Signal.like(window.window)  # the RUN's or ACCUMULATE's window, held while it runs
            m.d.comb += [
                window.shape.eq(f_shape),
                window.window.eq(w_held),
                window.cols.eq(m_cols),
            ]
        max_count = checker.max_count
        if act_bits:
            t_bits, t_loaded = held.thresholds.bits, held.thresholds.loaded  # of the threshold set: rows with them
            n_a = Signal(act_bits)  # thresholds per row, 2**t_bits - 1
            m.d.comb += n_a.eq((1 << t_bits) - 1)
            t_idx_last = Signal(act_bits)  # n_a - 1, registered (t_bits is set two cycles before THR)
            m.d.sync += t_idx_last.eq(n_a - 1)

        # Reply message: STATUS TAG LEN_L LEN_H + short payload.
        r_status = Signal(8)
        r_len = Signal(16)
        r_detail = Signal(8)
        r_kind = Signal(range(4))
        msg_index = Signal(range(4 + L.PING_REPLY))
        ping = self._info.pack()
        loaded = Signal(32)  # LOAD_MATRIX's u32, LOAD_THRESHOLDS's u16
        m.d.comb += loaded.eq(m_loaded)
        if act_bits:
            with m.If(cmd == L.Cmd.LOAD_THRESHOLDS):
                m.d.comb += loaded.eq(t_loaded)
        if fmap:
            with m.If(cmd == L.Cmd.LOAD_FMAP):
                m.d.comb += loaded.eq(f_loaded)
        # The payload's bytes, registered: r_kind, the command and what it loaded are set by
        # reply() and stay, and a payload byte is wanted four cycles later at the earliest
        # (after the header's), so the selection is off the path into msg_byte.
        payload_bytes = []
        for index in range(L.PING_REPLY):
            error_byte = {0: cmd, 1: r_detail}.get(index, 0)
            loaded_byte = loaded[8 * index:8 * index + 8] if index < 4 else 0
            payload_byte = Signal(8, name=f"msg_payload{index}")
            m.d.sync += payload_byte.eq(Mux(r_kind == _MSG_PING, ping[index],
                                            Mux(r_kind == _MSG_LOADED, loaded_byte,
                                                Mux(r_kind == _MSG_ERROR, error_byte, 0))))
            payload_bytes.append(payload_byte)
        msg = Array([r_status, event.tag, r_len[:8], r_len[8:], *payload_bytes])
        msg_last = Signal(range(4 + L.PING_REPLY))  # the message's last byte
        # The message's byte at msg_index, from a register: reply() loads the status, and
        # each byte taken loads the next (msg_next) from msg_ahead = msg_index + 1, kept
        # beside it, so neither a multiplexer over the message nor an adder lies between
        # msg_index and the reply body.
        msg_byte = Signal(8)
        msg_ahead = Signal(range(4 + L.PING_REPLY + 1))
        msg_next = Signal()  # comb: the body takes msg_byte
        with m.If(msg_next):
            m.d.sync += [msg_index.eq(msg_ahead), msg_ahead.eq(msg_ahead + 1), msg_byte.eq(msg[msg_ahead])]

        # LOAD_MATRIX, LOAD_FMAP: codes still to take
        left = Signal(range(max(self._max_rows * self._max_cols, fmap) + 1))

        # RUN state.
        v_signed = Signal()
        v_bits = Signal(range(max_bits + 1))
        v_left = Signal(range(max_count + 1))  # vectors still to do
        nv = Signal(range(self._vectors + 1))  # vectors of this tile
        c_col = Signal(range(self._max_cols))  # vector unpack position
        c_vec = Signal(range(self._vectors))
        # Registered `x - 1` of the bounds the loops compare with (no subtractor on a compare path).
        m_rows_last = Signal.like(m_rows)
        m_cols_last = Signal.like(m_cols)
        nv_last = Signal(range(self._vectors))
        m.d.sync += [m_rows_last.eq(m_rows - 1), m_cols_last.eq(m_cols - 1), nv_last.eq(nv - 1)]
        # c_col == m_cols - 1 and c_vec == nv - 1, as registers set with the counters (from
        # m_cols - 2 and nv - 2, registered: see last_row below).
        c_col_last = Signal()
        c_vec_last = Signal()
        m_cols_m2 = Signal.like(m_cols)
        m.d.sync += m_cols_m2.eq(m_cols - 2)
        e_slot = Signal(range(self._vectors))  # emit: vector of the tile
        e_row = Signal(range(self._max_rows))  # emit: row
        # e_row == m_rows - 1, e_slot == nv - 1, v_left == nv (the tile is the RUN's last) and
        # v_left - nv, as registers: set with the counters (first_value, next_row, next_slot) from
        # bounds registered a cycle before (m_rows - 2 and nv - 2 wrap where no counter meets them).
        last_row = Signal()
        last_slot = Signal()
        last_tile = Signal()
        v_rest = Signal.like(v_left)
        m_rows_m2 = Signal.like(m_rows)
        nv_m2 = Signal.like(nv_last)
        m.d.sync += [m_rows_m2.eq(m_rows - 2), nv_m2.eq(nv - 2), last_tile.eq(v_left == nv), v_rest.eq(v_left - nv)]

        def first_value():
            return [e_row.eq(0), e_slot.eq(0), last_row.eq(m_rows_last == 0), last_slot.eq(nv_last == 0)]

        def next_row():
            return [e_row.eq(e_row + 1), last_row.eq(e_row == m_rows_m2)]

        # The drain: a computed tile's values stream out of the result memory (stream_tile)
        # while the main state machine loads the next tile's vectors; the next tile
        # computes once it is done.  It keeps its tile's bounds: the next TILE changes nv.
        draining = Signal()
        d_nv_m2 = Signal.like(nv_m2)  # the draining tile's nv - 2
        d_last_tile = Signal()  # the draining tile is the RUN's last

        def next_slot():
            return [e_row.eq(0), last_row.eq(m_rows_last == 0), e_slot.eq(e_slot + 1), last_slot.eq(e_slot == d_nv_m2)]
        widest = max(L.ACC_BYTES, L.sum_width(self._sum_bits))  # an accumulator's or a sum's bytes
        e_byte = Signal(range(widest))
        # Bytes of each accumulator (sum) of this RUN's (READ_SUMS') reply; of a packed RUN, bits.
        e_width = Signal(range(max(widest, packed_bits) + 1))
        e_last_byte = Signal(range(widest))  # e_width - 1
        m.d.sync += e_last_byte.eq(e_width - 1)
        v_act = Signal()  # this RUN is activated
        # The drain (stream_tile): the result reads in flight, one bit a stage
        # (the top one: `gemm.result` shows a value not yet taken), and the tile has values
        # not yet read.
        t_flight = Signal(gemm.result_latency)
        t_more = Signal()
        v_sum = Signal()  # this RUN is an ACCUMULATE: its values go into the batch sums
        v_read = Signal()  # a READ_SUMS: sums follow the width byte
        pack_bits = Signal.like(packer.bits)  # the packer's code width for this RUN
        if packed_bits:
            v_packed = Signal()  # this RUN's accumulators leave packed, a beat each
        a_last = Signal()  # the drain: the value offered is the RUN's last (read with it)
        if sums:
            s_addr = Signal(range(sums + 1))  # the sum of an ACCUMULATE's next value
            s_mantissa = Signal(SCALE_MANTISSA_BITS)  # ACCUMULATE: the sample's scale
            s_shift = Signal(L.SHIFT_BITS)
            s_first = Signal()
            s_float_read = Signal()  # this READ_SUMS sends binary32 sums (width 0)
            m.d.comb += [
                batch_sum.mantissa.eq(s_mantissa),
                batch_sum.shift.eq(s_shift),
                batch_sum.first.eq(s_first),
                batch_sum.read_addr.eq(sum_reader.read_addr),
                sum_reader.read_data.eq(batch_sum.read_data),
                sum_reader.slot.eq(read_sums.slot),
                sum_reader.count.eq(read_sums.count),
                sum_reader.sum_bytes.eq(plan.sum_bytes),
                sum_reader.binary32.eq(plan.sum_float),
            ]
        streaming = Signal()  # the packer drives the reply body (a RUN's header, width byte sent)
        if act_bits:
            # LOAD_THRESHOLDS write position.
            t_row = Signal(range(self._max_rows + 1))
            t_left = Signal(range(self._max_rows + 1))  # rows still to write
            t_at_direction = Signal()  # the next byte is a record's direction byte
            t_direction = Signal()  # the direction of the row being written (1: -1, acc <= T)
            t_idx = Signal(act_bits)  # threshold being assembled
            t_byte = Signal(2)  # its bytes taken
            t_word = Signal(24)  # its first three bytes (LE: the latest on top)
            a_row = Signal.like(e_row)  # the drain: the row of the value offered to the threshold unit

        # ---------------------------------------------------------- engine wiring
        m.d.comb += [
            gemm.to_vectors.eq(to_vectors),
            gemm.cols.eq(m_cols),
            gemm.rows.eq(m_rows),
            gemm.m_bits.eq(m_bits),
            gemm.m_signed.eq(m_flags.signed),
            gemm.v_bits.eq(v_bits),
            gemm.v_signed.eq(v_signed),
            gemm.result_addr.eq(gemm.result_address(e_slot, e_row)),
        ]
        if sums:  # an ACCUMULATE's value into its sum
            m.d.comb += [batch_sum.i.payload.slot.eq(s_addr), batch_sum.i.payload.partial.eq(gemm.result)]
        result = gemm.result

        # ---------------------------------------------------------- reply values
        # The packer's input: the activation stage's codes in an activated RUN, else the
        # accumulators (through a skid buffer where the result memory has its register: no
        # path from the banks' select into the packer's shift).
        # The drain's beat into the packer: the offered value's byte e_byte, or, packed, the
        # value; the value's last beat ends it (and the RUN's last value's, the reply).
        beat_last = Signal()
        value_byte = result.as_unsigned().word_select(e_byte[:exact_log2(L.ACC_BYTES)], 8)
        m.d.comb += [
            beat_last.eq(e_byte == e_last_byte),
            acc_values.payload.code.eq(value_byte),
            acc_values.payload.last.eq(a_last & beat_last),
            packer.bits.eq(pack_bits),
        ]
        if packed_bits:
            with m.If(v_packed):
                m.d.comb += [beat_last.eq(1), acc_values.payload.code.eq(result)]
        sources = [(~v_act, acc_values)]
        if act_bits:
            m.d.comb += [
                threshold.bits.eq(t_bits),
                threshold.i.payload.channel.eq(a_row),
                threshold.i.payload.acc.eq(result),
                threshold.i.payload.last.eq(a_last),
            ]
            codes_out = threshold.o
            if pool:  # pool p: groups of p**2 = 2**(2 * log2 p) vectors (the bits of p at 2 and 4)
                wiring.connect(m, threshold.o, group_max.i)
                m.d.comb += [group_max.rows.eq(m_rows),
                             group_max.group_log.eq(Mux(v_window, w_held.pool[:3] & 0b110, 0))]
                codes_out = group_max.o
            sources.append((v_act, codes_out))
        # Either source reaches the packer through a skid buffer: no path runs from the
        # result banks' select into the packer's shift, nor from the reply's `ready` back
        # through the packer into the threshold unit or the drain.
        m.submodules.value_slice = value_slice = SkidBuffer(packer.in_layout)
        wiring.connect(m, value_slice.o, packer.i)
        for selected, source in sources:
            with m.If(selected):
                m.d.comb += [value_slice.i.valid.eq(source.valid),
                             value_slice.i.payload.code.eq(source.payload.code),
                             value_slice.i.payload.last.eq(source.payload.last),
                             source.ready.eq(value_slice.i.ready)]
        # While a RUN streams, the packer's bytes are the reply body; the one with `last` ends it.
        with m.If(streaming):
            m.d.comb += [
                body.valid.eq(packer.o.valid),
                body.payload.eq(packer.o.payload),
                packer.o.ready.eq(body.ready),
            ]
            with m.If(packer.o.valid & packer.o.ready & packer.o.payload.last):
                m.d.sync += streaming.eq(0)

        # ---------------------------------------------------------- control
        def reply(status, kind, size, detail=0):
            m.d.sync += [r_status.eq(status), r_kind.eq(kind), r_detail.eq(detail), r_len.eq(size),
                         msg_index.eq(0), msg_ahead.eq(1), msg_byte.eq(status), msg_last.eq(3 + size)]

        def stream_tile(sink, tags=(), beat_last=1):
            # The drain: the tile's values out of the result memory into `sink`: the value
            # read in one cycle is offered `gemm.result_latency` cycles later (`t_flight`);
            # the reads advance while the offered value is taken (its last beat,
            # `beat_last`), and hold (result_en low) while it is not.  `tags`, (signal,
            # value) pairs, go with each value: `value` as it is read, in `signal` while it
            # is offered.  The tile's last value taken, the drain ends.
            take = Signal()
            offered = t_flight[-1]
            in_flight = t_flight[:-1].any()  # reads on their way to `gemm.result` behind it
            m.d.comb += [sink.valid.eq(offered), take.eq(~offered | (sink.ready & beat_last)),
                         gemm.result_en.eq(take)]
            with m.If(take):
                m.d.sync += t_flight.eq(Cat(t_more, t_flight[:-1]))
                for signal, value in tags:
                    for stage in range(gemm.result_latency - 1):
                        read = Signal.like(signal, name=f"{signal.name}_read{stage}")
                        m.d.sync += read.eq(value)
                        value = read
                    m.d.sync += signal.eq(value)
                with m.If(t_more):  # value (e_slot, e_row) is read now: on to the next
                    m.d.sync += t_more.eq(~(last_row & last_slot))
                    with m.If(~last_row):
                        m.d.sync += next_row()
                    with m.Else():
                        m.d.sync += next_slot()
                with m.Elif(~in_flight):  # the tile's last value taken now
                    m.d.sync += draining.eq(0)

        def error(status, detail=L.Detail.NONE):
            reply(status, _MSG_ERROR, L.ERROR_PAYLOAD, detail)
            fsm.goto("REPLY")

        # The drain, beside the state machine: into the threshold unit (an activated RUN; the
        # codes reach the packer and the reply on their own), the batch sums (ACCUMULATE, one
        # a cycle) or the packer (a byte a beat, or a packed value).
        last_value = last_row & last_slot & d_last_tile
        with m.If(draining):
            with m.If(v_act):
                if act_bits:
                    stream_tile(threshold.i, [(a_row, e_row), (a_last, last_value)])
            with m.Elif(v_sum):
                if sums:
                    with m.If(t_flight[-1] & batch_sum.i.ready):
                        m.d.sync += s_addr.eq(s_addr + 1)
                    stream_tile(batch_sum.i)
            with m.Else():
                with m.If(acc_values.valid & acc_values.ready):  # a beat: the value's next byte, or the next value
                    m.d.sync += e_byte.eq(Mux(beat_last, 0, e_byte + 1))
                stream_tile(acc_values, [(a_last, last_value)], beat_last)

        # The engine's clear (its plane writer's counters start over) comes from a flip-flop,
        # set with the step into TILE and, for a new matrix (offset 0), into LOAD_START: no
        # state decode lies between the FSM and the writer.
        engine_clear = Signal()
        m.d.sync += engine_clear.eq(0)
        m.d.comb += gemm.clear.eq(engine_clear)

        with _OneHotFSM(m, "IDLE") as fsm:
            def next_tile():
                fsm.goto("TILE")
                m.d.sync += engine_clear.eq(1)

            with fsm.state("IDLE"):
                # (With sums: not while they are being zeroed, after a reset or RESET.)
                with m.If(receiver.o.valid & (~batch_sum.busy if sums else 1)):
                    fsm.goto("CHECK1")
            checks = [f"CHECK{n}" for n in range(1, checker.latency)]  # the checker's pipeline
            for state, after in zip(checks, checks[1:] + ["DECIDE"]):
                with fsm.state(state):
                    fsm.goto(after)
            with fsm.state("DECIDE"):  # the verdict is registered: only its actions here
                with m.If(~verdict.ok):
                    error(verdict.status, verdict.detail)
                with m.Elif(command.ping):
                    reply(L.Status.OK, _MSG_PING, L.PING_REPLY)
                    fsm.goto("REPLY")
                with m.Elif(command.reset):
                    m.d.sync += [has_shape.eq(0), m_loaded.eq(0)]
                    if act_bits:
                        m.d.sync += t_loaded.eq(0)
                    if sums:  # zeroed in the background; the next request waits for it
                        m.d.comb += batch_sum.clear.eq(1)
                    if fmap:
                        m.d.sync += [f_has.eq(0), f_loaded.eq(0)]
                    reply(L.Status.OK, _MSG_EMPTY, 0)
                    fsm.goto("REPLY")
                with m.Elif(command.load_matrix):
                    with m.If(l_new):
                        m.d.sync += [
                            has_shape.eq(1), m_rows.eq(l_rows), m_cols.eq(l_cols),
                            m_bits.eq(l_bits), m_flags.eq(l_flags), m_total.eq(plan.total),
                        ]
                        if act_bits:  # thresholds belong to the rows of one matrix
                            m.d.sync += t_loaded.eq(0)
                    m.d.sync += [left.eq(l_count), rd_base.eq(L.LOAD_HEADER), unpack_bits.eq(l_bits),
                                 engine_clear.eq(l_new), to_vectors.eq(0)]
                    if fmap:  # windowed: the codes come from the window generator
                        m.d.sync += [v_window.eq(l_window), w_held.eq(plan.window)]
                    fsm.goto("LOAD_START")
                with m.Elif(command.run):
                    reply(L.Status.OK, _MSG_EMPTY, 0)
                    m.d.sync += [
                        r_len.eq(plan.reply_size), v_act.eq(r_activate), v_sum.eq(0), v_read.eq(0),
                        v_left.eq(r_count), v_bits.eq(r_bits), v_signed.eq(r_flags.signed),
                        rd_base.eq(L.RUN_HEADER), unpack_bits.eq(r_bits), to_vectors.eq(1),
                    ]
                    # The width byte: bytes of each accumulator or, packed, bits; the packer's
                    # code width: those bits, or a byte, or the activation code's.
                    beat_bits = Mux(r_packed, plan.packed_bits, 8) if packed else 8
                    m.d.sync += [e_width.eq(Mux(r_packed, plan.packed_bits, plan.width) if packed else plan.width),
                                 pack_bits.eq(Mux(r_activate, t_bits, beat_bits) if act_bits else beat_bits)]
                    if packed:
                        m.d.sync += v_packed.eq(r_packed)
                    if fmap:
                        m.d.sync += [v_window.eq(r_window), w_held.eq(plan.window)]
                    fsm.goto("RUN_START")
                if sums:
                    with m.Elif(command.accumulate):
                        reply(L.Status.OK, _MSG_EMPTY, 0)  # sent once the sums are written (SUM_WAIT)
                        m.d.sync += [
                            v_sum.eq(1), v_read.eq(0), v_act.eq(0),
                            v_left.eq(r_count), v_bits.eq(r_bits), v_signed.eq(r_flags.signed),
                            rd_base.eq(L.ACCUMULATE_HEADER), unpack_bits.eq(r_bits), to_vectors.eq(1),
                            s_addr.eq(accumulate.slot), s_mantissa.eq(accumulate.mantissa),
                            s_shift.eq(accumulate.shift), s_first.eq(r_first),
                        ]
                        if fmap:
                            m.d.sync += [v_window.eq(r_window), w_held.eq(plan.window)]
                        fsm.goto("RUN_START")
                    with m.Elif(command.read_sums):
                        reply(L.Status.OK, _MSG_EMPTY, 0)
                        # The reader starts now: its first sums are read while the header leaves.
                        m.d.comb += sum_reader.start.eq(1)
                        m.d.sync += [
                            r_len.eq(L.SUMS_REPLY_HEADER + plan.sums_bytes), e_width.eq(plan.sum_bytes),
                            s_float_read.eq(plan.sum_float), v_read.eq(1), v_sum.eq(0), v_act.eq(0),
                        ]
                        fsm.goto("RUN_HEADER")
                if fmap:
                    with m.Elif(command.load_fmap):
                        with m.If(f_new):  # a new map
                            m.d.sync += [
                                f_has.eq(1), f_shape.eq(load_fmap.as_value()[:len(f_shape.as_value())]),
                                f_bits.eq(load_fmap.bits), f_total.eq(plan.fmap_total),
                            ]
                        m.d.sync += [left.eq(load_fmap.count), f_addr.eq(load_fmap.offset),
                                     rd_base.eq(L.LOAD_FMAP_HEADER), unpack_bits.eq(load_fmap.bits)]
                        fsm.goto("FMAP_START")
                if act_bits:
                    with m.Elif(command.load_thresholds):
                        m.d.sync += [
                            t_bits.eq(h_bits), t_row.eq(h_offset), t_left.eq(h_count), t_at_direction.eq(1),
                            rd_base.eq(L.THRESHOLD_HEADER),
                        ]
                        fsm.goto("THR_START")

            # ------------------------------------------------ short replies
            with fsm.state("REPLY"):  # the whole reply: header + short payload
                m.d.comb += [
                    body.valid.eq(1),
                    body.payload.data.eq(msg_byte),
                    body.payload.last.eq(msg_index == msg_last),
                    msg_next.eq(body.ready),
                ]
                with m.If(body.ready):
                    with m.If(msg_index == msg_last):
                        fsm.goto("DONE")
            with fsm.state("DONE"):  # (a RUN's packer may still be sending)
                with m.If(~streaming):
                    m.d.comb += receiver.o.ready.eq(1)
                    fsm.goto("IDLE")

            # ------------------------------------------------ LOAD_MATRIX
            with fsm.state("LOAD_START"):
                m.d.comb += rd_start.eq(1)
                if fmap:  # (the matrix's shape, read by the generator, is registered by now)
                    m.d.comb += window.start.eq(v_window)
                fsm.goto("LOAD")
            with fsm.state("LOAD"):  # codes (or, windowed, the generator's) into the engine's plane writer
                m.d.comb += code_slice.i.payload.flush.eq(left == 1)
                with m.If(~v_window):
                    m.d.comb += [
                        rd_active.eq(1),
                        code_slice.i.valid.eq(unpacker.o.valid),
                        unpacker.o.ready.eq(code_slice.i.ready),
                    ]
                if fmap:
                    with m.Else():
                        m.d.comb += [
                            code_slice.i.valid.eq(window.o.valid),
                            window.o.ready.eq(code_slice.i.ready),
                        ]
                with m.If(code_taken):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        fsm.goto("LOAD_WAIT")
            with fsm.state("LOAD_WAIT"):  # the last planes are written
                with m.If(codes_written):
                    fsm.goto("LOAD_DONE")
            with fsm.state("LOAD_DONE"):
                m.d.sync += m_loaded.eq(l_offset + l_count)
                reply(L.Status.OK, _MSG_LOADED, 4)
                fsm.goto("REPLY")

            # ------------------------------------------------ LOAD_FMAP
            if fmap:
                with fsm.state("FMAP_START"):
                    m.d.comb += rd_start.eq(1)
                    fsm.goto("FMAP")
                with fsm.state("FMAP"):  # codes into the feature map, one a cycle
                    m.d.comb += [
                        rd_active.eq(1),
                        unpacker.o.ready.eq(1),
                        window.write.valid.eq(unpacker.o.valid),
                        window.write.payload.addr.eq(f_addr),
                        window.write.payload.code.eq(new_code),
                    ]
                    with m.If(unpacker.o.valid):
                        m.d.sync += [f_addr.eq(f_addr + 1), left.eq(left - 1)]
                        with m.If(left == 1):
                            fsm.goto("FMAP_DONE")
                with fsm.state("FMAP_DONE"):
                    m.d.sync += f_loaded.eq(load_fmap.offset + load_fmap.count)
                    reply(L.Status.OK, _MSG_LOADED, 4)
                    fsm.goto("REPLY")

            # ------------------------------------------------ LOAD_THRESHOLDS
            if act_bits:
                with fsm.state("THR_START"):
                    m.d.comb += rd_start.eq(1)
                    fsm.goto("THR")
                with fsm.state("THR"):  # records byte by byte: direction, then int32 LE thresholds
                    byte = req_bytes.payload
                    m.d.comb += [rd_bytes.eq(1), rd_active.eq(1), rd_take.eq(req_bytes.valid)]
                    m.d.comb += [  # (the unit's load is always ready)
                        threshold.load.payload.channel.eq(t_row),
                        threshold.load.payload.index.eq(t_idx),
                        threshold.load.payload.direction.eq(t_direction),
                        threshold.load.payload.threshold.eq(Cat(t_word, byte)),
                    ]
                    with m.If(req_bytes.valid & t_at_direction):
                        m.d.sync += [t_direction.eq(byte[0]), t_at_direction.eq(0), t_idx.eq(0), t_byte.eq(0)]
                    with m.Elif(req_bytes.valid):
                        m.d.sync += [t_word.eq(Cat(t_word[8:], byte)), t_byte.eq(t_byte + 1)]
                        with m.If(t_byte == 3):
                            m.d.comb += threshold.load.valid.eq(1)
                            m.d.sync += t_idx.eq(t_idx + 1)
                            with m.If(t_idx == t_idx_last):  # the row's last threshold
                                m.d.sync += [t_at_direction.eq(1), t_row.eq(t_row + 1), t_left.eq(t_left - 1)]
                                with m.If(t_left == 1):
                                    fsm.goto("THR_DONE")
                with fsm.state("THR_DONE"):
                    m.d.sync += t_loaded.eq(h_offset + h_count)
                    reply(L.Status.OK, _MSG_LOADED, 2)
                    fsm.goto("REPLY")

            # ------------------------------------------------ RUN
            with fsm.state("RUN_START"):
                m.d.comb += rd_start.eq(1)
                if pool:
                    m.d.comb += group_max.start.eq(1)
                if fmap:
                    m.d.comb += window.start.eq(v_window)
                with m.If(v_sum):  # an ACCUMULATE replies once its sums are written
                    next_tile()
                with m.Else():
                    fsm.goto("RUN_HEADER")
            with fsm.state("RUN_HEADER"):  # STATUS TAG LEN_L LEN_H, never the last bytes
                m.d.comb += [body.valid.eq(1), body.payload.data.eq(msg_byte), msg_next.eq(body.ready)]
                with m.If(body.ready):
                    with m.If(msg_index == 3):
                        m.d.sync += streaming.eq(v_act)
                        with m.If(v_act):
                            next_tile()
                        with m.Else():
                            fsm.goto("RUN_WIDTH")
            with fsm.state("RUN_WIDTH"):  # accumulators (sums): the reply's width byte, never the last
                m.d.comb += [body.valid.eq(1), body.payload.data.eq(e_width)]
                if sums:
                    with m.If(v_read & s_float_read):  # READ_SUMS width 0: the byte is 0, the sums 4 bytes
                        m.d.comb += body.payload.data.eq(L.SUM_FLOAT32)
                with m.If(body.ready):
                    m.d.sync += streaming.eq(~v_read)
                    if sums:
                        with m.If(v_read):
                            fsm.goto("SUM_SEND")
                        with m.Else():
                            next_tile()
                    else:
                        next_tile()
            with fsm.state("TILE"):  # the next tile: up to `vectors` vectors (the engine cleared)
                m.d.sync += [v_settled.eq(0), nv.eq(Mux(v_left >= self._vectors, self._vectors, v_left)),
                             c_col.eq(0), c_vec.eq(0), c_col_last.eq(m_cols_last == 0)]
                fsm.goto("VECTOR")
            with fsm.state("VECTOR"):  # unpack (or, windowed, make) the tile's vectors into the engine
                # The tile's first code may wait here already (the generator's next one, or the
                # unpacker's, left of the byte the last tile ended in); codes are taken from the
                # state's second cycle on, once the engine's writer and `nv_last` have
                # registered the tile's `nv` (a one-column tile's first code ends its vector).
                m.d.sync += v_settled.eq(1)
                with m.If(~v_settled):  # nv is registered (nv_last and nv_m2 are not yet)
                    m.d.sync += c_vec_last.eq(nv == 1)
                with m.If(~v_window):
                    m.d.comb += [
                        rd_active.eq(1),
                        code_slice.i.valid.eq(unpacker.o.valid & v_settled),
                        unpacker.o.ready.eq(code_slice.i.ready & v_settled),
                    ]
                if fmap:
                    with m.Elif(v_settled):
                        m.d.comb += [
                            code_slice.i.valid.eq(window.o.valid),
                            window.o.ready.eq(code_slice.i.ready),
                        ]
                with m.If(code_taken):
                    m.d.sync += [c_col.eq(c_col + 1), c_col_last.eq(c_col == m_cols_m2)]
                    with m.If(c_col_last):
                        m.d.sync += [c_col.eq(0), c_col_last.eq(m_cols_last == 0),
                                     c_vec.eq(c_vec + 1), c_vec_last.eq(c_vec == nv_m2)]
                        with m.If(c_vec_last):
                            fsm.goto("START")
            with fsm.state("START"):  # once the last planes are written and the last tile drained
                with m.If(codes_written & ~draining):
                    m.d.comb += gemm.start.eq(1)
                    fsm.goto("COMPUTE")
            with fsm.state("COMPUTE"):  # then the drain from the next cycle on (its first read)
                with m.If(gemm.done):
                    m.d.sync += [*first_value(), t_flight.eq(0), t_more.eq(1), e_byte.eq(0), draining.eq(1),
                                 d_nv_m2.eq(nv_m2), d_last_tile.eq(last_tile), v_left.eq(v_rest)]
                    with m.If(last_tile):
                        fsm.goto("DRAIN")
                    with m.Else():
                        next_tile()
            with fsm.state("DRAIN"):  # the last tile's values leave
                with m.If(~draining):
                    # (an activated RUN's or a RUN's packer may still be sending: DONE waits)
                    if sums:
                        with m.If(v_sum):
                            fsm.goto("SUM_WAIT")
                        with m.Else():
                            fsm.goto("DONE")
                    else:
                        fsm.goto("DONE")
            if sums:
                with fsm.state("SUM_WAIT"):  # the ACCUMULATE's last sum is written: its reply
                    with m.If(~batch_sum.busy):
                        fsm.goto("REPLY")
                with fsm.state("SUM_SEND"):  # READ_SUMS: the sum reader's bytes are the body
                    m.d.comb += [
                        body.valid.eq(sum_reader.o.valid),
                        body.payload.data.eq(sum_reader.o.payload.data),
                        body.payload.last.eq(sum_reader.o.payload.last),
                        sum_reader.o.ready.eq(body.ready),
                    ]
                    with m.If(body.ready & sum_reader.o.valid & sum_reader.o.payload.last):
                        fsm.goto("DONE")
        return m


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
