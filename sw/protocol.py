r"""The host link of the training core: its description and the host's codecs,
for the testbenches, the Python core model (:mod:`sw.core_model`) and the host
driver (:mod:`sw.driver`).  Its numbers (constants, codes, flag bits, CRC
parameters, header field tables) are the contract's, :mod:`sw.contract.link`,
which the gateware imports too.

The core is a GEMM co-processor on integer codes.  The host loads a matrix
``M`` (``rows x cols`` codes) and streams vectors ``v`` (``cols`` codes each);
for every vector the core returns ``rows`` exact integers::

    out[v][r] = sum_c value(M[r, c]) * value(V[v, c])

or, with the activation stage (a layer's forward pass when the whole fan-in
fits one matrix), ``rows`` activation codes: with thresholds ``T[r][1..n_a]``
and a direction per row loaded by LOAD_THRESHOLDS (BN, clip and quantize
folded by :func:`sw.numeric.fold_thresholds`)::

    code[v][r] = #{i : out[v][r] >= T[r][i]}     (direction +1)
    code[v][r] = #{i : out[v][r] <= T[r][i]}     (direction -1)

which is :func:`sw.numeric.apply_thresholds`.

with ``value(q) = q`` (unsigned codes) or ``value(q) = 2q - n``, ``n = 2**bits - 1``
(signed odd codes: weights, gradients), chosen per side.  This is
:func:`sw.bitplanes.signed_matmul` ``(V, ., ., M, ., .)`` -- the arithmetic of
:class:`sw.intref.IntRefEngine`.  The host keeps im2col, BN, loss, optimizer
and the gradient quantizer, and tiles any GEMM to the core's limits.

Byte stream, frames
-------------------
Requests (host -> core) and replies (core -> host) have one frame format::

    byte  0      1          2     3       4       5 .. 5+LEN-1   5+LEN    6+LEN
        +------+----------+-----+-------+-------+--------------+--------+--------+
        | SYNC | CMD/STAT | TAG | LEN_L | LEN_H |   payload    | CRC_H  | CRC_L  |
        | 0xA5 |          |     |   (u16 LE)    |  LEN bytes   | (u16 BIG-endian)|
        +------+----------+-----+-------+-------+--------------+--------+--------+
                \________________ CRC covers these ________________/

* ``SYNC`` = ``0xA5``.
* byte 1: the command (:class:`Cmd`) in a request, the status (:class:`Status`)
  in a reply.
* ``TAG``: any byte chosen by the host; the reply repeats it (the driver
  counts 0, 1, 2, ... and ignores replies with another tag, i.e. stale ones).
* ``LEN``: payload length, little-endian, ``0 .. max_payload`` of the core
  (at most :data:`MAX_PAYLOAD` = 4096; PING reports the core's own).
* ``CRC``: CRC-16/CCITT-FALSE (poly ``0x1021``, init ``0xFFFF``, no
  reflection, no final xor) over bytes ``1 .. 4+LEN`` (everything after SYNC,
  before the CRC).  It is the ONE field sent most significant byte first, so
  that running the same CRC over ``CMD .. CRC_L`` gives ``0`` for a good
  frame (a receiver may check either way).  Per byte (:func:`crc16_update`)::

      crc ^= byte << 8;  repeat 8 times: crc = (crc << 1) ^ (0x1021 if crc & 0x8000 else 0)  (16 bits)

All multi-byte payload fields are little-endian.  Every request gets exactly
one reply; the host sends its next request only after the reply (lock step).

Code packing
------------
The codes of one frame form ONE dense bit stream, least significant bit
first: code ``i`` (``bits`` wide) occupies stream bits ``i*bits ..
i*bits+bits-1``, stream bit ``j`` is bit ``j % 8`` of data byte ``j // 8``.
The last byte is padded with zero bits (a core ignores padding bits).  Data
take ``ceil(count * bits / 8)`` bytes (:func:`packed_size`, :func:`pack_codes`,
:func:`unpack_codes`).  Codes are unsigned ``0 .. 2**bits - 1``; the signed
flag says how they are read.  Note that signed odd codes have no zero: a core
that pads ``cols`` up to a multiple of its SIMD width must pad the *unsigned*
code with 0 and use the true ``cols`` in its ``2q - n`` corrections (see
:func:`sw.bitplanes.signed_matmul`), never pad with a code.

Commands (request payload -> OK reply payload)
----------------------------------------------
``PING`` (0x01): empty -> :data:`PING_REPLY` (24 bytes)::

    0 version u8 (= PROTOCOL_VERSION)   1 max_bits u8 (<= 8)
    2 pe u16     4 simd u16              6 max_rows u16   8 max_cols u16
    10 max_payload u16                  12 max_act_bits u8 (0: no activation stage)
    13 baud u32 (the core's UART rate, round(clk / divisor); 0: not a UART core)
    17 sum_slots u16 (batch sums held; 0: no ACCUMULATE, READ_SUMS)   19 sum_bits u8
    20 fmap_codes u16 (feature-map codes held; 0: no LOAD_FMAP, no window flag)
    22 packed_accumulators u8 (1: RUN takes the packed flag; 0: it does not)
    23 max_pool u8 (the largest pool of a window, 1, 2 or 4; 1: no pooling)

  A host on a serial line refuses a core whose nonzero ``baud`` differs
  from its own rate by more than
  :data:`sw.contract.backends.BAUD_TOLERANCE` (2.5 %).

``RESET`` (0x02): empty -> empty.  Forgets the matrix, the thresholds and the
feature map, and zeroes the batch sums.

``LOAD_MATRIX`` (0x03): :data:`LOAD_HEADER` (12 bytes) then packed codes::

    0 rows u16   2 cols u16   4 bits u8
    5 flags u8 (bit 0: signed; bit 3: window, only if fmap_codes > 0; others 0)
    6 offset u32 (row-major index r*cols + c of this frame's first code)
    10 count u16 (codes in this frame) ;  12 data: ceil(count*bits/8) bytes
      or, with the window flag, the window header (WINDOW_HEADER, 13 bytes; no codes)

  -> ``loaded u32`` (codes of the matrix received so far).  ``offset = 0``
  starts a new matrix (the old one is forgotten); a frame with ``offset > 0``
  must continue the matrix being loaded (same rows, cols, bits, flags and
  ``offset == loaded``).  The matrix is usable by RUN once
  ``loaded == rows * cols``.  A new matrix (``offset = 0``) also forgets the
  thresholds: they belong to the rows of one matrix.  With the window flag
  (protocol 8) the core makes the whole matrix in one request (``offset =
  0``, ``count = rows * cols``) from its feature map: row ``r`` is vector
  ``r`` of the window (see Windows; ``cols`` codes each, the map's bits),
  so a map already on the core (a gradient's, loaded for backward-input's
  windows) becomes the matrix (backward-weight's) without crossing again.

``RUN`` (0x04): :data:`RUN_HEADER` (4 bytes) then packed codes::

    0 count u16 (vectors)   2 bits u8
    3 flags u8 (bit 0: signed; bit 1: activate, only if max_act_bits > 0;
                bit 3: window, only if fmap_codes > 0;
                bit 4: packed, only if packed_accumulators, not with activate; others 0)
    4 data: count*cols codes, vector after vector, ceil(count*cols*bits/8) bytes
      or, with the window flag, the window header (WINDOW_HEADER, 13 bytes; no codes)

  -> without ``activate``: :data:`RUN_REPLY_HEADER` (1 byte: ``width``)
  then ``count * rows`` accumulators of ``width`` bytes each, two's
  complement little-endian, ``out[v][r]`` at byte ``1 + width * (v * rows +
  r)``.  ``width`` is the fewest bytes (1..4) whose two's complement holds
  the product's bound ``2**(bit_length(cols) + m_bits + v_bits) - 1 >= cols
  * n_m * n_v`` (``cols`` of the loaded matrix, ``n = 2**bits - 1`` of
  either side, whatever the readings; a power of two, so a core needs an
  adder, not a multiplier): ``ceil((bit_length(cols) + m_bits + v_bits +
  1) / 8)`` (:func:`accumulator_width`): 2 bytes for a 256-column product
  of 1-bit by 2-bit codes, 1 byte at 15 columns.  int32 always suffices:
  the invariants below bound ``cols`` by ``8 * 4092 / max_bits`` (at 8 bits:
  ``4092 * 255 * 255 < 2**28``).
  With ``activate``: ``count * rows`` activation codes of the thresholds'
  ``bits`` (``A``), packed like any codes, ``code[v][r]`` being code number
  ``v * rows + r``: ``ceil(count * rows * A / 8)`` bytes.
  With ``packed`` (:data:`FLAG_PACKED`, protocol 6): the header byte is
  ``bits``, then the ``count * rows`` accumulators as ``bits``-bit two's
  complement in one bit stream packed like codes, ``out[v][r]`` being number
  ``v * rows + r``: ``ceil(count * rows * bits / 8)`` bytes.  ``bits`` is the
  fewest whose two's complement holds the product's exact bound ``cols *
  n_m * n_v``: ``bit_length(cols * n_m * n_v) + 1``
  (:func:`accumulator_bits`; the core computes it with shifts and
  subtracts): 10 bits for 144 columns of 1-bit by 2-bit codes (whole bytes:
  2), 16 for 288 columns of 1-bit by 6-bit codes (whole bytes: 3).

``LOAD_THRESHOLDS`` (0x05, only if max_act_bits > 0):
:data:`THRESHOLD_HEADER` (6 bytes) then ``count`` row records::

    0 offset u16 (first row)   2 count u16 (rows in this frame)
    4 bits u8 (activation bits A, 1..max_act_bits)   5 flags u8 (0)
    6 records: per row, 1 + 4 * n_a bytes, n_a = 2**A - 1:
        direction u8 (bit 0, DIRECTION_NEGATIVE: 1 for direction -1, 0 for +1;
                      bits 1..7 sent as 0, ignored)
        T[1] .. T[n_a] int32 little-endian

  -> ``loaded u16`` (rows with thresholds so far).  Rows ``offset .. offset
  + count - 1`` of the loaded matrix get their thresholds; ``offset = 0``
  starts a new set, ``offset > 0`` must continue it (same ``bits``,
  ``offset == loaded``).  RUN may activate once ``loaded == rows``.
  Thresholds compare as full int32 (``acc >= T``), so any int32 is allowed;
  :func:`sw.numeric.fold_thresholds` gives values in ``acc_min - 1 .. acc_max + 1``.

``ACCUMULATE`` (0x06, only if sum_slots > 0): :data:`ACCUMULATE_HEADER`
(11 bytes) then packed vector codes, as RUN's::

    0 count u16 (vectors)   2 bits u8
    3 flags u8 (bit 0: signed; bit 2: first; bit 3: window, only if fmap_codes > 0; others 0)
    4 slot u16 (the sum of out[0][0])   6 mantissa u32 (M, < 2**24)   10 shift u8
    11 data: count*cols codes, ceil(count*cols*bits/8) bytes
       or, with the window flag, the window header (13 bytes; no codes)

  -> empty.  The batch sum of weight gradients (:mod:`sw.contract.gradients`):
  the products ``out[v][r]`` of the vectors with the loaded matrix, as RUN
  makes them, are one sample's partial sums ``I``, scaled by its gradient
  scale ``m = M * 2**e`` (``shift = E - e``, ``E`` the batch's largest
  exponent) and added into the core's sums::

      sum[slot + v*rows + r] (+)= floor(M * out[v][r] * 2**(GUARD_BITS - shift))

  (``aligned_term``; ``first`` writes instead of adding: the batch's first
  sample).  Sums are ``sum_bits``-bit two's complement; the host keeps them
  in range (``sum_bits(batch, bound)`` of the contract).  They are 0 after
  a reset of the core and after RESET.

``READ_SUMS`` (0x07, only if sum_slots > 0): :data:`READ_SUMS_HEADER` (5 bytes)::

    0 slot u16   2 count u16   4 width u8 (0: SUM_FLOAT32, or 1 .. ceil(sum_bits / 8))

  -> :data:`SUMS_REPLY_HEADER` (1 byte: ``width``) then sums ``slot ..
  slot + count - 1``.  Width 1 .. ceil(sum_bits / 8): each sum as its low
  ``width`` bytes (two's complement, little-endian; a narrower ``width``
  truncates).  Width 0 (:data:`SUM_FLOAT32`): each sum as the 4-byte
  little-endian IEEE binary32 pattern of ``truncate_sum(S)`` (``S``
  truncated toward zero to 24 significant bits,
  :func:`sw.contract.gradients.sum_float_bits`; 0 for 0), all the gradient
  needs (:mod:`sw.contract.gradients`): the host reads its sums so.

``LOAD_FMAP`` (0x08, only if fmap_codes > 0): :data:`LOAD_FMAP_HEADER`
(9 bytes) then packed codes::

    0 channels u16   2 height u8   3 width u8   4 bits u8 (1..max_bits)
    5 offset u16 (index (c*height + y)*width + x of this frame's first code)
    7 count u16 (codes in this frame) ;  9 data: ceil(count*bits/8) bytes

  -> ``loaded u32`` (codes of the map received so far), as LOAD_MATRIX.
  The core's one feature map (:class:`FmapShape`): ``channels x height x
  width`` codes, channel-major then row-major, at most ``fmap_codes`` of
  them.  ``offset = 0`` starts a new map (the old one is forgotten); a frame
  with ``offset > 0`` must continue the map being loaded (same channels,
  height, width and bits, ``offset == loaded``).  The map is complete, and
  usable by windows, once ``loaded == channels * height * width``.
  LOAD_MATRIX and LOAD_THRESHOLDS leave it alone; RESET forgets it.

Windows (RUN, ACCUMULATE, LOAD_MATRIX with the window flag): the window header
(:data:`WINDOW_FIELDS`, :class:`Window`)::

    0 kernel u8 (1..16)   1 stride u8 (1..4)   2 pad u8 (0..kernel-1)
    3 order u8 (PATCH 0, SHIFT 1)   4 out_width u16 (>= 1)
    6 channel u16   8 y u16   10 x u16 (the first vector's; see below)
    12 pool u8 (1; PATCH on an activated RUN: 2 or 4 up to max_pool)

  replaces the codes: the core makes the ``count`` vectors of ``cols`` codes
  (``cols`` of the loaded matrix; LOAD_MATRIX: its ``rows`` vectors of its
  ``cols``) from the complete feature map, code ``j``
  of vector ``v`` being ``map[idx]`` if ``inside`` else 0, with ``idx,
  inside = window_index(shape, window, v, j)`` (:mod:`sw.contract.window`,
  the one definition): PATCH makes a convolution's patches (vector = output
  position ``y * out_width + x + v``, codes = channels ``channel + j //
  kernel**2`` under the kernel's taps), SHIFT the taps' shifted maps (vector
  = tap ``(channel * kernel + y) * kernel + x + v``, code ``j`` = output
  position ``j``).  The map's ``bits`` must be the request's.  Everything
  else (products, activation, reply, sums) is as with the same vectors sent
  as codes, but for pooling: a PATCH window with ``pool = p > 1`` makes its
  positions pooling window by pooling window (``p x p`` each, ``y``, ``x``
  and ``out_width`` multiples of ``p``) and an activated RUN through it
  replies, per row, the max of each window's ``p**2`` codes: ``count //
  p**2`` vectors of codes (``count`` a multiple of ``p**2``).  Its reply
  size check (REPLY_TOO_BIG) counts the ``count`` vectors before pooling.

Errors: status != OK, payload = 2 bytes ``[command byte as received, detail]``
(:class:`Detail`).  A request answered with an error has NO effect on the
core's state.  Checks, in this order (the first failing one answers):

1. receiver: ``LEN > max_payload`` -> BAD_LENGTH, sent right after the
   header; the payload is not consumed (the receiver hunts for SYNC again).
2. receiver: CRC mismatch -> BAD_CRC.  3. unknown command -> BAD_COMMAND.
   A core without an activation stage (``max_act_bits = 0``) does not know
   LOAD_THRESHOLDS.
4. PING, RESET: ``LEN != 0`` -> BAD_LENGTH.
5. LOAD_MATRIX: ``LEN < 12`` -> BAD_LENGTH; bits not in ``1..max_bits`` ->
   BAD_PARAMS/BITS; flags other than signed and (with a feature map) window
   -> BAD_PARAMS/FLAGS; rows not in ``1..max_rows`` -> BAD_PARAMS/ROWS; cols
   not in ``1..max_cols`` -> BAD_PARAMS/COLS; ``count == 0`` or ``offset +
   count > rows*cols``, or with the window flag ``offset != 0`` or ``count !=
   rows*cols`` -> BAD_PARAMS/COUNT; ``LEN != 12 + (13 with the window flag,
   else ceil(count*bits/8))`` -> BAD_LENGTH; ``offset > 0`` not continuing
   the matrix being loaded -> BAD_STATE/SEQUENCE; then, with the window flag,
   RUN's three window checks (NO_FMAP, BITS, WINDOW; a pooled window is a bad
   WINDOW) in RUN's order.
6. RUN: ``LEN < 4`` -> BAD_LENGTH; no complete matrix -> BAD_STATE/NO_MATRIX;
   bits -> BAD_PARAMS/BITS; flags (activate on a core without the stage,
   packed on a core that does not pack, packed with activate included) ->
   BAD_PARAMS/FLAGS; activate without thresholds for every row
   of the matrix -> BAD_STATE/NO_THRESHOLDS; ``count == 0`` ->
   BAD_PARAMS/COUNT; reply size (``1 + width*count*rows``, activated
   ``ceil(count*rows*A/8)``, packed ``1 + ceil(count*rows*bits/8)``)
   ``> max_payload`` -> BAD_PARAMS/REPLY_TOO_BIG;
   ``LEN != 4 + (13 with the window flag, else ceil(count*cols*bits/8))`` ->
   BAD_LENGTH; then, with the window flag only (a core without a feature map
   refuses the flag as BAD_PARAMS/FLAGS): no complete feature map ->
   BAD_STATE/NO_FMAP; bits != the map's bits -> BAD_PARAMS/BITS; a window
   field out of range (:meth:`Window.problems` on the map's shape: kernel,
   stride, pad, order, out_width, ``channel < channels``, the first vector's
   ``x < out_width``, for SHIFT ``y, x < kernel``, ``pool`` in ``1, 2, 4``
   up to ``max_pool``, a pooled window PATCH with ``y``, ``x`` and
   ``out_width`` multiples of ``pool``) or, pooled, a RUN not activated or
   ``count`` not a multiple of ``pool**2`` (:meth:`Window.pool_problems`) ->
   BAD_PARAMS/WINDOW.
7. LOAD_THRESHOLDS: ``LEN < 6`` -> BAD_LENGTH; no complete matrix ->
   BAD_STATE/NO_MATRIX; bits not in ``1..max_act_bits`` -> BAD_PARAMS/BITS;
   flags != 0 -> BAD_PARAMS/FLAGS; ``count == 0`` or ``offset + count >
   rows`` -> BAD_PARAMS/COUNT; ``LEN != 6 + count * (1 + 4 * n_a)`` ->
   BAD_LENGTH; ``offset > 0`` not continuing the set being loaded ->
   BAD_STATE/SEQUENCE.
8. ACCUMULATE (a core with sums; else BAD_COMMAND): ``LEN < 11`` ->
   BAD_LENGTH; no complete matrix -> BAD_STATE/NO_MATRIX; bits ->
   BAD_PARAMS/BITS; flags other than signed, first and (with a feature map)
   window -> BAD_PARAMS/FLAGS; ``mantissa >= 2**24`` -> BAD_PARAMS/SCALE;
   ``count == 0`` or ``slot + count*rows > sum_slots`` -> BAD_PARAMS/COUNT;
   ``LEN != 11 + (13 with the window flag, else ceil(count*cols*bits/8))``
   -> BAD_LENGTH; then, with the window flag, RUN's three window checks
   (NO_FMAP, BITS, WINDOW) in RUN's order (a pooled window: WINDOW).
9. READ_SUMS (a core with sums; else BAD_COMMAND): ``LEN != 5`` ->
   BAD_LENGTH; width not 0 nor in ``1..ceil(sum_bits/8)`` -> BAD_PARAMS/WIDTH;
   ``count == 0`` or ``slot + count > sum_slots`` -> BAD_PARAMS/COUNT; reply
   size ``1 + bytes*count > max_payload`` (``bytes`` 4 for width 0, else
   ``width``: :func:`sum_bytes`) -> BAD_PARAMS/REPLY_TOO_BIG.
10. LOAD_FMAP (a core with a feature map; else BAD_COMMAND): ``LEN < 9`` ->
    BAD_LENGTH; bits not in ``1..max_bits`` -> BAD_PARAMS/BITS; a zero
    dimension or ``channels*height*width > fmap_codes``
    (:meth:`FmapShape.problems`) -> BAD_PARAMS/SHAPE; ``count == 0`` or
    ``offset + count > channels*height*width`` -> BAD_PARAMS/COUNT; ``LEN !=
    9 + ceil(count*bits/8)`` -> BAD_LENGTH; ``offset > 0`` not continuing the
    map being loaded -> BAD_STATE/SEQUENCE.

Receiver (core side, :class:`FrameDecoder` with ``backtrack=False``)
-------------------------------------------------------------------
Hunt: drop bytes until SYNC.  Then take CMD, TAG, LEN_L, LEN_H; if ``LEN >
max_payload`` answer BAD_LENGTH and hunt from the next byte; else take LEN
payload bytes and 2 CRC bytes, answer, hunt from the next byte.  No
backtracking: an error never re-reads bytes already taken.  A core drops a
partial frame silently when no byte arrives for :data:`RX_IDLE_TIMEOUT_S`
(nominal 0.1 s; anything in 0.01 .. 0.5 s) so that a truncated request
cannot wedge it; a host that gave up on a reply waits
:data:`HOST_RECOVERY_S` before its next request.  The host's reply decoder
(``backtrack=True``) re-scans from the byte after a bad frame's SYNC.

Core invariants (checked by the driver on PING): one vector and its reply
always fit in a frame: ``max_payload >= RUN_HEADER + ceil(max_cols*max_bits/8)``,
``max_payload >= 1 + 4 * max_rows`` and ``max_payload >= LOAD_HEADER + 1``;
with a feature map, a windowed ACCUMULATE fits (``max_payload >= 24``)
(:meth:`sw.contract.core.CoreConfig.problems`).

Host-side exceptions: :class:`ProtocolError` > :class:`LinkError` (the link
is dead or absent; also a ``ConnectionError``) > :class:`LinkTimeout` (no
reply in time); :class:`CoreError` (the core answered a status other than OK;
``.status``, ``.detail``, ``.command``); :class:`FramingError` (a reply that
is not a valid answer).
"""

