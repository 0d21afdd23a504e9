"""The training core's configuration: its limits, their validation, the defaults.

:class:`CoreConfig` is what a core is built with (:class:`hw.core.TrainingCore`,
:class:`sw.core_model.CoreModel`, the board builds); :class:`CoreInfo` is what
PING reports (the configuration and the protocol version, in the order of
:data:`sw.contract.link.PING_FIELDS`).  Both validate themselves by returning
a LIST OF PROBLEMS (strings, empty when valid), never by raising: each caller
words its own error (the gateware's constructor, the model's, the host
driver's ``FramingError``).

The rules (:mod:`sw.protocol`: core invariants): one vector and its reply fit
a frame (``max_payload >= RUN_HEADER + ceil(max_cols * max_bits / 8)``,
``max_payload >= 4 * max_rows``, ``max_payload >= LOAD_HEADER + 1``), one
row's thresholds fit a frame, and the int32 accumulators cannot overflow
(``max_cols * (2**max_bits - 1)**2 < 2**31``).  A core with batch sums
(``sum_slots > 0``) holds ``sum_slots`` sums of ``sum_bits`` bits, at least one
aligned term of an int32 partial sum (:data:`MIN_SUM_BITS`, 88) and at most
:data:`sw.contract.link.MAX_SUM_BITS`; one widest sum and one ACCUMULATE vector
fit a frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from types import MappingProxyType

from .codes import MAX_CODE_BITS, levels
from .gradients import term_bits
from .window import POOLS
from .link import (ACC_BYTES, ACCUMULATE_HEADER, LOAD_HEADER, MAX_FMAP_CODES, MAX_PAYLOAD, MAX_SUM_BITS,
                   MAX_SUM_SLOTS, PING_FIELDS, PROTOCOL_VERSION, RUN_HEADER, THRESHOLD_HEADER, WINDOW_HEADER,
                   accumulator_bits, accumulator_reply_size, packed_size, sum_width, sums_reply_size,
                   threshold_record_size)

__all__ = ["CoreConfig", "CoreInfo", "CORE_DEFAULTS", "BATCH_SUMS", "FEATURE_MAPS", "PACKED_ACCUMULATORS", "POOLING", "LARGE_LIMITS", "ACC_LIMIT", "MIN_SUM_BITS", "config_params"]

#: Accumulators are int32: every ``|out|`` must stay below this.
ACC_LIMIT = 1 << 31
#: The narrowest batch sum a core may hold: one aligned term of an int32 partial sum.
MIN_SUM_BITS = term_bits(8 * ACC_BYTES)


@dataclass(frozen=True)
class CoreConfig:
    """A core's limits.  The defaults are the default core, sized for the block
    RAM of an iCE40 UP5K (30 EBRs of 4 kbit): the 32 x 256 matrix of 8-bit codes
    is 64 kbit (16 EBRs), the 1 KiB request buffer 2, the thresholds of 32 rows
    at up to 4 activation bits (32 x 16 int32) 4 (see :mod:`hw.core`)."""
    max_rows: int = 32
    max_cols: int = 256
    max_bits: int = 8
    pe: int = 4
    simd: int = 8
    max_payload: int = 1024
    max_act_bits: int = 4     # widest activation code of the threshold stage; 0: no stage
    sum_slots: int = 0        # batch sums of weight gradients held (ACCUMULATE, READ_SUMS); 0: none
    sum_bits: int = 0         # bits of each batch sum (0 without sums)
    fmap_codes: int = 0       # codes of the feature-map memory (LOAD_FMAP, windows); 0: none
    packed_accumulators: int = 0  # 1: RUN takes FLAG_PACKED (accumulators at accumulator_bits); 0: not
    max_pool: int = 1         # the largest max-pool window side of a pooled window (sw.contract.window); 1: none

    @property
    def packed_bits(self) -> int:
        """The widest packed accumulator a RUN can reply (:func:`accumulator_bits` at the
        widest matrix and codes); 0 without packed accumulators."""
        return accumulator_bits(self.max_cols, self.max_bits, self.max_bits) if self.packed_accumulators else 0

    def problems(self) -> list[str]:
        """What breaks the protocol's rules (empty: a valid core)."""
        problems = []
        if not 1 <= self.max_bits <= MAX_CODE_BITS:
            problems.append(f"max_bits {self.max_bits} not in 1..{MAX_CODE_BITS}")
        if self.max_rows < 1 or self.max_cols < 1 or self.pe < 1 or self.simd < 1:
            problems.append("max_rows, max_cols, pe and simd must be >= 1")
        if not LOAD_HEADER + 1 <= self.max_payload <= MAX_PAYLOAD:
            problems.append(f"max_payload {self.max_payload} not in {LOAD_HEADER + 1}..{MAX_PAYLOAD}")
        if self.max_payload < RUN_HEADER + packed_size(self.max_cols, self.max_bits):
            problems.append(f"one vector of {self.max_cols} {self.max_bits}-bit codes does not fit "
                            f"a {self.max_payload}-byte payload")
        if self.max_payload < accumulator_reply_size(1, self.max_rows, ACC_BYTES):
            problems.append(f"one reply of {self.max_rows} accumulators does not fit a "
                            f"{self.max_payload}-byte payload")
        if not 0 <= self.max_act_bits <= MAX_CODE_BITS:
            problems.append(f"max_act_bits {self.max_act_bits} not in 0..{MAX_CODE_BITS}")
        elif self.max_act_bits and self.max_payload < THRESHOLD_HEADER + threshold_record_size(self.max_act_bits):
            problems.append(f"the thresholds of one row at {self.max_act_bits} activation bits "
                            f"({threshold_record_size(self.max_act_bits)} bytes) do not fit a "
                            f"{self.max_payload}-byte payload")
        if 1 <= self.max_bits <= MAX_CODE_BITS and self.max_cols * levels(self.max_bits) ** 2 >= ACC_LIMIT:
            problems.append(f"max_cols {self.max_cols} with {self.max_bits}-bit codes can overflow "
                            "the int32 accumulators")
        if not 0 <= self.sum_slots <= MAX_SUM_SLOTS:
            problems.append(f"sum_slots {self.sum_slots} not in 0..{MAX_SUM_SLOTS}")
        elif not self.sum_slots and self.sum_bits:
            problems.append(f"sum_bits {self.sum_bits} without batch sums (sum_slots 0): must be 0")
        elif self.sum_slots:
            if not MIN_SUM_BITS <= self.sum_bits <= MAX_SUM_BITS:
                problems.append(f"sum_bits {self.sum_bits} not in {MIN_SUM_BITS}..{MAX_SUM_BITS} "
                                f"(one aligned term of an int32 partial sum needs {MIN_SUM_BITS})")
            elif self.max_payload < sums_reply_size(1, sum_width(self.sum_bits)):
                problems.append(f"one {self.sum_bits}-bit sum does not fit a {self.max_payload}-byte payload")
            if self.max_payload < ACCUMULATE_HEADER + packed_size(self.max_cols, self.max_bits):
                problems.append(f"one ACCUMULATE vector of {self.max_cols} {self.max_bits}-bit codes does not "
                                f"fit a {self.max_payload}-byte payload")
        if not 0 <= self.fmap_codes <= MAX_FMAP_CODES:
            problems.append(f"fmap_codes {self.fmap_codes} not in 0..{MAX_FMAP_CODES}")
        elif self.fmap_codes and self.max_payload < ACCUMULATE_HEADER + WINDOW_HEADER:
            problems.append(f"a windowed ACCUMULATE ({ACCUMULATE_HEADER + WINDOW_HEADER} bytes) does not fit "
                            f"a {self.max_payload}-byte payload")
        if self.packed_accumulators not in (0, 1):
            problems.append(f"packed_accumulators {self.packed_accumulators} not 0 or 1")
        if self.max_pool not in POOLS:
            problems.append(f"max_pool {self.max_pool} not in {POOLS}")
        elif self.max_pool > 1 and not (self.fmap_codes and self.max_act_bits):
            problems.append(f"max_pool {self.max_pool} needs a feature map (fmap_codes) and an activation "
                            "stage (max_act_bits): it pools a window's activation codes")
        return problems

    def info(self, version: int = PROTOCOL_VERSION) -> "CoreInfo":
        """What this core's PING reports."""
        return CoreInfo(version, self.max_bits, self.pe, self.simd, self.max_rows, self.max_cols,
                        self.max_payload, self.max_act_bits, sum_slots=self.sum_slots, sum_bits=self.sum_bits,
                        fmap_codes=self.fmap_codes, packed_accumulators=self.packed_accumulators,
                        max_pool=self.max_pool)


