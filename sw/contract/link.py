"""The host link: what crosses it, defined once for the host and the gateware.

The frame format, the commands and the order of the checks are described in
:mod:`sw.protocol` (the host's codecs); this module holds their numbers:
the constants, the command/status/detail codes, the flag bits, the CRC's
parameters and the FIELD TABLES of the fixed headers.  A :class:`Header` is
a little-endian record of integer fields; the host builds its ``struct``
codec from it (:attr:`Header.format`, :meth:`Header.pack`,
:meth:`Header.unpack`), the gateware its ``amaranth.lib.data`` layout
(:func:`hw.layouts.header_layout`), so the two cannot disagree.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from .gradients import FLOAT32_BITS, MAX_FLOAT_SUM_BITS

__all__ = [
    "PROTOCOL_VERSION", "SYNC", "MAX_PAYLOAD", "ACC_BYTES", "THRESHOLD_BYTES",
    "RX_IDLE_TIMEOUT_S", "RX_IDLE_TIMEOUT_RANGE_S", "HOST_RECOVERY_S", "idle_timeout_cycles",
    "CRC_WIDTH", "CRC_POLY", "CRC_INIT", "CRC_REFLECT_INPUT", "CRC_REFLECT_OUTPUT", "CRC_XOR_OUTPUT",
    "CRC_CHECK", "CRC_RESIDUE",
    "Cmd", "Status", "Detail", "FLAG_SIGNED", "FLAG_ACTIVATE", "FLAG_FIRST", "FLAGS", "DIRECTION_NEGATIVE",
    "Field", "Header", "FRAME_FIELDS", "LOAD_FIELDS", "RUN_FIELDS", "RUN_REPLY_FIELDS", "THRESHOLD_FIELDS",
    "ACCUMULATE_FIELDS", "READ_SUMS_FIELDS", "SUMS_REPLY_FIELDS", "LOAD_FMAP_FIELDS", "WINDOW_FIELDS",
    "PING_FIELDS", "ERROR_FIELDS", "HEADER_SIZE", "CRC_SIZE", "OVERHEAD", "LOAD_HEADER", "RUN_HEADER",
    "RUN_REPLY_HEADER", "THRESHOLD_HEADER", "ACCUMULATE_HEADER", "READ_SUMS_HEADER", "SUMS_REPLY_HEADER",
    "LOAD_FMAP_HEADER", "WINDOW_HEADER", "FLAG_WINDOW", "FLAG_PACKED", "MAX_FMAP_CODES", "PING_REPLY", "ERROR_PAYLOAD",
    "MAX_SUM_SLOTS", "MAX_SUM_BITS", "SHIFT_BITS", "MAX_SHIFT", "SUM_FLOAT32", "FLOAT_SUM_BYTES",
    "packed_size", "threshold_record_size", "accumulator_bound", "accumulator_width", "accumulator_bits",
    "accumulator_reply_size", "packed_accumulator_reply_size",
    "activation_reply_size", "sum_width", "sum_bytes", "sums_reply_size",
]

PROTOCOL_VERSION = 8     # 2: LOAD_THRESHOLDS, RUN's activate flag, max_act_bits in PING;
#                          3: RUN replies accumulators only as wide as their bound (a width byte first);
#                          4: ACCUMULATE and READ_SUMS (the batch sum of weight gradients on the
#                             core), sum_slots and sum_bits in PING;
#                          5: LOAD_FMAP and the window flag of RUN and ACCUMULATE (vectors made
#                             on the core from a feature map, sw.contract.window), fmap_codes in PING;
#                          6: RUN's packed flag (accumulators bit-packed at their exact bound's
#                             width, accumulator_bits), packed_accumulators in PING;
#                          7: the window's pool field (an activated RUN's codes max-pooled on the
#                             core, sw.contract.window), max_pool in PING;
#                          8: LOAD_MATRIX's window flag (a matrix made on the core from its
#                             feature map: rows are a window's vectors)
SYNC = 0xA5
MAX_PAYLOAD = 4096       # protocol bound; a core reports its own (<= this) in PING
ACC_BYTES = 4            # the widest accumulator: int32
MAX_SUM_SLOTS = 0xFFFF   # the most batch sums a core may hold (READ_SUMS addresses them with a u16)
MAX_SUM_BITS = 128       # the widest batch sum a core may hold
#: READ_SUMS ``width`` asking for each sum as the 4-byte little-endian IEEE binary32 pattern of
#: its truncation to 24 significant bits (:func:`sw.contract.gradients.sum_float_bits`).
SUM_FLOAT32 = 0
FLOAT_SUM_BYTES = FLOAT32_BITS // 8
assert MAX_SUM_BITS <= MAX_FLOAT_SUM_BITS  # every sum a core may hold has a binary32 form
MAX_FMAP_CODES = 0xFFFF  # the most feature-map codes a core may hold (LOAD_FMAP addresses them with a u16)
THRESHOLD_BYTES = 4      # int32 thresholds

#: A core drops a partial frame after this idle gap (seconds) ...
RX_IDLE_TIMEOUT_S = 0.1
#: ... which may be anything in this range (seconds).
RX_IDLE_TIMEOUT_RANGE_S = (0.01, 0.5)
#: A host waits this long (seconds) after a lost reply before its next request.
HOST_RECOVERY_S = 0.5


def idle_timeout_cycles(clk_freq, seconds: float = RX_IDLE_TIMEOUT_S) -> int:
    """The idle timeout in cycles of a ``clk_freq`` Hz clock (at least 1)."""
    return max(1, round(seconds * clk_freq))


# CRC-16/CCITT-FALSE (CRC-16/IBM-3740 in the reveng catalogue), in the
# catalogue's terms.  Over bytes 1 .. 4+LEN of a frame, sent most significant
# byte first, so the same CRC over CMD .. CRC_L leaves CRC_RESIDUE.
CRC_WIDTH = 16
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
CRC_REFLECT_INPUT = False
CRC_REFLECT_OUTPUT = False
CRC_XOR_OUTPUT = 0x0000
CRC_CHECK = 0x29B1       # the CRC of b"123456789"
CRC_RESIDUE = 0x0000


class Cmd(enum.IntEnum):
    """Request byte 1."""
    PING = 0x01
    RESET = 0x02
    LOAD_MATRIX = 0x03
    RUN = 0x04
    LOAD_THRESHOLDS = 0x05
    ACCUMULATE = 0x06
    READ_SUMS = 0x07
    LOAD_FMAP = 0x08


class Status(enum.IntEnum):
    """Reply byte 1."""
    OK = 0x00
    BAD_CRC = 0x01
    BAD_LENGTH = 0x02
    BAD_COMMAND = 0x03
    BAD_PARAMS = 0x04
    BAD_STATE = 0x05


class Detail(enum.IntEnum):
    """Second byte of an error reply's payload: which field or rule failed."""
    NONE = 0x00
    ROWS = 0x01
    COLS = 0x02
    BITS = 0x03
    FLAGS = 0x04
    COUNT = 0x05
    SEQUENCE = 0x06       # LOAD_MATRIX offset > 0 not continuing the matrix being loaded
    REPLY_TOO_BIG = 0x07  # RUN, READ_SUMS: the reply would not fit max_payload
    NO_MATRIX = 0x08      # RUN, LOAD_THRESHOLDS or ACCUMULATE before a complete LOAD_MATRIX
    NO_THRESHOLDS = 0x09  # RUN with activate before thresholds for every row of the matrix
    WIDTH = 0x0A          # READ_SUMS: width not SUM_FLOAT32 (0) nor in 1..ceil(sum_bits / 8)
    SCALE = 0x0B          # ACCUMULATE: mantissa >= 2**SCALE_MANTISSA_BITS
    NO_FMAP = 0x0C        # RUN, ACCUMULATE, LOAD_MATRIX with the window flag before a complete LOAD_FMAP
    WINDOW = 0x0D         # RUN, ACCUMULATE, LOAD_MATRIX: a window field out of its range (sw.contract.window)
    SHAPE = 0x0E          # LOAD_FMAP: a zero dimension, or more codes than the core holds


