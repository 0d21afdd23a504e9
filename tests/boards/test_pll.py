"""boards.pll: the PLL divider search against icepll / ecppll results and hand-derived settings.

Expected values come from the tools' published output or are worked out by hand
from the chips' formulas (see boards/pll.py's docstring), never from the search:

iCE40:  f_out = f_in * (DIVF + 1) / (DIVR + 1) / 2**DIVQ, PFD 10..133, VCO 533..1066, out 16..275 MHz
ECP5:   f_out = f_in / CLKI_DIV * CLKFB_DIV, VCO = f_out * CLKOP_DIV 400..800, PFD >= 3.125 MHz
"""

from fractions import Fraction

import pytest

from boards.pll import ecp5_pll, ice40_pll, pll_for

MHZ = 1_000_000


@pytest.mark.parametrize("f_in, asked, achieved, divr, divf, divq, filter_range", [
    # icepll -i 12 -o 48: DIVR 0, DIVF 63, DIVQ 4, FILTER_RANGE 1 (12 * 64 / 16)
    (12, 48, 48, 0, 63, 4, 1),
    # icepll's default, -i 12 -o 60: 12 * 80 / 16
    (12, 60, 60, 0, 79, 4, 1),
    # 12 MHz, at most 20: DIVR must be 0 (12 / 2 = 6 < 10 MHz PFD); VCO 12 * (DIVF + 1) in 533..1066
    # needs DIVF + 1 in 45..88.  DIVQ 4 makes >= 33.75, DIVQ 6 <= 16.5; DIVQ 5: 12 * k / 32 <= 20
    # gives k = 53, 19.875 MHz (the iCEBreaker's default).
    (12, 20, Fraction(159, 8), 0, 52, 5, 1),
    # at most 20.2: still 19.875 (k = 54 makes 20.25, which icepll would pick as the closest)
    (12, Fraction(202, 10), Fraction(159, 8), 0, 52, 5, 1),
    # 24 MHz, 48: DIVR 0 (PFD 24, FILTER_RANGE 2 for 17 <= PFD < 26), DIVF + 1 in 23..44,
    # 24 * k / 2**q = 48 -> k = 2**(q + 1) = 32, DIVQ 4
    (24, 48, 48, 0, 31, 4, 2),
    # 100 MHz, 100: DIVR 0 comes first (PFD 100: FILTER_RANGE 5, 66 <= PFD < 101), k in 6..10,
    # k = 2**q -> 8, DIVQ 3 (DIVR 1 would make it too, with k = 16)
    (100, 100, 100, 0, 7, 3, 5),
    # 12 MHz, lowest: DIVQ 6, 12 * k / 64 >= 16 -> k = 86, 16.125 MHz
    (12, Fraction(16125, 1000), Fraction(16125, 1000), 0, 85, 6, 1),
])
def test_ice40_settings(f_in, asked, achieved, divr, divf, divq, filter_range):
    pll = ice40_pll(f_in * MHZ, asked * MHZ)
    assert pll.params == {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range}
    assert pll.f_out == achieved * MHZ
    assert pll.primitive == "SB_PLL40_PAD" and pll.family == "ice40"
    assert pll.f_asked == Fraction(asked) * MHZ and pll.f_in == f_in * MHZ
    assert pll.f_pfd == Fraction(f_in * MHZ, divr + 1)
    assert pll.f_vco == pll.f_pfd * (divf + 1)


@pytest.mark.parametrize("f_in, asked, achieved, clki, clkfb, clkop, cphase", [
    # ecppll -i 25 -o 50 (what ULX3S designs carry): CLKI_DIV 1, CLKFB_DIV 2, CLKOP_DIV 12 (VCO 600),
    # CLKOP_CPHASE 5 (half of 12 in single precision, truncated)
    (25, 50, 50, 1, 2, 12, 5),
    # ecppll -i 25 -o 100: 1, 4, 6 (VCO 600), CLKOP_CPHASE 2
    (25, 100, 100, 1, 4, 6, 2),
    # 12 -> 48 (ecppll's table of Lattice's results): 1, 4, 12 (VCO 576; 624 with CLKOP_DIV 13 is as far
    # from 600 and comes later)
    (12, 48, 48, 1, 4, 12, None),
    # 25 MHz, at most 33.3: PFD >= 3.125 -> CLKI_DIV <= 8; the best 25 / d * k <= 33.3 is d = 7, k = 9,
    # 225 / 7 = 32.142857 MHz (d = 3, k = 4 makes 33.33: too high).  VCO in 400..800 -> CLKOP_DIV in
    # 13..24; closest to 600 MHz: 19 (610.7 MHz; 18 makes 578.6)
    (25, Fraction(333, 10), Fraction(225, 7), 7, 9, 19, None),
    # 25 MHz, lowest: 10 MHz (CLKI_DIV 5, CLKFB_DIV 2; CLKI_DIV 5 first: PFD 5, 5 * 2; VCO 600 with 60)
    (25, 10, 10, 5, 2, 60, None),
])
def test_ecp5_settings(f_in, asked, achieved, clki, clkfb, clkop, cphase):
    pll = ecp5_pll(f_in * MHZ, asked * MHZ)
    params = dict(pll.params)
    if cphase is None:
        params.pop("CLKOP_CPHASE")
        expected = {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop}
    else:
        expected = {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop, "CLKOP_CPHASE": cphase}
    assert params == expected
    assert pll.f_out == achieved * MHZ
    assert pll.f_vco == pll.f_out * clkop and pll.f_pfd == Fraction(f_in * MHZ, clki)
    assert pll.primitive == "EHXPLLL" and pll.family == "ecp5"


