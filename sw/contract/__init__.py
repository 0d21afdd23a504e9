"""The contract: what the gateware (:mod:`hw`) and the host (:mod:`sw`) must agree on.

Plain standard-library modules, no numpy, torch or amaranth, so that both
sides import them and they import neither:

* :mod:`sw.contract.codes`: code widths, ``levels``;
* :mod:`sw.contract.prng`: the xorshift32 noise generator's constants;
* :mod:`sw.contract.link`: the host link: frames, sizes, timeouts, commands,
  statuses, flag bits, the CRC's parameters and the header field tables from
  which the host's ``struct`` codecs and the gateware's ``lib.data`` layouts
  are both built;
* :mod:`sw.contract.core`: the training core's configuration, its validation
  (a list of problems, never a host exception) and its defaults;
* :mod:`sw.contract.gradients`: the batch sum of weight gradients as exact
  integers (scales split into significand and exponent, aligned, summed);
* :mod:`sw.contract.backends`: the names of the training backends.

Every constant and formula here is defined once; everything else imports it.
"""