FLAG_SIGNED = 0x01       # LOAD_MATRIX, RUN: codes read as 2q - n
FLAG_ACTIVATE = 0x02     # RUN: reply activation codes (thresholds) instead of accumulators
FLAG_FIRST = 0x04        # ACCUMULATE: the batch's first sample: the sums are written, not added to
FLAG_WINDOW = 0x08       # RUN, ACCUMULATE, LOAD_MATRIX: a window header follows, the vectors (the matrix's
#                          rows) come from the feature map
FLAG_PACKED = 0x10       # RUN (not with FLAG_ACTIVATE): accumulators bit-packed, accumulator_bits each
#: The flag bits of a ``flags`` byte by name, lowest first (the gateware's flag layout).
FLAGS = (("signed", FLAG_SIGNED), ("activate", FLAG_ACTIVATE), ("first", FLAG_FIRST), ("window", FLAG_WINDOW),
         ("packed", FLAG_PACKED))
#: LOAD_THRESHOLDS record byte 0: the row's direction is -1 (``acc <= T``), else +1.
DIRECTION_NEGATIVE = 0x01


# --------------------------------------------------------------------------- field tables

@dataclass(frozen=True)
class Field:
    """One integer field of a header: ``size`` bytes, little-endian."""
    name: str
    size: int
    signed: bool = False