from __future__ import annotations

import binascii
import enum
from dataclasses import dataclass

import numpy as np

from .contract.codes import MAX_CODE_BITS, levels
from .contract.core import CoreInfo
from .contract.gradients import sum_float_bits, sum_from_float_bits
from .contract.link import (ACC_BYTES, ACCUMULATE_FIELDS, ACCUMULATE_HEADER, CRC_INIT, CRC_POLY, CRC_SIZE,
                            CRC_WIDTH, DIRECTION_NEGATIVE, ERROR_FIELDS, ERROR_PAYLOAD, FLAG_ACTIVATE, FLAG_FIRST,
                            FLAG_PACKED, FLAG_SIGNED, FLAG_WINDOW, FRAME_FIELDS, HEADER_SIZE, HOST_RECOVERY_S, LOAD_FIELDS,
                            LOAD_FMAP_FIELDS, LOAD_FMAP_HEADER, LOAD_HEADER, MAX_FMAP_CODES, MAX_PAYLOAD, MAX_SHIFT,
                            OVERHEAD, PING_REPLY, PROTOCOL_VERSION, READ_SUMS_FIELDS, READ_SUMS_HEADER, RUN_FIELDS,
                            RUN_HEADER, RUN_REPLY_FIELDS, RUN_REPLY_HEADER, RX_IDLE_TIMEOUT_S, SUMS_REPLY_FIELDS,
                            SUMS_REPLY_HEADER, SYNC, THRESHOLD_BYTES, THRESHOLD_FIELDS, THRESHOLD_HEADER,
                            WINDOW_FIELDS, WINDOW_HEADER, Cmd, Detail, Status, accumulator_bound,
                            accumulator_bits, accumulator_reply_size, accumulator_width, activation_reply_size,
                            packed_accumulator_reply_size, packed_size, sum_bytes,
                            sum_width, sums_reply_size, threshold_record_size, SUM_FLOAT32, FLOAT_SUM_BYTES)