@dataclass(frozen=True)
class CoreInfo:
    """What PING reports: the protocol version and the core's limits."""
    version: int
    max_bits: int
    pe: int
    simd: int
    max_rows: int
    max_cols: int
    max_payload: int
    max_act_bits: int = 0  # widest activation code of the threshold stage; 0: no stage
    baud: int = 0  # the UART's bit rate (clk / divisor, rounded); 0: not a UART core (a byte stream)
    sum_slots: int = 0  # batch sums held (ACCUMULATE, READ_SUMS); 0: none
    sum_bits: int = 0  # bits of each batch sum
    fmap_codes: int = 0  # codes of the feature-map memory (LOAD_FMAP, windows); 0: none
    packed_accumulators: int = 0  # 1: RUN takes FLAG_PACKED; 0: not
    max_pool: int = 1  # the largest pooled window's pool; 1: none

    @property
    def config(self) -> CoreConfig:
        return CoreConfig(**{f.name: getattr(self, f.name) for f in fields(CoreConfig)})

    def problems(self) -> list[str]:
        """What breaks the protocol (a version this contract does not speak, or
        :meth:`CoreConfig.problems`); empty: a core this host can drive."""
        problems = []
        if self.version != PROTOCOL_VERSION:
            problems.append(f"protocol version {self.version}, this host speaks {PROTOCOL_VERSION}")
        return problems + self.config.problems()

    def pack(self) -> bytes:
        """PING's reply payload (:data:`sw.contract.link.PING_FIELDS`)."""
        return PING_FIELDS.pack(*(getattr(self, name) for name in PING_FIELDS.names))

    @classmethod
    def unpack(cls, payload) -> "CoreInfo":
        """Inverse of :meth:`pack` (``payload`` of ``PING_FIELDS.size`` bytes or more)."""
        return cls(*PING_FIELDS.unpack(payload))


