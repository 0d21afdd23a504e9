"""``--backend sim:amaranth``: the gateware in the Amaranth simulator gives the integer reference's products.

A whole training run on the simulated core takes minutes (its ~300 host
requests are ~10^6 simulated cycles), so the default test checks the three
products of one small quantized conv and one FC; the training run is ``slow``.
"""

import numpy as np
import pytest
import torch

from sim.transports import AMARANTH_SIM_TIMEOUT_S, open_transport
from sw.backends import BACKENDS, check_backend, make_engine
from sw.core_engine import CoreEngine
from sw.intref import IntRefEngine
from sw.products import ConvGeometry, LinearGeometry
from sw.quantizers import Quantized


def rand_q(rng, shape, bits, signed):
    return Quantized(torch.from_numpy(rng.integers(0, 1 << bits, shape)), torch.tensor(1.0), bits, signed)


@pytest.fixture(scope="module")
def sim_engine():
    engine = make_engine("sim:amaranth", open_transport=open_transport)
    yield engine
    engine.client.close()


def test_sim_is_a_backend():
    assert "sim" in BACKENDS and check_backend("sim") == "sim"


def test_sim_transports_open_only_simulated_cores():
    with pytest.raises(ValueError, match="no simulated core for backend 'model'; allowed: sim, sim:amaranth"):
        open_transport("model")


def test_the_client_waits_as_long_as_the_simulated_transport_says(sim_engine):
    assert sim_engine.client.timeout == AMARANTH_SIM_TIMEOUT_S


def test_sim_conv_products_equal_intref(sim_engine):
    assert isinstance(sim_engine, CoreEngine)
    b, c, h, o, k = 1, 2, 4, 3, 3
    w_bits, a_bits, g_bits = 1, 2, 6
    rng = np.random.default_rng(7)
    geometry = ConvGeometry(stride=1, padding=1)
    x = rand_q(rng, (b, c, h, h), a_bits, False)
    w = rand_q(rng, (o, c, k, k), w_bits, True)
    g = rand_q(rng, (b, o, h, h), g_bits, True)
    ref = IntRefEngine()
    for name, args in (("forward", (geometry, x, w)),
                       ("backward_input", (geometry, g, w, (b, c, h, h))),
                       ("backward_weight", (geometry, x, g, (o, c, k, k)))):
        got, expected = getattr(sim_engine, name)(*args), getattr(ref, name)(*args)
        assert got.dtype == torch.int64 and got.shape == expected.shape, name
        assert torch.equal(got, expected), name
    assert sim_engine.client.stats["bad_frames"] == 0


def test_sim_linear_products_equal_intref(sim_engine):
    rng = np.random.default_rng(8)
    geometry = LinearGeometry()
    x, w, g = rand_q(rng, (2, 20), 2, False), rand_q(rng, (5, 20), 3, True), rand_q(rng, (2, 5), 4, True)
    ref = IntRefEngine()
    for name, args in (("forward", (geometry, x, w)),
                       ("backward_input", (geometry, g, w, (2, 20))),
                       ("backward_weight", (geometry, x, g, (5, 20)))):
        assert torch.equal(getattr(sim_engine, name)(*args), getattr(ref, name)(*args)), name
