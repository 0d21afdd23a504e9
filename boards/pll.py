"""PLL divider search for the boards' FPGAs, in pure Python (no Amaranth, no tools).

:func:`ice40_pll` finds the ``SB_PLL40_*`` settings (``DIVR``, ``DIVF``,
``DIVQ``, ``FILTER_RANGE``, simple feedback) the way ``icepll`` does, and
:func:`ecp5_pll` the ``EHXPLLL`` settings (``CLKI_DIV``, ``CLKFB_DIV``,
``CLKOP_DIV``, ``CLKOP_CPHASE``, feedback from ``CLKOP``) the way
``ecppll`` does, with one difference: both tools take the achievable output
*closest* to the one asked, these take the closest one **at or below** it
(a core that closes timing at the asked frequency then also closes at the
achieved one).  Frequencies are in Hz and computed exactly
(:class:`fractions.Fraction`); an asked frequency nothing can reach raises
``ValueError`` saying what was asked and what range is allowed.

iCE40 (iCE40 sysCLOCK PLL Design and Usage Guide, TN1251; icepll's limits)::

    f_pfd = f_in / (DIVR + 1)          10 .. 133 MHz   (DIVR 0..15)
    f_vco = f_pfd * (DIVF + 1)        533 .. 1066 MHz  (DIVF 0..127, simple feedback)
    f_out = f_vco / 2**DIVQ            16 .. 275 MHz   (DIVQ 1..6)
    FILTER_RANGE: 1 for f_pfd < 17 MHz, 2 < 26, 3 < 44, 4 < 66, 5 < 101, else 6

ECP5 (ECP5 sysCLOCK PLL/DLL Design and Usage Guide, TN1263; ecppll's limits)::

    f_pfd = f_in / CLKI_DIV             3.125 .. 400 MHz  (CLKI_DIV 1..128)
    f_out = f_pfd * CLKFB_DIV              10 .. 400 MHz  (CLKFB_DIV 1..80)
    f_vco = f_out * CLKOP_DIV             400 .. 800 MHz  (CLKOP_DIV 1..128)
    CLKOP_CPHASE: half a CLKOP period in VCO cycles (180 degrees, as Lattice's
    tools set it), truncated after ecppll's single-precision arithmetic
    (5, not 6, for CLKOP_DIV = 12)

Among settings that make the same frequency, the iCE40 search keeps the first
in icepll's loop order (DIVR, then DIVF, then DIVQ ascending) and the ECP5
search the one whose VCO is closest to 600 MHz, then the first in ecppll's
loop order (CLKI_DIV, CLKFB_DIV, CLKOP_DIV ascending), as the tools do.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from numbers import Real

__all__ = ["PLL", "ice40_pll", "ecp5_pll", "pll_for", "mhz", "ICE40_LIMITS", "ECP5_LIMITS"]

MHZ = 1_000_000

#: icepll's limits (MHz): input, phase detector, VCO, output.
ICE40_LIMITS = {"in": (10, 133), "pfd": (10, 133), "vco": (533, 1066), "out": (16, 275)}
#: ecppll's limits (MHz).
ECP5_LIMITS = {"in": (8, 400), "pfd": (Fraction(3125, 1000), 400), "vco": (400, 800), "out": (10, 400)}


def mhz(hz) -> str:
    """``hz`` in MHz for messages: ``12``, ``19.875``, ``33.333333`` (at most 6 decimals)."""
    value = float(Fraction(hz) / MHZ)
    if abs(value) >= 1e9:
        return f"{value:g}"
    return f"{value:.6f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class PLL:
    """One PLL setting: what it makes from what, and the primitive's parameters."""

    family: str             # "ice40" or "ecp5"
    primitive: str          # "SB_PLL40_PAD", "EHXPLLL"
    f_in: Fraction          # Hz, the reference clock
    f_asked: Fraction       # Hz, what was asked
    f_out: Fraction         # Hz, what the setting makes (<= f_asked)
    f_pfd: Fraction         # Hz, phase detector
    f_vco: Fraction         # Hz
    params: dict            # the primitive's divider parameters, name -> int

    @property
    def out_hz(self) -> float:
        return float(self.f_out)

    def to_json(self) -> dict:
        """The setting for a report: frequencies in MHz (floats) and the parameters."""
        return {"primitive": self.primitive, "in_mhz": float(self.f_in / MHZ),
                "asked_mhz": float(self.f_asked / MHZ), "achieved_mhz": float(self.f_out / MHZ),
                "pfd_mhz": float(self.f_pfd / MHZ), "vco_mhz": float(self.f_vco / MHZ),
                "params": dict(self.params)}


def _hz(name: str, value) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (Real, Fraction)):
        raise ValueError(f"{name} must be a frequency in Hz, got {value!r}")
    try:
        hz = Fraction(value)
    except (ValueError, OverflowError):  # nan, inf
        raise ValueError(f"{name} must be a finite frequency in Hz, got {value!r}") from None
    if hz <= 0:
        raise ValueError(f"{name} must be a positive frequency in Hz, got {value!r}")
    return hz


def _within(value: Fraction, limits) -> bool:
    low, high = limits
    return low * MHZ <= value <= high * MHZ