from .contract.window import MAX_KERNEL, MAX_SIDE, MAX_STRIDE, ORDERS, PATCH, SHIFT, FmapShape, Window, window_index

__all__ = [
    "PROTOCOL_VERSION", "SYNC", "HEADER_SIZE", "CRC_SIZE", "OVERHEAD", "MAX_PAYLOAD", "MAX_CODE_BITS",
    "ACC_BYTES", "RX_IDLE_TIMEOUT_S", "HOST_RECOVERY_S", "LOAD_HEADER", "RUN_HEADER", "RUN_REPLY_HEADER",
    "PING_REPLY",
    "ERROR_PAYLOAD", "FLAG_SIGNED", "FLAG_ACTIVATE", "FLAG_FIRST", "THRESHOLD_HEADER", "ACCUMULATE_HEADER",
    "READ_SUMS_HEADER", "SUMS_REPLY_HEADER", "MAX_SHIFT", "THRESHOLD_BYTES", "DIRECTION_NEGATIVE",
    "Cmd", "Status", "Detail", "command_name",
    "ProtocolError", "LinkError", "LinkTimeout", "CoreError", "FramingError",
    "crc16_update", "crc16", "encode_frame", "Frame", "FrameError", "FrameDecoder",
    "packed_size", "pack_codes", "unpack_codes",
    "CoreInfo", "check_core_info", "LoadMatrix", "Run", "LoadThresholds", "check_directions",
    "encode_ping_reply", "decode_ping_reply", "encode_load_matrix", "decode_load_matrix_header",
    "encode_run", "decode_run_header", "accumulator_bound", "accumulator_width", "accumulator_reply_size",
    "encode_accumulators", "decode_accumulators", "FLAG_PACKED", "accumulator_bits",
    "packed_accumulator_reply_size", "encode_packed_accumulators", "decode_packed_accumulators",
    "threshold_record_size", "encode_load_thresholds", "decode_load_thresholds_header",
    "activation_reply_size", "decode_activations",
    "Accumulate", "encode_accumulate", "decode_accumulate_header", "ReadSums", "encode_read_sums",
    "decode_read_sums", "sum_width", "sum_bytes", "sums_reply_size", "encode_sums", "decode_sums",
    "SUM_FLOAT32", "FLOAT_SUM_BYTES",
    "encode_error", "decode_error",
    "FLAG_WINDOW", "LOAD_FMAP_HEADER", "WINDOW_HEADER", "MAX_FMAP_CODES", "PATCH", "SHIFT", "ORDERS", "MAX_KERNEL",
    "MAX_STRIDE", "MAX_SIDE", "FmapShape", "Window", "window_index", "LoadFmap", "encode_load_fmap",
    "decode_load_fmap_header", "encode_window", "decode_window", "encode_run_window", "encode_load_matrix_window", "encode_accumulate_window",
]