_STRUCT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


class Header:
    """A fixed little-endian record of integer :class:`Field` s, in order."""

    def __init__(self, name: str, *fields: Field):
        self.name = name
        self.fields = tuple(fields)
        self.names = tuple(f.name for f in self.fields)
        codes = (_STRUCT_CODES[f.size] if f.signed else _STRUCT_CODES[f.size].upper() for f in self.fields)
        self.format = "<" + "".join(codes)
        self._struct = struct.Struct(self.format)
        self.size = self._struct.size

    def field(self, name: str) -> Field:
        return self.fields[self.names.index(name)]

    def offset(self, name: str) -> int:
        """Byte offset of field ``name``."""
        return sum(f.size for f in self.fields[:self.names.index(name)])

    def pack(self, *values) -> bytes:
        return self._struct.pack(*values)

    def unpack(self, data, offset: int = 0) -> tuple:
        """The field values of the record at ``data[offset:]`` (longer data is fine)."""
        return self._struct.unpack_from(data, offset)

    def __repr__(self):
        return f"Header({self.name!r}, {', '.join(self.names)})"


#: ``SYNC CMD/STATUS TAG LEN`` (the CRC, two bytes big-endian, follows the payload).
FRAME_FIELDS = Header("frame", Field("sync", 1), Field("code", 1), Field("tag", 1), Field("length", 2))
#: LOAD_MATRIX payload header; packed codes follow, or with :data:`FLAG_WINDOW` the window header.
LOAD_FIELDS = Header("LOAD_MATRIX", Field("rows", 2), Field("cols", 2), Field("bits", 1), Field("flags", 1),
                     Field("offset", 4), Field("count", 2))
#: RUN payload header; packed vector codes follow.
RUN_FIELDS = Header("RUN", Field("count", 2), Field("bits", 1), Field("flags", 1))
#: A RUN reply's header (accumulators, not activations): the bytes of each accumulator, or
#: with :data:`FLAG_PACKED` its bits (:func:`accumulator_bits`).
RUN_REPLY_FIELDS = Header("RUN reply", Field("width", 1))
#: LOAD_THRESHOLDS payload header; ``count`` row records follow (:func:`threshold_record_size`).
THRESHOLD_FIELDS = Header("LOAD_THRESHOLDS", Field("offset", 2), Field("count", 2), Field("bits", 1),
                          Field("flags", 1))
