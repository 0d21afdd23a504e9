"""Where a model's integer products run: the names of ``--backend``, and the serial line's rate.

The host (:mod:`sw.backends` builds the engines), the simulator
(:mod:`sim.transports` opens the simulated cores) and the command line agree
on these names; none of them imports another for them.

A core on a serial port is ``serial:DEVICE`` or ``serial:DEVICE@BAUD``
(:func:`parse_serial`: the one place that reads it), e.g.
``serial:/dev/ttyUSB1@3000000``; without ``@BAUD`` the line runs at
:data:`DEFAULT_BAUD`.  The board builds (``dorefa build --baud``) take the
same rates, and both ends hold to :data:`BAUD_TOLERANCE`.
"""

__all__ = ["BACKENDS", "SIM_BACKENDS", "SERIAL_PREFIX", "DEFAULT_BAUD", "FALLBACK_BAUD", "BAUD_RANGE",
           "BAUD_TOLERANCE", "baud_error", "check_baud", "parse_serial"]

#: The backends that run a simulated core, opened by :func:`sim.transports.open_transport`.
SIM_BACKENDS = ("sim", "sim:amaranth")

#: ``serial:DEVICE[@BAUD]``: a core on a serial port.
SERIAL_PREFIX = "serial:"

#: Every backend, as the command line lists them.
BACKENDS = ("torch", "ref", "model", f"{SERIAL_PREFIX}DEVICE[@BAUD]", *SIM_BACKENDS)

#: The serial line's rate, bits per second, when none is given: 3 Mbaud, the fastest
#: both boards' USB-UARTs run reliably (the iCEBreaker's FT2232H and the ULX3S's
#: FT231X, which tops out there).  Both make it exactly (12 MHz / 4 and 48 MHz / 16).
DEFAULT_BAUD = 3_000_000

#: The slow preset (``dorefa build --baud 115200``, ``serial:DEVICE@115200``): any USB-UART, any cable.
FALLBACK_BAUD = 115_200

#: Rates a host link or a board build may ask for (bits per second).
BAUD_RANGE = (300, 12_000_000)

#: The largest relative difference between two ends' bit rates this project accepts,
#: ``|a - b| / b``: the core's rate against the one asked (``dorefa build --baud``; the
#: divisor is a whole number of core clock cycles) and against the host's (after PING).
#:
#: Why 2.5 %: an 8N1 receiver times the whole frame from the start bit's falling edge
#: and samples the stop bit 9.5 bit times after it, so a rate error ``e`` moves that
#: sample by ``9.5 e`` bits, which must stay under half a bit less the receiver's own
#: sampling uncertainty.  The core's receiver (:class:`hw.uart.UARTReceiver`) samples
#: ``divisor // 2`` to ``divisor // 2 + 1`` cycles into each bit: at the 9 cycles per
#: bit of 3 Mbaud on a 27 MHz core that is up to 0.5 / 9 = 0.056 bit off the middle,
#: leaving ``(0.5 - 0.056) / 9.5 = 4.7 %`` on a perfect line.  Half of it, rounded
#: down, goes to the rate error: the other half is for the edges' distortion on the
#: cable and the USB-UART's own sampling of the core's replies.
BAUD_TOLERANCE = 0.025


def baud_error(actual, wanted) -> float:
    """``|actual - wanted| / wanted``: the relative error of rate ``actual`` against ``wanted``."""
    return abs(actual - wanted) / wanted


def check_baud(baud, what: str = "baud rate") -> int:
    """``baud`` as an int, or ``ValueError`` (one line: what was wrong, what is allowed)
    unless it is a whole number of bits per second in :data:`BAUD_RANGE` (a decimal
    string is read as one)."""
    lo, hi = BAUD_RANGE
    value = baud
    if isinstance(baud, str):
        text = baud.strip()
        value = int(text) if text.isascii() and text.isdigit() else None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{what} must be a whole number of bits per second in {lo}..{hi} "
                         f"(e.g. {DEFAULT_BAUD}, or {FALLBACK_BAUD} the fallback), got {baud!r}")
    return value


def parse_serial(spec: str) -> tuple[str, int]:
    """``(device, baud)`` of ``serial:DEVICE`` (:data:`DEFAULT_BAUD`) or ``serial:DEVICE@BAUD``.

    ``ValueError`` (one line) for a spec without the prefix or a device, or a
    rate that :func:`check_baud` refuses.  The rate follows the last ``@``.
    """
    if not isinstance(spec, str) or not spec.startswith(SERIAL_PREFIX):
        raise ValueError(f"a serial backend is {SERIAL_PREFIX}DEVICE or {SERIAL_PREFIX}DEVICE@BAUD, got {spec!r}")
    rest = spec[len(SERIAL_PREFIX):]
    device, at, rate = rest.rpartition("@")
    if not at:
        device, rate = rest, None
    if not device:
        raise ValueError(f"{spec!r} names no device: use {SERIAL_PREFIX}DEVICE or {SERIAL_PREFIX}DEVICE@BAUD, "
                         f"e.g. {SERIAL_PREFIX}/dev/ttyUSB1@{DEFAULT_BAUD}")
    if rate is None:
        return device, DEFAULT_BAUD
    return device, check_baud(rate, f"the baud rate after '@' in {spec!r}")