def _check_input(chip: str, f_in: Fraction, limits) -> None:
    if not _within(f_in, limits["in"]):
        low, high = limits["in"]
        raise ValueError(f"the {chip} PLL takes a {mhz(low * MHZ)}..{mhz(high * MHZ)} MHz reference clock, "
                         f"got {mhz(f_in)} MHz")


def _pick(chip: str, f_in: Fraction, f_asked: Fraction, candidates, limits):
    """The best candidate ``(f_out, rank, setting)`` at or below ``f_asked`` (lowest ``rank`` among the
    highest ``f_out``; the first such in order), or ``ValueError`` with the allowed range."""
    best = None
    lowest = highest = None
    for f_out, rank, setting in candidates:
        if not _within(f_out, limits["out"]):
            continue
        lowest = f_out if lowest is None or f_out < lowest else lowest
        highest = f_out if highest is None or f_out > highest else highest
        if f_out <= f_asked and (best is None or (f_out, -rank) > (best[0], -best[1])):
            best = (f_out, rank, setting)
    if best is None or f_asked > limits["out"][1] * MHZ:
        top = limits["out"][1] * MHZ
        at_most = f", at most {mhz(highest)} MHz" if highest != top else ""
        raise ValueError(f"the {chip} PLL cannot make {mhz(f_asked)} MHz from the {mhz(f_in)} MHz clock; "
                         f"allowed: {mhz(lowest)}..{mhz(top)} MHz (it makes the highest frequency it can "
                         f"at or below the one asked{at_most})")
    return best


def ice40_pll(f_in, f_asked) -> PLL:
    """``SB_PLL40_PAD`` settings (simple feedback) making the highest frequency ``<= f_asked`` Hz from ``f_in`` Hz."""
    f_in, f_asked = _hz("the reference clock", f_in), _hz("the asked frequency", f_asked)
    limits = ICE40_LIMITS
    _check_input("iCE40", f_in, limits)

    def candidates():
        for divr in range(16):
            f_pfd = f_in / (divr + 1)
            if not _within(f_pfd, limits["pfd"]):
                continue
            for divf in range(128):
                f_vco = f_pfd * (divf + 1)
                if not _within(f_vco, limits["vco"]):
                    continue
                for divq in range(1, 7):
                    yield f_vco / 2 ** divq, 0, (divr, divf, divq)

    f_out, _, (divr, divf, divq) = _pick("iCE40", f_in, f_asked, candidates(), limits)
    f_pfd = f_in / (divr + 1)
    pfd_mhz = f_pfd / MHZ
    filter_range = next((i for i, top in enumerate((17, 26, 44, 66, 101), 1) if pfd_mhz < top), 6)
    return PLL("ice40", "SB_PLL40_PAD", f_in, f_asked, f_out, f_pfd, f_pfd * (divf + 1),
               {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range})


def _f32(x: float) -> float:
    """``x`` rounded to IEEE single precision (a C ``float``)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _ecppll_cphase(f_in: Fraction, clki_div: int, clkfb_div: int, clkop_div: int) -> int:
    """``CLKOP_CPHASE`` as ecppll computes it, in its C ``float`` / ``double`` arithmetic."""
    f_pfd = _f32(_f32(float(f_in / MHZ)) / clki_div)
    f_vco = _f32(_f32(f_pfd * clkfb_div) * clkop_div)
    f_out = _f32(f_vco / clkop_div)
    ns_phase = _f32(1 / (f_out * 1e6) * 0.5)
    return int(ns_phase * (f_vco * 1e6))


def ecp5_pll(f_in, f_asked) -> PLL:
    """``EHXPLLL`` settings (feedback from CLKOP) making the highest frequency ``<= f_asked`` Hz from ``f_in`` Hz."""
    f_in, f_asked = _hz("the reference clock", f_in), _hz("the asked frequency", f_asked)
    limits = ECP5_LIMITS
    _check_input("ECP5", f_in, limits)
    centre = 600 * MHZ

    def candidates():
        for clki_div in range(1, 129):
            f_pfd = f_in / clki_div
            if not _within(f_pfd, limits["pfd"]):
                continue
            for clkfb_div in range(1, 81):
                f_out = f_pfd * clkfb_div
                # the CLKOP_DIV that put the VCO in range, ascending (ecppll tries all 1..128)
                low, high = (limit * MHZ / f_out for limit in limits["vco"])
                for clkop_div in range(max(1, math.ceil(low)), min(128, math.floor(high)) + 1):
                    f_vco = f_out * clkop_div
                    yield f_out, abs(f_vco - centre), (clki_div, clkfb_div, clkop_div)

    f_out, _, (clki_div, clkfb_div, clkop_div) = _pick("ECP5", f_in, f_asked, candidates(), limits)
    return PLL("ecp5", "EHXPLLL", f_in, f_asked, f_out, f_in / clki_div, f_out * clkop_div,
               {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
                "CLKOP_CPHASE": _ecppll_cphase(f_in, clki_div, clkfb_div, clkop_div)})


_SEARCH = {"ice40": ice40_pll, "ecp5": ecp5_pll}


def pll_for(family: str, f_in, f_asked) -> PLL:
    """The PLL setting of FPGA ``family`` ("ice40", "ecp5") for ``f_asked`` Hz from ``f_in`` Hz."""
    if family not in _SEARCH:
        raise ValueError(f"no PLL search for FPGA family {family!r}; allowed: {', '.join(_SEARCH)}")
    return _SEARCH[family](f_in, f_asked)