#: ACCUMULATE payload header; packed vector codes follow (as RUN's).  ``mantissa`` and
#: ``shift`` are the sample's gradient scale (:mod:`sw.contract.gradients`: ``M_b``,
#: ``shift_b``); the products land in the sums from ``slot`` on.
ACCUMULATE_FIELDS = Header("ACCUMULATE", Field("count", 2), Field("bits", 1), Field("flags", 1),
                           Field("slot", 2), Field("mantissa", 4), Field("shift", 1))
#: Bits of ACCUMULATE's ``shift`` (a byte on the wire) and the largest shift it carries.
SHIFT_BITS = 8 * ACCUMULATE_FIELDS.field("shift").size
MAX_SHIFT = (1 << SHIFT_BITS) - 1
#: READ_SUMS payload: ``count`` sums from ``slot``, each as its low ``width`` bytes, or
#: (``width`` :data:`SUM_FLOAT32`) as its binary32 pattern.
READ_SUMS_FIELDS = Header("READ_SUMS", Field("slot", 2), Field("count", 2), Field("width", 1))
#: A READ_SUMS reply's header: the request's ``width`` (:data:`SUM_FLOAT32`: 4-byte binary32 patterns).
SUMS_REPLY_FIELDS = Header("READ_SUMS reply", Field("width", 1))
#: LOAD_FMAP payload header; packed codes follow (codes ``offset .. offset + count - 1``
#: of the ``channels x height x width`` feature map, channel-major, row-major).
LOAD_FMAP_FIELDS = Header("LOAD_FMAP", Field("channels", 2), Field("height", 1), Field("width", 1),
                          Field("bits", 1), Field("offset", 2), Field("count", 2))
#: The window header of a RUN, ACCUMULATE or LOAD_MATRIX with :data:`FLAG_WINDOW`, right after its own
#: header (and no codes after it): which vectors the core makes from the feature map
#: (:class:`sw.contract.window.Window`, whose fields these are, in this order).
WINDOW_FIELDS = Header("window", Field("kernel", 1), Field("stride", 1), Field("pad", 1), Field("order", 1),
                       Field("out_width", 2), Field("channel", 2), Field("y", 2), Field("x", 2),
                       Field("pool", 1))
#: PING's reply payload (:class:`sw.contract.core.CoreInfo` in this order).
PING_FIELDS = Header("PING reply", Field("version", 1), Field("max_bits", 1), Field("pe", 2), Field("simd", 2),
                     Field("max_rows", 2), Field("max_cols", 2), Field("max_payload", 2),
                     Field("max_act_bits", 1), Field("baud", 4), Field("sum_slots", 2), Field("sum_bits", 1),
                     Field("fmap_codes", 2), Field("packed_accumulators", 1), Field("max_pool", 1))
#: An error reply's payload.
ERROR_FIELDS = Header("error", Field("command", 1), Field("detail", 1))

HEADER_SIZE = FRAME_FIELDS.size
CRC_SIZE = CRC_WIDTH // 8
OVERHEAD = HEADER_SIZE + CRC_SIZE
LOAD_HEADER = LOAD_FIELDS.size
RUN_HEADER = RUN_FIELDS.size
RUN_REPLY_HEADER = RUN_REPLY_FIELDS.size
THRESHOLD_HEADER = THRESHOLD_FIELDS.size
ACCUMULATE_HEADER = ACCUMULATE_FIELDS.size
READ_SUMS_HEADER = READ_SUMS_FIELDS.size
SUMS_REPLY_HEADER = SUMS_REPLY_FIELDS.size
LOAD_FMAP_HEADER = LOAD_FMAP_FIELDS.size
WINDOW_HEADER = WINDOW_FIELDS.size
PING_REPLY = PING_FIELDS.size
ERROR_PAYLOAD = ERROR_FIELDS.size