# The constants, enums, sizes and header field tables are the contract's
# (:mod:`sw.contract.link`), re-exported here; the codecs below are built
# from its field tables.
_CRC_TOP = 1 << (CRC_WIDTH - 1)
_CRC_MASK = (1 << CRC_WIDTH) - 1


# --------------------------------------------------------------------------- exceptions

class ProtocolError(Exception):
    """Anything that went wrong talking to the core."""


class LinkError(ProtocolError, ConnectionError):
    """The link is absent or dead (device missing, closed, I/O error)."""


class LinkTimeout(LinkError, TimeoutError):
    """No (complete, matching) reply within the timeout."""


class FramingError(ProtocolError):
    """A reply arrived but is not a valid answer (bad CRC, wrong length)."""


class CoreError(ProtocolError):
    """The core answered with a status other than OK."""

    #: What an error most likely means, for the message.
    HINTS = {
        "BAD_CRC": "the request was corrupted on the link",
        "BAD_COMMAND": "the core does not know this command (protocol version mismatch?)",
        "NO_MATRIX": "the core holds no complete matrix: was it reset since LOAD_MATRIX?",
        "NO_THRESHOLDS": "the core holds no thresholds for every row of its matrix: "
                         "LOAD_THRESHOLDS after each LOAD_MATRIX",
        "NO_FMAP": "the core holds no complete feature map: was it reset since LOAD_FMAP?",
    }

    def __init__(self, status: int, command: int, detail: int = 0, message: str | None = None):
        self.status = _enum_or_int(Status, status)
        self.command = _enum_or_int(Cmd, command)
        self.detail = _enum_or_int(Detail, detail)
        hint = self.HINTS.get(_name(self.detail) if self.detail != 0 else _name(self.status))
        super().__init__(message or f"core answered {_name(self.status)} to {_name(self.command)}"
                                    f"{'' if self.detail == 0 else f' ({_name(self.detail)})'}"
                                    f"{f': {hint}' if hint else ''}")