#: The batch sums of a core that has them (the ULX3S preset, the ``model`` and ``sim``
#: backends): 16,384 sums of 96 bits (96 of the ECP5's DP16KD, one bit of every sum in
#: each: :func:`hw.batch_sum.slice_bits`).  ``sum_bits(batch, bound)`` of the digits net
#: is 76 bits at batch 32, (1, 2, 6) bits, and 96 bits take batches up to 2**20 samples.
#: A tile of sums takes each sample's gradient matrix and feature map once, so the more
#: sums the fewer reloads: 16,384 take the digits net's 3x3 convs' weights in one tile
#: and 9 kB a training sample fewer than 4,096 (``bench/link_bytes.py``).
BATCH_SUMS = MappingProxyType({"sum_slots": 16384, "sum_bits": 96})

#: The feature-map memory of a core that makes its vectors (the ULX3S preset, the ``model``
#: backend): 4,096 codes, the digits net's largest map (32 x 8 x 8 = 2,048 codes) twice over;
#: two of the ECP5's DP16KD at 8 bits a code.
FEATURE_MAPS = MappingProxyType({"fmap_codes": 4096})

#: The RUN replies of a core that packs its accumulators at their exact bound's width
#: (FLAG_PACKED, :func:`sw.contract.link.accumulator_bits`; the ULX3S preset, the ``model``
#: and ``sim`` backends): the digits net's forward accumulators take 10 to 13 bits, not 16.
PACKED_ACCUMULATORS = MappingProxyType({"packed_accumulators": 1})

#: The max-pool of a core that pools its windows' activation codes (the ULX3S preset, the
#: ``model`` and ``sim`` backends): windows up to 4 x 4 (the digits and SVHN nets pool 2 x 2).
#: An evaluation's pooled block then returns a quarter of its codes.
POOLING = MappingProxyType({"max_pool": 4})

#: The limits of a core with an ECP5-85F's block RAM (the ULX3S preset, and the ``model``
#: backend's core), over :data:`CORE_DEFAULTS`: the digits net's widest fan-in (1,024 codes)
#: in one matrix row, so every layer's forward is one matrix per row tile and its activation
#: runs on the core; 64 rows, so the widest layer (64 channels) is one row tile: its maps
#: cross once, not once per tile (82.51 MHz at 75; 128 rows measured 56.8 MHz, the matrix's
#: row sums, out of a DP16KD, into the signed correction's adders); 4 KiB frames; the batch
#: sums, the feature map, packed accumulators, pooling.
LARGE_LIMITS = MappingProxyType({"max_rows": 64, "max_cols": 1024, "max_payload": 4096, **BATCH_SUMS,
                                 **FEATURE_MAPS, **PACKED_ACCUMULATORS, **POOLING})

#: The default core's limits (:class:`CoreConfig`'s defaults) as a read-only
#: mapping: build variants with ``{**CORE_DEFAULTS, "pe": 8}``.
CORE_DEFAULTS = MappingProxyType(asdict(CoreConfig()))


def config_params(params) -> dict:
    """The entries of a core's parameters that are :class:`CoreConfig` fields: what
    the model, the host and PING know of a core.  The others (``vectors``,
    ``popcount_stages``, ``popcount_arch``, ``fetch_stages``) shape only the gateware, never a
    byte on the link."""
    names = {f.name for f in fields(CoreConfig)}
    return {name: value for name, value in params.items() if name in names}