# --------------------------------------------------------------------------- sizes

def packed_size(count: int, bits: int) -> int:
    """Bytes of ``count`` codes of ``bits`` bits, densely packed."""
    return (int(count) * int(bits) + 7) // 8


def threshold_record_size(bits: int) -> int:
    """Bytes of one row's LOAD_THRESHOLDS record at ``bits`` activation bits:
    the direction byte, then ``2**bits - 1`` int32 thresholds.  A size, not a check:
    any ``bits`` a header may carry (0 included) gives one."""
    return 1 + THRESHOLD_BYTES * ((1 << int(bits)) - 1)


def accumulator_bound(cols: int, m_bits: int, v_bits: int) -> int:
    """The bound of a ``cols``-long product of ``m_bits`` by ``v_bits`` codes in either
    reading that a core knows without a multiplier: ``2**(bit_length(cols) + m_bits +
    v_bits) - 1``, at least ``cols * n_m * n_v`` (signed odd codes reach ``+-n``)."""
    return (1 << (int(cols).bit_length() + int(m_bits) + int(v_bits))) - 1


def accumulator_width(cols: int, m_bits: int, v_bits: int) -> int:
    """Bytes of each accumulator in a RUN reply: the fewest (1 .. :data:`ACC_BYTES`) whose
    two's complement holds :func:`accumulator_bound`, ``ceil((bit_length(cols) + m_bits
    + v_bits + 1) / 8)``."""
    bits = int(cols).bit_length() + int(m_bits) + int(v_bits) + 1
    return min(ACC_BYTES, -(-bits // 8))


def accumulator_bits(cols: int, m_bits: int, v_bits: int) -> int:
    """Bits of each accumulator in a RUN reply with :data:`FLAG_PACKED`: the fewest whose two's
    complement holds the product's exact bound ``cols * n_m * n_v`` (``n = 2**bits - 1``,
    which signed odd codes reach as ``+-n``), ``bit_length(cols * n_m * n_v) + 1``."""
    return (int(cols) * ((1 << int(m_bits)) - 1) * ((1 << int(v_bits)) - 1)).bit_length() + 1


def packed_accumulator_reply_size(count: int, rows: int, bits: int) -> int:
    """Payload bytes of a RUN reply with :data:`FLAG_PACKED`: the header, then ``count * rows``
    accumulators of ``bits`` bits in one LSB-first bit stream."""
    return RUN_REPLY_HEADER + packed_size(int(count) * int(rows), bits)


def accumulator_reply_size(count: int, rows: int, width: int) -> int:
    """Payload bytes of a RUN reply of ``count * rows`` accumulators of ``width`` bytes."""
    return RUN_REPLY_HEADER + int(width) * int(count) * int(rows)


def activation_reply_size(count: int, rows: int, bits: int) -> int:
    """Payload bytes of an activated RUN's reply."""
    return packed_size(int(count) * int(rows), bits)


def sum_width(sum_bits: int) -> int:
    """The widest READ_SUMS ``width`` of a core holding ``sum_bits``-bit sums: ``ceil(sum_bits / 8)``."""
    return -(-int(sum_bits) // 8)


def sum_bytes(width: int) -> int:
    """Bytes of each sum in a READ_SUMS reply of ``width``: :data:`FLOAT_SUM_BYTES` for
    :data:`SUM_FLOAT32`, else ``width``."""
    return FLOAT_SUM_BYTES if int(width) == SUM_FLOAT32 else int(width)


def sums_reply_size(count: int, width: int) -> int:
    """Payload bytes of a READ_SUMS reply of ``count`` sums at ``width`` (:func:`sum_bytes` each)."""
    return SUMS_REPLY_HEADER + sum_bytes(width) * int(count)