def _enum_or_int(kind, value):
    try:
        return kind(value)
    except ValueError:
        return int(value)


def _name(value) -> str:
    return value.name if isinstance(value, enum.Enum) else f"0x{int(value):02x}"


def command_name(command: int) -> str:
    """``LOAD_MATRIX`` for a known command byte, ``0x7e`` for another (messages)."""
    return _name(_enum_or_int(Cmd, command))


# --------------------------------------------------------------------------- CRC and frames

def crc16_update(crc: int, byte: int) -> int:
    """One byte of CRC-16/CCITT-FALSE, bit by bit (the hardware's loop)."""
    crc ^= (byte & 0xFF) << (CRC_WIDTH - 8)
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLY) if crc & _CRC_TOP else (crc << 1)
        crc &= _CRC_MASK
    return crc


def crc16(data, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``): ``binascii``'s
    CRC-CCITT is this polynomial, unreflected, without a final xor (tested against the
    contract's parameters)."""
    return binascii.crc_hqx(bytes(data), crc)


def encode_frame(code: int, payload=b"", tag: int = 0) -> bytes:
    """``SYNC code tag LEN payload CRC`` (``code`` is a command or a status)."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the protocol's {MAX_PAYLOAD}")
    if not 0 <= int(code) <= 0xFF or not 0 <= int(tag) <= 0xFF:
        raise ValueError(f"code and tag are bytes, got code={code!r}, tag={tag!r}")
    frame = FRAME_FIELDS.pack(SYNC, int(code), int(tag), len(payload)) + payload
    return frame + crc16(frame[1:]).to_bytes(CRC_SIZE, "big")


@dataclass(frozen=True)
class Frame:
    """A frame with a good CRC and an acceptable length."""
    code: int
    tag: int
    payload: bytes


@dataclass(frozen=True)
class FrameError:
    """A frame the receiver rejected: ``status`` is BAD_LENGTH or BAD_CRC;
    ``code`` and ``tag`` are bytes 1 and 2 as received."""
    status: Status
    code: int
    tag: int
    length: int


class FrameDecoder:
    """Incremental frame receiver: :meth:`feed` bytes, get :class:`Frame` and
    :class:`FrameError` events in order.

    ``backtrack=False`` is the core's receiver (module docstring): after an
    error it hunts from the next byte.  ``backtrack=True`` (host) re-scans
    from the byte after the bad frame's SYNC, so a frame hidden behind
    garbage that contained a SYNC byte is still found.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD, *, backtrack: bool = False):
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be in 0..{MAX_PAYLOAD}, got {max_payload}")
        self.max_payload = int(max_payload)
        self.backtrack = bool(backtrack)
        self._buf = bytearray()
        self.dropped = 0  # bytes skipped while hunting for SYNC

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete (0 when hunting)."""
        return len(self._buf)

    def reset(self) -> None:
        """Drop a partial frame (idle timeout)."""
        self._buf.clear()

    def feed(self, data) -> list:
        self._buf += bytes(data)
        events = []
        buf = self._buf
        while True:
            start = buf.find(SYNC)
            if start < 0:
                self.dropped += len(buf)
                buf.clear()
                break
            if start:
                self.dropped += start
                del buf[:start]
            if len(buf) < HEADER_SIZE:
                break
            _, code, tag, length = FRAME_FIELDS.unpack(buf)
            if length > self.max_payload:
                events.append(FrameError(Status.BAD_LENGTH, code, tag, length))
                del buf[:1 if self.backtrack else HEADER_SIZE]
                continue
            end = HEADER_SIZE + length + CRC_SIZE
            if len(buf) < end:
                break
            if crc16(buf[1:end]) != 0:
                events.append(FrameError(Status.BAD_CRC, code, tag, length))
                del buf[:1 if self.backtrack else end]
                continue
            events.append(Frame(code, tag, bytes(buf[HEADER_SIZE:HEADER_SIZE + length])))
            del buf[:end]
        return events


# --------------------------------------------------------------------------- code packing

def _check_code_bits(bits) -> int:
    if isinstance(bits, bool) or int(bits) != bits or not 1 <= int(bits) <= MAX_CODE_BITS:
        raise ValueError(f"code bits must be 1..{MAX_CODE_BITS}, got {bits!r}")
    return int(bits)


def pack_codes(codes, bits: int) -> bytes:
    """Pack unsigned codes (any shape, row-major) into one LSB-first bit stream."""
    bits = _check_code_bits(bits)
    codes = np.asarray(codes)
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
    codes = codes.astype(np.int64).ravel()
    if codes.size and (codes.min() < 0 or codes.max() >> bits):
        raise ValueError(f"codes must be in [0, {(1 << bits) - 1}] for {bits} bits")
    stream = ((codes[:, None] >> np.arange(bits)) & 1).astype(np.uint8).ravel()
    return np.packbits(stream, bitorder="little").tobytes()


def unpack_codes(data, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``count`` codes (int64) from ``data``."""
    bits = _check_code_bits(bits)
    need = packed_size(count, bits)
    if len(data) < need:
        raise ValueError(f"{count} codes of {bits} bits need {need} bytes, got {len(data)}")
    stream = np.unpackbits(np.frombuffer(bytes(data[:need]), dtype=np.uint8), bitorder="little")
    planes = stream[:count * bits].reshape(count, bits).astype(np.int64)
    return (planes << np.arange(bits)).sum(axis=1)


# --------------------------------------------------------------------------- payloads

def _flags(signed: bool) -> int:
    return FLAG_SIGNED if signed else 0


