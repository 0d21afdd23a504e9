"""Skid buffer: a full-rate register slice for a stream, every port registered.

A plain pipeline register passes the downstream ``ready`` combinationally
back upstream (``i.ready = o.ready | ~o.valid``).  This one does not: its
``i.ready`` is a flip-flop (low only while its skid register holds a
payload), as are ``o.valid`` and ``o.payload``, so the slice cuts every
path through a handshake, in both directions.  Two payload registers: the
output one, and the skid one, which catches the payload accepted in the
cycle ``o.ready`` fell (``i.ready`` was already promised high)::

    i --+--> [out] --> o
        |      ^
        +--> [skid]      (out loads from skid first once o is taken)
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """A two-register stream slice with registered ``ready``, ``valid`` and payload.

    Parameters
    ----------
    shape : shape-castable
        The streams' payload shape.

    Ports
    -----
    i : ``In(stream.Signature(shape))``
        Input stream; ``i.ready`` comes straight from a flip-flop (high
        unless the skid register is full).
    o : ``Out(stream.Signature(shape))``
        Output stream; ``o.valid`` and ``o.payload`` come straight from
        flip-flops.  ``o.ready`` drives only register enables.
    clear : ``In(1)``
        Drop what is held (both registers); nothing is taken on ``i``.

    Latency and throughput
    ----------------------
    One cycle from ``i`` to ``o``; a transfer per cycle while ``o.ready``
    stays high, in any pattern of ``i.valid`` and ``o.ready`` (no bubble,
    never a payload lost, reordered or duplicated).  ``empty`` is high when
    it holds nothing (neither register).
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "clear": In(1),
            "empty": Out(1),
        })

    shape = property(lambda self: self._shape)

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal.like(self.o.payload)
        m.d.comb += [
            self.i.ready.eq(~skid_valid),
            self.empty.eq(~self.o.valid & ~skid_valid),
        ]
        take = self.i.valid & ~skid_valid
        with m.If(self.clear):
            m.d.sync += [self.o.valid.eq(0), skid_valid.eq(0)]
        with m.Elif(~self.o.valid | self.o.ready):  # the output register loads
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(take):  # output stalled: the payload promised a place goes to the skid
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
