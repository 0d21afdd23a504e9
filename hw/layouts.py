"""``amaranth.lib.data`` layouts of the host link, built from the contract's
field tables (:mod:`sw.contract.link`), the same tables the host's ``struct``
codecs are built from.

A :class:`~sw.contract.link.Header`'s fields are little-endian and in order,
so the bytes of a header received least significant first, viewed as one
value, are exactly a :class:`~amaranth.lib.data.StructLayout` of its fields.
"""

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from sw.contract.link import FLAGS, Header

__all__ = ["header_layout", "header_view", "FLAGS_LAYOUT"]

#: A ``flags`` byte (LOAD_MATRIX, RUN): its named bits, the rest ``reserved``.
FLAGS_LAYOUT = data.StructLayout({
    **{name: unsigned(1) for name, _ in FLAGS},
    "reserved": unsigned(8 - len(FLAGS)),
})
assert [1 << FLAGS_LAYOUT[name].offset for name, _ in FLAGS] == [bit for _, bit in FLAGS]


def header_layout(header: Header, **fields) -> data.StructLayout:
    """The layout of ``header``: one field per table entry, ``8 * size`` bits, signed
    or not as the table says; ``fields`` replaces a field's shape by a layout of the
    same width (e.g. ``flags=FLAGS_LAYOUT``)."""
    members = {}
    for field in header.fields:
        shape = (signed if field.signed else unsigned)(8 * field.size)
        if field.name in fields:
            shape = fields[field.name]
            if Shape.cast(shape).width != 8 * field.size:
                raise ValueError(f"{header.name}.{field.name} is {8 * field.size} bits, not {shape!r}")
        members[field.name] = shape
    return data.StructLayout(members)


def header_view(head, fields: Header, offset: int = 0, **shapes) -> data.View:
    """The header ``fields`` at byte ``offset`` of a frame's leading payload bytes ``head``
    (an ``ArrayLayout`` of bytes: :func:`hw.frame_rx.event_layout`'s ``head``), viewed
    through :func:`header_layout` (``shapes`` as there)."""
    return header_layout(fields, **shapes)(head.as_value()[8 * offset:8 * (offset + fields.size)])
