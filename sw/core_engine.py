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

from . import numeric
from .driver import CoreClient
from .intref import GemmEngine, accumulator_bound

__all__ = ["CoreEngine"]


class CoreEngine(GemmEngine):
    """The three products of conv and FC layers as GEMMs on the core
    (the lowering of :class:`sw.intref.GemmEngine`)."""

    def __init__(self, client):
        self.client = client if isinstance(client, CoreClient) else CoreClient(client)
        #: Activated products: on the core's threshold stage, or thresholded on the host
        #: (a fan-in longer than the core's columns, or more activation bits than it has).
        #: Backward-weight batch sums: on the core's sums, or of per-sample products on the host.
        self.stats = {"core_thresholds": 0, "host_thresholds": 0, "core_sums": 0, "host_sums": 0}

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

    def transposed_backward_input(self, geometry, g, w, input_shape):
        """The lowering of a conv's backward-input with fewer bytes on this core's link:
        ``C*k*k`` sums per output position folded by the host (vectors: the gradient's
        ``O`` codes), or the transposed convolution's ``C`` per input position (vectors:
        ``O*k*k``-code patches)."""
        b, o, oh, ow = g.codes.shape
        _, c, h, wd = input_shape
        k = w.codes.shape[2]
        folded = self.client.matmul_bytes(b * oh * ow, o, c * k * k, g.bits, w.bits)
        transposed = self.client.matmul_bytes(b * h * wd, o * k * k, c, g.bits, w.bits)
        return transposed < folded

    def backward_weight_sum(self, geometry, x, g, weight_shape):
        """``(hi, lo, E)`` of the batch sum of weight gradients made on the core's sums
        (:meth:`sw.driver.CoreClient.batch_sums`), or ``None`` where the core cannot
        (no sums, a product longer than its columns, a sum wider than its sums hold)."""
        vectors, matrices = self.backward_weight_operands(geometry, x, g, weight_shape)
        batch, _, cols = vectors.shape
        bound = accumulator_bound(cols, x, g)
        if not self.client.can_batch_sum(batch, cols, bound):
            self.stats["host_sums"] += 1
            return None
        self.stats["core_sums"] += 1
        mantissa, shift, top = numeric.batch_shifts(g.scale)
        sums = self.client.batch_sums(vectors, x.bits, x.signed, matrices, g.bits, g.signed,
                                      mantissa.tolist(), shift.tolist())
        hi, lo = numeric.sum_limbs(sums.T.reshape(weight_shape))  # (N, O) -> the weight's (O, N)
        return hi, lo, top