def check_core_info(info: CoreInfo) -> None:
    """Raise :class:`FramingError` if a core's PING breaks the protocol
    (:meth:`sw.contract.core.CoreInfo.problems`)."""
    problems = info.problems()
    if problems:
        raise FramingError("core capabilities break the protocol: " + "; ".join(problems))


def encode_ping_reply(info: CoreInfo) -> bytes:
    return info.pack()


#: PING reply sizes of older protocol versions -> a hint for the error.
_OLD_PING_SIZES = {12: " (a protocol version 1 core?)", 13: " (a protocol version 2 core?)",
                   17: " (a protocol version 3 core?)", 20: " (a protocol version 4 core?)",
                   22: " (a protocol version 5 core?)", 23: " (a protocol version 6 core?)"}


def decode_ping_reply(payload: bytes) -> CoreInfo:
    if len(payload) != PING_REPLY:
        raise FramingError(f"PING reply has {len(payload)} payload bytes, expected {PING_REPLY}"
                           f"{_OLD_PING_SIZES.get(len(payload), '')}")
    return CoreInfo.unpack(payload)


@dataclass(frozen=True)
class LoadMatrix:
    """A LOAD_MATRIX header (``data`` = the packed codes that follow it)."""
    rows: int
    cols: int
    bits: int
    flags: int
    offset: int
    count: int
    data: bytes

    @property
    def signed(self) -> bool:
        return bool(self.flags & FLAG_SIGNED)

    @property
    def window(self) -> Window | None:
        """The window (:func:`decode_window`) with :data:`FLAG_WINDOW` and at least
        :data:`WINDOW_HEADER` bytes of data, else ``None`` (the data are packed codes)."""
        return _window_of(self.flags, self.data)


def encode_load_matrix(rows: int, cols: int, bits: int, signed: bool, offset: int, codes) -> bytes:
    """LOAD_MATRIX payload carrying ``codes`` (flat, row-major) from ``offset``."""
    codes = np.asarray(codes).ravel()
    return LOAD_FIELDS.pack(rows, cols, bits, _flags(signed), offset, codes.size) + pack_codes(codes, bits)


def decode_load_matrix_header(payload: bytes) -> LoadMatrix:
    """Fields of a LOAD_MATRIX payload (``len(payload) >= LOAD_HEADER``); no validation."""
    rows, cols, bits, flags, offset, count = LOAD_FIELDS.unpack(payload)
    return LoadMatrix(rows, cols, bits, flags, offset, count, bytes(payload[LOAD_HEADER:]))


@dataclass(frozen=True)
class Run:
    """A RUN header (``data`` = the packed vector codes that follow it)."""
    count: int
    bits: int
    flags: int
    data: bytes

    @property
    def signed(self) -> bool:
        return bool(self.flags & FLAG_SIGNED)

    @property
    def activate(self) -> bool:
        return bool(self.flags & FLAG_ACTIVATE)

    @property
    def packed(self) -> bool:
        return bool(self.flags & FLAG_PACKED)

    @property
    def window(self) -> Window | None:
        """The window (:func:`decode_window`) with :data:`FLAG_WINDOW` and at least
        :data:`WINDOW_HEADER` bytes of data, else ``None`` (the data are packed codes)."""
        return _window_of(self.flags, self.data)


def _run_flags(signed: bool, activate: bool, packed: bool) -> int:
    return _flags(signed) | (FLAG_ACTIVATE if activate else 0) | (FLAG_PACKED if packed else 0)


def encode_run(bits: int, signed: bool, vectors, *, activate: bool = False, packed: bool = False) -> bytes:
    """RUN payload for ``vectors`` (``(count, cols)`` codes); ``activate``: reply codes;
    ``packed``: reply accumulators bit-packed (:data:`FLAG_PACKED`)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (count, cols), got shape {vectors.shape}")
    flags = _run_flags(signed, activate, packed)
    return RUN_FIELDS.pack(vectors.shape[0], bits, flags) + pack_codes(vectors, bits)


def decode_run_header(payload: bytes) -> Run:
    """Fields of a RUN payload (``len(payload) >= RUN_HEADER``); no validation."""
    count, bits, flags = RUN_FIELDS.unpack(payload)
    return Run(count, bits, flags, bytes(payload[RUN_HEADER:]))


def encode_accumulators(out, width: int) -> bytes:
    """RUN reply payload: the width byte, then ``out`` (``(count, rows)`` integers) as
    ``width``-byte two's complement little-endian."""
    out = np.asarray(out, dtype=np.int64)
    if not 1 <= width <= ACC_BYTES:
        raise ValueError(f"accumulator width must be 1..{ACC_BYTES} bytes, got {width}")
    if out.size and (out.min() < -(1 << (8 * width - 1)) or out.max() >= 1 << (8 * width - 1)):
        raise OverflowError(f"accumulator outside {width}-byte two's complement")
    data = out.astype("<i8").reshape(-1, 1).view(np.uint8)[:, :width] if out.size else np.zeros((0, width))
    return RUN_REPLY_FIELDS.pack(width) + np.ascontiguousarray(data, dtype=np.uint8).tobytes()


def encode_packed_accumulators(out, bits: int) -> bytes:
    """RUN reply payload with :data:`FLAG_PACKED`: the header (``bits``), then ``out``
    (``(count, rows)`` integers) as ``bits``-bit two's complement in one LSB-first bit
    stream (:func:`pack_codes`'s order), the last byte's spare bits 0."""
    out = np.asarray(out, dtype=np.int64).ravel()
    if not 1 <= bits <= 8 * ACC_BYTES:
        raise ValueError(f"accumulator bits must be 1..{8 * ACC_BYTES}, got {bits}")
    if out.size and (out.min() < -(1 << (bits - 1)) or out.max() >= 1 << (bits - 1)):
        raise OverflowError(f"accumulator outside {bits}-bit two's complement")
    stream = ((out[:, None] >> np.arange(bits)) & 1).astype(np.uint8).ravel()
    return RUN_REPLY_FIELDS.pack(bits) + np.packbits(stream, bitorder="little").tobytes()


def decode_packed_accumulators(payload: bytes, count: int, rows: int, bits: int) -> np.ndarray:
    """``(count, rows)`` int64 from a RUN reply payload with :data:`FLAG_PACKED` whose
    accumulators must be ``bits`` bits (:func:`accumulator_bits` of the product)."""
    got = RUN_REPLY_FIELDS.unpack(payload)[0] if len(payload) >= RUN_REPLY_HEADER else None
    if got != bits:
        raise FramingError(f"RUN reply states {got}-bit packed accumulators, expected {bits}")
    size = packed_accumulator_reply_size(count, rows, bits)
    if len(payload) != size:
        raise FramingError(f"RUN reply has {len(payload)} payload bytes, expected {size}")
    n = count * rows
    stream = np.unpackbits(np.frombuffer(bytes(payload[RUN_REPLY_HEADER:]), dtype=np.uint8), bitorder="little")
    planes = stream[:n * bits].reshape(n, bits).astype(np.int64)
    values = (planes << np.arange(bits)).sum(axis=1)
    values -= (values >> (bits - 1) & 1) << bits  # two's complement
    return values.reshape(count, rows)