def _ice40_all(f_in):
    """Every iCE40 output within the limits, by the formula (an oracle written apart from the search)."""
    outs = set()
    for divr in range(16):
        for divf in range(128):
            for divq in range(1, 7):
                pfd = Fraction(f_in, divr + 1)
                vco = pfd * (divf + 1)
                out = vco / 2 ** divq
                if 10 * MHZ <= pfd <= 133 * MHZ and 533 * MHZ <= vco <= 1066 * MHZ and 16 * MHZ <= out <= 275 * MHZ:
                    outs.add(out)
    return outs


def test_ice40_takes_the_highest_at_or_below_what_was_asked():
    outs = sorted(_ice40_all(12 * MHZ))
    for asked in [Fraction(16125, 1000) * MHZ, 17 * MHZ, Fraction(333, 10) * MHZ, 36 * MHZ, 100 * MHZ,
                  Fraction(2701, 10) * MHZ, 275 * MHZ]:
        expected = max(out for out in outs if out <= asked)
        pll = ice40_pll(12 * MHZ, asked)
        assert pll.f_out == expected, asked
        p = pll.params
        assert pll.f_out == Fraction(12 * MHZ * (p["DIVF"] + 1), (p["DIVR"] + 1) * 2 ** p["DIVQ"])


@pytest.mark.parametrize("search, f_in, asked, message", [
    (ice40_pll, 12, 16, "the iCE40 PLL cannot make 16 MHz from the 12 MHz clock; allowed: 16.125..275 MHz"),
    (ice40_pll, 12, 300, "the iCE40 PLL cannot make 300 MHz from the 12 MHz clock; allowed: 16.125..275 MHz "
                         "(it makes the highest frequency it can at or below the one asked, at most 270 MHz)"),
    (ice40_pll, 8, 20, "the iCE40 PLL takes a 10..133 MHz reference clock, got 8 MHz"),
    (ecp5_pll, 25, Fraction(999, 100), "the ECP5 PLL cannot make 9.99 MHz from the 25 MHz clock; "
                                       "allowed: 10..400 MHz"),
    (ecp5_pll, 25, 401, "cannot make 401 MHz"),
    (ecp5_pll, 500, 50, "the ECP5 PLL takes a 8..400 MHz reference clock, got 500 MHz"),
    (ice40_pll, 12, 0, "the asked frequency must be a positive frequency in Hz, got 0"),
    (ecp5_pll, 25, -5, "must be a positive frequency"),
    (ecp5_pll, 25, float("nan"), "must be a finite frequency"),
    (ice40_pll, 12, "20", "must be a frequency in Hz, got '20'"),
])
def test_impossible_frequencies_say_what_is_allowed(search, f_in, asked, message):
    scale = MHZ if not isinstance(asked, str) else 1
    with pytest.raises(ValueError) as info:
        search(f_in * MHZ, asked * scale)
    assert message in str(info.value)


def test_pll_for_a_family():
    assert pll_for("ice40", 12e6, 48e6).params["DIVF"] == 63
    assert pll_for("ecp5", 25e6, 50e6).params["CLKOP_DIV"] == 12
    with pytest.raises(ValueError, match="no PLL search for FPGA family 'gowin'; allowed: ice40, ecp5"):
        pll_for("gowin", 27e6, 50e6)


def test_setting_for_a_report():
    assert ice40_pll(12e6, 20e6).to_json() == {
        "primitive": "SB_PLL40_PAD", "in_mhz": 12.0, "asked_mhz": 20.0, "achieved_mhz": 19.875,
        "pfd_mhz": 12.0, "vco_mhz": 636.0, "params": {"DIVR": 0, "DIVF": 52, "DIVQ": 5, "FILTER_RANGE": 1}}
