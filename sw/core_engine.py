"""The engine that runs a model's products on a training core.

:class:`CoreEngine` is the :class:`sw.products.Engine` protocol over a
:class:`sw.driver.CoreClient`: ``model.set_engine(CoreEngine(client))`` runs
the three training products of every quantized conv/FC as GEMMs on the core
(im2col on the host), giving the same int64 integers as
:class:`sw.intref.IntRefEngine`.  It is the torch side of the host driver;
the transports and the client (:mod:`sw.driver`) need no torch.
"""

from __future__ import annotations

import numpy as np
import torch

from .driver import CoreClient
from .intref import GemmEngine

__all__ = ["CoreEngine"]


class CoreEngine(GemmEngine):
    """The three products of conv and FC layers as GEMMs on the core
    (the lowering of :class:`sw.intref.GemmEngine`)."""

    def __init__(self, client):
        self.client = client if isinstance(client, CoreClient) else CoreClient(client)
        #: Activated products: on the core's threshold stage, or thresholded on the host
        #: (a fan-in longer than the core's columns, or more activation bits than it has).
        self.stats = {"core_thresholds": 0, "host_thresholds": 0}

    def close(self) -> None:
        """Close the link to the core (idempotent)."""
        self.client.close()

    def matmul(self, a, a_codes, b, b_codes):
        # The rows of B are the matrix loaded into the core, the rows of A the vectors streamed.
        return self.client.matmul(np.ascontiguousarray(a_codes), a.bits, a.signed,
                                  np.ascontiguousarray(b_codes), b.bits, b.signed)

    def matmul_activate(self, a, a_codes, b, b_codes, unit):
        # On the core's activation stage when a row's whole sum fits one matrix;
        # otherwise the core's partial sums are added and thresholded here.
        if not self.client.can_activate(b_codes.shape[1], unit.act_bits):
            self.stats["host_thresholds"] += 1
            return super().matmul_activate(a, a_codes, b, b_codes, unit)
        self.stats["core_thresholds"] += 1
        return torch.from_numpy(self.client.activations(
            np.ascontiguousarray(a_codes), a.bits, a.signed, np.ascontiguousarray(b_codes), b.bits, b.signed,
            unit.thresholds, unit.direction, unit.act_bits))
