"""``serial:/dev/pts/N`` against the gateware: sim.pty_bridge.PtyBridge."""

import time

import numpy as np
import pytest

from hw.core import TrainingCore
from sim.core_transport import AmaranthCoreTransport
from sim.pty_bridge import PtyBridge
from sw.core_model import CoreModel
from sw.driver import CoreClient, LoopbackTransport, SerialTransport
from sw.protocol import CoreInfo, LinkError, PROTOCOL_VERSION

SMALL = dict(max_rows=6, max_cols=12, max_bits=8, pe=2, simd=4, max_payload=64, max_act_bits=3)


@pytest.fixture
def bridge():
    served = PtyBridge(AmaranthCoreTransport(TrainingCore(**SMALL, idle_timeout=3000), max_cycles=4096,
                                             slice_cycles=64))
    yield served
    served.close()


def test_serial_gemm_over_the_bridge_equals_core_model(bridge):
    rng = np.random.default_rng(3)
    model = CoreClient(LoopbackTransport(CoreModel(**SMALL)))
    with SerialTransport(bridge.device, 115200, timeout=5.0) as transport:
        client = CoreClient(transport, timeout=5.0)
        assert client.ping() == CoreInfo(PROTOCOL_VERSION, **SMALL)
        v, m = rng.integers(0, 4, (5, 20)), rng.integers(0, 8, (9, 20))
        np.testing.assert_array_equal(client.matmul(v, 2, False, m, 3, True), model.matmul(v, 2, False, m, 3, True))
        assert client.stats["bad_frames"] == 0


def test_closed_bridge_raises_link_error_within_timeout(bridge):
    with SerialTransport(bridge.device, 115200, timeout=0.5) as transport:
        client = CoreClient(transport, timeout=0.5, recovery=0.0)
        client.ping()
        bridge.close()
        t = time.monotonic()
        with pytest.raises(LinkError):
            client.ping()
            client.ping()
        assert time.monotonic() - t < 2.5
