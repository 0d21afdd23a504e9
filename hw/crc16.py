"""CRC-16/CCITT-FALSE of the host link (:mod:`sw.protocol`), one byte per cycle.

Not a unit but the one combinational function the frame receiver
(:mod:`hw.frame_rx`) and transmitter (:mod:`hw.frame_tx`) share: the
protocol's bit loop (:func:`sw.protocol.crc16_update`) unrolled::

    crc ^= byte << 8;  8 times: crc = (crc << 1) ^ (0x1021 if crc & 0x8000 else 0)

Polynomial ``0x1021``, init ``0xFFFF``, no reflection, no final xor.  Each
output bit is an XOR of at most a dozen input bits (a few LUT4 levels).
"""

from amaranth.hdl import Cat, Value

__all__ = ["CRC16_INIT", "CRC16_POLY", "crc16_next"]

CRC16_INIT = 0xFFFF
CRC16_POLY = 0x1021


def crc16_next(crc, byte) -> Value:
    """The 16-bit CRC after ``byte`` (8 bits) given ``crc`` (16 bits)."""
    crc = Value.cast(crc)
    byte = Value.cast(byte)
    if len(crc) != 16 or len(byte) != 8:
        raise ValueError(f"crc16_next takes a 16-bit crc and an 8-bit byte, got widths "
                         f"{len(crc)} and {len(byte)}")
    # Track each output bit as a set of input bits XORed together.
    state = [{("c", i)} for i in range(16)]
    for i in range(8):
        state[8 + i] = state[8 + i] ^ {("b", i)}
    for _ in range(8):
        top = state[15]
        state = [set()] + state[:15]
        for bit in range(16):
            if (CRC16_POLY >> bit) & 1:
                state[bit] = state[bit] ^ top
    sources = {"c": crc, "b": byte}

    def xor(terms):
        value = None
        for kind, index in sorted(terms):
            bit = sources[kind][index]
            value = bit if value is None else value ^ bit
        return value if value is not None else 0

    return Cat(*(xor(terms) for terms in state))