def decode_accumulators(payload: bytes, count: int, rows: int, width: int) -> np.ndarray:
    """``(count, rows)`` int64 from a RUN reply payload whose accumulators must be
    ``width`` bytes (:func:`accumulator_width` of the product)."""
    if len(payload) < RUN_REPLY_HEADER or RUN_REPLY_FIELDS.unpack(payload)[0] != width:
        got = RUN_REPLY_FIELDS.unpack(payload)[0] if len(payload) >= RUN_REPLY_HEADER else None
        raise FramingError(f"RUN reply states {got}-byte accumulators, expected {width}")
    size = accumulator_reply_size(count, rows, width)
    if len(payload) != size:
        raise FramingError(f"RUN reply has {len(payload)} payload bytes, expected "
                           f"{size} (1 + {count} vectors x {rows} rows x {width} bytes)")
    data = np.frombuffer(payload, dtype=np.uint8, offset=RUN_REPLY_HEADER).reshape(-1, width).astype(np.int64)
    values = sum(data[:, i] << (8 * i) for i in range(width))
    sign = np.int64(1) << (8 * width - 1)
    return ((values ^ sign) - sign).reshape(count, rows)


@dataclass(frozen=True)
class LoadThresholds:
    """A LOAD_THRESHOLDS header (``data`` = the row records that follow it)."""
    offset: int
    count: int
    bits: int
    flags: int
    data: bytes

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(thresholds (count, n_a) int64, direction (count,) int64 of +1 / -1)`` of
        the records (``data`` must hold ``count`` whole records)."""
        n = levels(self.bits)
        size = threshold_record_size(self.bits)
        records = np.frombuffer(self.data[:self.count * size], dtype=np.uint8).reshape(self.count, size)
        direction = np.where(records[:, 0] & DIRECTION_NEGATIVE, -1, 1).astype(np.int64)
        thresholds = np.ascontiguousarray(records[:, 1:]).view("<i4").reshape(self.count, n).astype(np.int64)
        return thresholds, direction


def check_directions(direction) -> np.ndarray:
    """``direction`` flattened to int64, each +1 (code counts ``acc >= T``) or -1
    (``acc <= T``); anything else (bools included) raises ``ValueError``."""
    direction = np.asarray(direction).ravel()
    if direction.size and (not np.issubdtype(direction.dtype, np.integer) or not np.isin(direction, (-1, 1)).all()):
        raise ValueError("directions must be +1 (code counts acc >= T) or -1 (acc <= T)")
    return direction.astype(np.int64)


def encode_load_thresholds(offset: int, bits: int, thresholds, direction) -> bytes:
    """LOAD_THRESHOLDS payload for rows ``offset ..``: ``thresholds`` (count, 2**bits - 1)
    int32 values, ``direction`` (count,) of +1 (code counts ``acc >= T``) or -1
    (``acc <= T``), sent as the record's :data:`DIRECTION_NEGATIVE` bit."""
    bits = _check_code_bits(bits)
    thresholds = np.asarray(thresholds)
    direction = check_directions(direction)
    n = levels(bits)
    if thresholds.ndim != 2 or thresholds.shape[1] != n or thresholds.shape[0] != direction.size:
        raise ValueError(f"thresholds must be (rows, {n}) for {bits} activation bits with one direction "
                         f"per row, got {thresholds.shape} and {direction.size} directions")
    if thresholds.size and (thresholds.min() < -(1 << 31) or thresholds.max() >= 1 << 31):
        raise OverflowError("threshold outside int32")
    records = np.empty((direction.size, threshold_record_size(bits)), dtype=np.uint8)
    records[:, 0] = np.where(direction < 0, DIRECTION_NEGATIVE, 0)
    records[:, 1:] = thresholds.astype("<i4").view(np.uint8).reshape(direction.size, -1)
    return THRESHOLD_FIELDS.pack(offset, direction.size, bits, 0) + records.tobytes()


def decode_load_thresholds_header(payload: bytes) -> LoadThresholds:
    """Fields of a LOAD_THRESHOLDS payload (``len(payload) >= THRESHOLD_HEADER``); no validation."""
    offset, count, bits, flags = THRESHOLD_FIELDS.unpack(payload)
    return LoadThresholds(offset, count, bits, flags, bytes(payload[THRESHOLD_HEADER:]))


def decode_activations(payload: bytes, count: int, rows: int, bits: int) -> np.ndarray:
    """``(count, rows)`` int64 codes from an activated RUN's reply payload."""
    want = activation_reply_size(count, rows, bits)
    if len(payload) != want:
        raise FramingError(f"activated RUN reply has {len(payload)} payload bytes, expected {want} "
                           f"({count} vectors x {rows} rows x {bits}-bit codes)")
    return unpack_codes(payload, bits, count * rows).reshape(count, rows)


@dataclass(frozen=True)
class Accumulate:
    """An ACCUMULATE header (``data`` = the packed vector codes that follow it)."""
    count: int
    bits: int
    flags: int
    slot: int
    mantissa: int
    shift: int
    data: bytes

    @property
    def signed(self) -> bool:
        return bool(self.flags & FLAG_SIGNED)

    @property
    def first(self) -> bool:
        return bool(self.flags & FLAG_FIRST)

    @property
    def window(self) -> Window | None:
        """The window (:func:`decode_window`) with :data:`FLAG_WINDOW` and at least
        :data:`WINDOW_HEADER` bytes of data, else ``None`` (the data are packed codes)."""
        return _window_of(self.flags, self.data)


