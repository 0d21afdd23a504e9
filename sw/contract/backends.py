"""Where a model's integer products run: the names of ``--backend``.

The host (:mod:`sw.backends` builds the engines), the simulator
(:mod:`sim.transports` opens the simulated cores) and the command line agree
on these names; none of them imports another for them.
"""

__all__ = ["BACKENDS", "SIM_BACKENDS", "SERIAL_PREFIX"]

#: The backends that run a simulated core, opened by :func:`sim.transports.open_transport`.
SIM_BACKENDS = ("sim", "sim:amaranth")

#: ``serial:DEVICE``: a core on a serial port.
SERIAL_PREFIX = "serial:"

#: Every backend, as the command line lists them.
BACKENDS = ("torch", "ref", "model", f"{SERIAL_PREFIX}DEVICE", *SIM_BACKENDS)
