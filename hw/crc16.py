"""CRC-16/CCITT-FALSE of the host link, from :mod:`amaranth.lib.crc`.

Not a unit: the CRC parameters the frame receiver (:mod:`hw.frame_rx`) and
transmitter (:mod:`hw.frame_tx`) share, one byte per cycle
(``data_width = 8``).  The algorithm is the catalogue's
:data:`amaranth.lib.crc.catalog.CRC16_CCITT_FALSE`; importing this module
checks that it has the contract's parameters (:mod:`sw.contract.link`:
polynomial ``0x1021``, init ``0xFFFF``, no reflection, no final xor), the
ones the host's ``binascii`` CRC is tested against.

A :class:`amaranth.lib.crc.Processor` (:func:`crc16_processor`) registers the
CRC: ``crc`` holds the CRC of the bytes given with ``valid`` since the last
``start``, one cycle after the last of them.
"""

from amaranth.lib import crc
from amaranth.lib.crc import catalog

from sw.contract import link as L

__all__ = ["CRC16", "crc16_processor"]

_ALGORITHM = catalog.CRC16_CCITT_FALSE
_CONTRACT = dict(crc_width=L.CRC_WIDTH, polynomial=L.CRC_POLY, initial_crc=L.CRC_INIT,
                 reflect_input=L.CRC_REFLECT_INPUT, reflect_output=L.CRC_REFLECT_OUTPUT,
                 xor_output=L.CRC_XOR_OUTPUT)
_MISMATCH = {name: (getattr(_ALGORITHM, name), want) for name, want in _CONTRACT.items()
             if getattr(_ALGORITHM, name) != want}
if _MISMATCH:  # pragma: no cover - a different amaranth
    raise ImportError(f"amaranth.lib.crc.catalog.CRC16_CCITT_FALSE differs from the link's CRC: {_MISMATCH}")

#: The link's CRC over bytes (:class:`amaranth.lib.crc.Parameters`).
CRC16 = _ALGORITHM(data_width=8)


def crc16_processor() -> crc.Processor:
    """A fresh byte-at-a-time CRC-16 generator (``start``, ``data``, ``valid`` in; ``crc`` out)."""
    return CRC16.create()