def encode_accumulate(bits: int, signed: bool, vectors, *, slot: int, mantissa: int, shift: int,
                      first: bool) -> bytes:
    """ACCUMULATE payload for ``vectors`` (``(count, cols)`` codes): one sample's products
    into the sums from ``slot``, scaled by ``mantissa`` and ``shift``; ``first`` writes them."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (count, cols), got shape {vectors.shape}")
    flags = _flags(signed) | (FLAG_FIRST if first else 0)
    return (ACCUMULATE_FIELDS.pack(vectors.shape[0], bits, flags, slot, mantissa, shift)
            + pack_codes(vectors, bits))


def decode_accumulate_header(payload: bytes) -> Accumulate:
    """Fields of an ACCUMULATE payload (``len(payload) >= ACCUMULATE_HEADER``); no validation."""
    return Accumulate(*ACCUMULATE_FIELDS.unpack(payload), bytes(payload[ACCUMULATE_HEADER:]))


# --------------------------------------------------------------------------- feature maps, windows

@dataclass(frozen=True)
class LoadFmap:
    """A LOAD_FMAP header (``data`` = the packed codes that follow it)."""
    channels: int
    height: int
    width: int
    bits: int
    offset: int
    count: int
    data: bytes

    @property
    def shape(self) -> FmapShape:
        return FmapShape(self.channels, self.height, self.width)


def _check_fields(header, values) -> None:
    """``ValueError`` unless each of ``values`` fits its (unsigned) field of ``header``."""
    for field, value in zip(header.fields, values):
        if isinstance(value, bool) or int(value) != value or not 0 <= int(value) < 1 << (8 * field.size):
            raise ValueError(f"{header.name} field {field.name} must be an integer in "
                             f"0..{(1 << (8 * field.size)) - 1}, got {value!r}")


def encode_load_fmap(channels: int, height: int, width: int, bits: int, offset: int, codes) -> bytes:
    """LOAD_FMAP payload carrying ``codes`` (flat: channel-major, row-major) from ``offset``
    of a ``channels x height x width`` map of ``bits``-bit codes."""
    codes = np.asarray(codes).ravel()
    values = (channels, height, width, bits, offset, codes.size)
    _check_fields(LOAD_FMAP_FIELDS, values)
    return LOAD_FMAP_FIELDS.pack(*values) + pack_codes(codes, bits)


def decode_load_fmap_header(payload: bytes) -> LoadFmap:
    """Fields of a LOAD_FMAP payload (``len(payload) >= LOAD_FMAP_HEADER``); no validation."""
    return LoadFmap(*LOAD_FMAP_FIELDS.unpack(payload), bytes(payload[LOAD_FMAP_HEADER:]))


def encode_window(window: Window) -> bytes:
    """The window header (:data:`WINDOW_FIELDS`) of ``window``: any values that fit the
    fields (a core checks the rest, :meth:`Window.problems`)."""
    _check_fields(WINDOW_FIELDS, window.fields())
    return WINDOW_FIELDS.pack(*window.fields())


def decode_window(data) -> Window:
    """The :class:`Window` of a window header (``len(data) >= WINDOW_HEADER``); no validation."""
    return Window(*WINDOW_FIELDS.unpack(data))


def _window_of(flags: int, data: bytes) -> Window | None:
    return decode_window(data) if flags & FLAG_WINDOW and len(data) >= WINDOW_HEADER else None


def encode_run_window(count: int, bits: int, signed: bool, window: Window, *, activate: bool = False,
                      packed: bool = False) -> bytes:
    """RUN payload with the window flag: ``count`` vectors made on the core from its
    feature map under ``window`` (:mod:`sw.contract.window`); ``activate``: reply codes;
    ``packed``: reply accumulators bit-packed."""
    flags = _run_flags(signed, activate, packed) | FLAG_WINDOW
    _check_fields(RUN_FIELDS, (count, bits, flags))
    return RUN_FIELDS.pack(count, bits, flags) + encode_window(window)


def encode_load_matrix_window(rows: int, cols: int, bits: int, signed: bool, window: Window) -> bytes:
    """LOAD_MATRIX payload with the window flag: the ``rows x cols`` matrix made on the
    core from its feature map, row ``r`` being vector ``r`` of ``window``."""
    values = (rows, cols, bits, _flags(signed) | FLAG_WINDOW, 0, rows * cols)
    _check_fields(LOAD_FIELDS, values)
    return LOAD_FIELDS.pack(*values) + encode_window(window)


def encode_accumulate_window(count: int, bits: int, signed: bool, window: Window, *, slot: int, mantissa: int,
                             shift: int, first: bool) -> bytes:
    """ACCUMULATE payload with the window flag: ``count`` vectors made on the core from
    its feature map under ``window``, their products into the sums from ``slot``
    (as :func:`encode_accumulate`)."""
    flags = _flags(signed) | (FLAG_FIRST if first else 0) | FLAG_WINDOW
    values = (count, bits, flags, slot, mantissa, shift)
    _check_fields(ACCUMULATE_FIELDS, values)
    return ACCUMULATE_FIELDS.pack(*values) + encode_window(window)


@dataclass(frozen=True)
class ReadSums:
    """A READ_SUMS request."""
    slot: int
    count: int
    width: int


def encode_read_sums(slot: int, count: int, width: int) -> bytes:
    """READ_SUMS payload: ``count`` sums from ``slot``, ``width`` bytes each (:data:`SUM_FLOAT32`:
    binary32 patterns)."""
    return READ_SUMS_FIELDS.pack(slot, count, width)


def decode_read_sums(payload: bytes) -> ReadSums:
    """Fields of a READ_SUMS payload (``len(payload) >= READ_SUMS_HEADER``); no validation."""
    return ReadSums(*READ_SUMS_FIELDS.unpack(payload))


def encode_sums(sums, width: int) -> bytes:
    """READ_SUMS reply payload: the width byte, then each of ``sums`` (Python ints)
    as its low ``width`` bytes, two's complement little-endian, or for ``width``
    :data:`SUM_FLOAT32` as its 4-byte :func:`~sw.contract.gradients.sum_float_bits`
    pattern, little-endian."""
    if width == SUM_FLOAT32:
        return SUMS_REPLY_FIELDS.pack(width) + b"".join(
            sum_float_bits(v).to_bytes(FLOAT_SUM_BYTES, "little") for v in sums)
    mask = (1 << (8 * width)) - 1
    return SUMS_REPLY_FIELDS.pack(width) + b"".join((int(v) & mask).to_bytes(width, "little") for v in sums)


def decode_sums(payload: bytes, count: int, width: int) -> list[int]:
    """The ``count`` sums of a READ_SUMS reply (Python ints): sign-extended from ``width``
    bytes, or for ``width`` :data:`SUM_FLOAT32` each ``truncate_sum(S)`` from its binary32
    pattern (:func:`~sw.contract.gradients.sum_from_float_bits`; a pattern no sum has, as
    NaN, is a :class:`FramingError`)."""
    got = SUMS_REPLY_FIELDS.unpack(payload)[0] if len(payload) >= SUMS_REPLY_HEADER else None
    if got != width:
        raise FramingError(f"READ_SUMS reply states {got}-byte sums, expected {width}")
    size = sums_reply_size(count, width)
    if len(payload) != size:
        raise FramingError(f"READ_SUMS reply has {len(payload)} payload bytes, expected {size} "
                           f"(1 + {count} sums x {sum_bytes(width)} bytes)")
    body = payload[SUMS_REPLY_HEADER:]
    if width == SUM_FLOAT32:
        patterns = [int.from_bytes(body[i:i + FLOAT_SUM_BYTES], "little")
                    for i in range(0, len(body), FLOAT_SUM_BYTES)]
        try:
            return [sum_from_float_bits(p) for p in patterns]
        except ValueError as e:
            raise FramingError(f"READ_SUMS reply: {e}") from None
    return [int.from_bytes(body[i:i + width], "little", signed=True) for i in range(0, len(body), width)]


def encode_error(command: int, detail: int = 0) -> bytes:
    return ERROR_FIELDS.pack(int(command) & 0xFF, int(detail) & 0xFF)


def decode_error(status: int, payload: bytes, command: int) -> CoreError:
    """The :class:`CoreError` an error reply stands for."""
    if len(payload) == ERROR_PAYLOAD:
        return CoreError(status, payload[0], payload[1])
    return CoreError(status, command, 0, f"core answered {_name(_enum_or_int(Status, status))} to "
                                         f"{command_name(command)} with a malformed "
                                         f"{len(payload)}-byte error payload")
