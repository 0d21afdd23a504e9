# amaranth: UnusedElaboratable=no
"""Hardware in the loop: the host driver against the Verilator-built core, over a real tty.

:class:`sim.verilator_bridge.VerilatorBridge` serves :class:`hw.core.TrainingCore`
(the ``sim`` backend's parameters, so every test shares one Verilator
build) on a pseudo-terminal; the host opens it with
:class:`sw.driver.SerialTransport`, exactly as a board's USB-UART.  Checked:
GEMMs equal :func:`sw.bitplanes.signed_matmul` and the activation stage's
codes count the thresholds passed; a checkpoint's inference with thresholds
on the core equals the float model; a short training run on
``--backend sim`` is bit-identical to ``--backend ref``; and malformed
frames, a bad CRC, a corrupted reply, a reset in mid-transfer and a dropped
link each give a clear error on the host, after which the same core
answers correctly, and a training run that fails this way leaves its
checkpoint intact and resumes to the uninterrupted run's exact weights.
"""

import hashlib
import re
import struct

import numpy as np
import pytest
import torch

from sim.verilator_bridge import CocotbBridge, VerilatorBridge
from sw import protocol as P
from sw import driver
from sim.transports import SIM_CORE
from sw.bitplanes import signed_matmul
from sw.cli import main
from sw.driver import CoreClient, SerialTransport

TIMEOUT_S = 2.0  # the simulated core answers in milliseconds

#: A short training run: 1 step of 8 samples per epoch, a quarter-width digits net.
TRAIN_ARGS = ["--bits", "1,2,4", "--width", "0.25", "--batch-size", "8", "--train-limit", "8",
              "--test-limit", "8", "--seed", "3", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def bridge():
    with VerilatorBridge(SIM_CORE) as served:
        yield served


class FaultyTransport(SerialTransport):
    """A serial transport whose next write or read can be tampered with.

    ``on_write(transport, frame)`` replaces the next write (it may write a
    part, act on the bridge, write the rest); ``flip_read = n`` flips the
    low bit of the ``n``-th byte read from now on."""

    def __init__(self, device):
        super().__init__(device, timeout=TIMEOUT_S)
        self.on_write = None
        self.flip_read = None

    def write(self, data):
        hook, self.on_write = self.on_write, None
        if hook is None:
            super().write(data)
        else:
            hook(super(), bytes(data))

    def read(self, size, timeout):
        data = super().read(size, timeout)
        if self.flip_read is not None and self.flip_read < len(data):
            data = data[:self.flip_read] + bytes([data[self.flip_read] ^ 1]) + data[self.flip_read + 1:]
            self.flip_read = None
        elif self.flip_read is not None:
            self.flip_read -= len(data)
        return data


@pytest.fixture
def client(bridge):
    transport = FaultyTransport(bridge.device)
    yield CoreClient(transport, timeout=TIMEOUT_S)
    transport.close()


def random_gemm(rng, n, k, o, v_bits, m_bits):
    return rng.integers(0, 1 << v_bits, (n, k)), rng.integers(0, 1 << m_bits, (o, k))


def check_gemm(client, rng, n=5, k=40, o=9, v_bits=2, v_signed=False, m_bits=1, m_signed=True):
    vectors, matrix = random_gemm(rng, n, k, o, v_bits, m_bits)
    got = client.matmul(vectors, v_bits, v_signed, matrix, m_bits, m_signed)
    want = signed_matmul(vectors, None if not v_signed else (1 << v_bits) - 1, v_bits,
                         matrix, None if not m_signed else (1 << m_bits) - 1, m_bits)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n, k, o, v_bits, v_signed, m_bits, m_signed", [
    (7, 300, 40, 2, False, 1, True),    # tiled: more columns and rows than the core holds
    (3, 256, 32, 8, True, 8, True),     # the widest codes, one full tile
    (20, 9, 5, 4, False, 3, False),     # unsigned on both sides, several RUN frames
])
def test_gemm_over_the_tty_equals_signed_matmul(client, n, k, o, v_bits, v_signed, m_bits, m_signed):
    assert client.ping() == P.CoreInfo(P.PROTOCOL_VERSION, **{k_: SIM_CORE[k_] for k_ in (
        "max_bits", "pe", "simd", "max_rows", "max_cols", "max_payload", "max_act_bits", "sum_slots", "sum_bits",
        "fmap_codes", "packed_accumulators", "max_pool")})
    check_gemm(client, np.random.default_rng(n), n, k, o, v_bits, v_signed, m_bits, m_signed)
    assert client.stats["bad_frames"] == client.stats["stale_replies"] == 0


@pytest.mark.parametrize("n, k, o, v_bits, m_bits, act_bits", [
    (9, 256, 40, 2, 1, 2),   # a full column tile, two row tiles
    (30, 100, 7, 4, 3, 4),   # the widest activation codes, several RUN frames
    (5, 33, 12, 1, 1, 1),
])
def test_activations_over_the_tty_count_the_thresholds_passed(client, n, k, o, v_bits, m_bits, act_bits):
    rng = np.random.default_rng(k)
    vectors, matrix = random_gemm(rng, n, k, o, v_bits, m_bits)
    acc = signed_matmul(vectors, None, v_bits, matrix, (1 << m_bits) - 1, m_bits)
    levels = (1 << act_bits) - 1
    thresholds = np.sort(rng.integers(acc.min() - 1, acc.max() + 2, (o, levels)), axis=1)
    direction = np.where(np.arange(o) % 3 == 1, -1, 1)
    thresholds[direction < 0] = thresholds[direction < 0, ::-1]
    thresholds[0, 0], thresholds[-1, -1] = 2**31 - 1, -(2**31)  # int32 extremes
    got = client.activations(vectors, v_bits, False, matrix, m_bits, True, thresholds, direction, act_bits)
    passed = np.where(direction[None, :, None] > 0, acc[:, :, None] >= thresholds[None],
                      acc[:, :, None] <= thresholds[None])
    np.testing.assert_array_equal(got, passed.sum(axis=2))
    assert len(np.unique(got)) > min(2, act_bits)  # not constant; more than two levels when there are


def test_batch_weight_sum_over_the_tty_is_the_contracts(client):
    """A conv layer's backward-weight, summed over a batch of 5 on the simulated board's sums
    (ACCUMULATE, READ_SUMS over the tty; scales 2**20 apart), equals the contract's batch sum
    of the integer reference's per-sample products truncated to 24 significant bits (READ_SUMS
    in binary32, sw.contract.gradients.truncate_sum), limb for limb."""
    from sw import numeric
    from sw.core_engine import CoreEngine
    from sw.intref import IntRefEngine
    from sw.products import ConvGeometry
    from sw.quantizers import Quantized

    rng = np.random.default_rng(5)
    x = Quantized(torch.from_numpy(rng.integers(0, 4, (5, 3, 6, 6))), torch.tensor(1.0), 2, False)
    scale = torch.tensor([0.5, 3e-7, 1.25, 0.0, 7.0], dtype=torch.float32)
    g = Quantized(torch.from_numpy(rng.integers(0, 64, (5, 4, 6, 6))), scale, 6, True)
    geometry, shape = ConvGeometry(stride=1, padding=1), (4, 3, 3, 3)
    engine = CoreEngine(client)
    hi, lo, top = engine.backward_weight_sum(geometry, x, g, shape)
    assert engine.stats["core_sums"] == 1
    want = numeric.aligned_batch_sum(IntRefEngine().backward_weight(geometry, x, g, shape), scale)
    from sw.contract.gradients import truncate_sum
    assert top == want[2]
    assert [(h << 32) + l for h, l in zip(hi.ravel().tolist(), lo.ravel().tolist())] == [
        truncate_sum((h << 32) + l) for h, l in zip(want[0].ravel().tolist(), want[1].ravel().tolist())]


def _flip_payload_bit(port, frame):
    port.write(frame[:6] + bytes([frame[6] ^ 0x10]) + frame[7:])


def _length_beyond_max(port, frame):
    port.write(frame[:3] + struct.pack("<H", SIM_CORE["max_payload"] + 1))  # answered at once


def _unknown_command(port, frame):
    body = bytes([0x7E]) + frame[2:-2]
    port.write(bytes([P.SYNC]) + body + struct.pack(">H", P.crc16(body)))


@pytest.mark.parametrize("tamper, error, pattern", [
    (_flip_payload_bit, P.CoreError, r"BAD_CRC to LOAD_MATRIX.*corrupted"),
    (_length_beyond_max, P.CoreError, r"BAD_LENGTH"),
    (_unknown_command, P.CoreError, r"BAD_COMMAND to 0x7e"),
    (lambda port, frame: port.write(frame[:len(frame) // 2]), P.LinkTimeout, r"no reply to LOAD_MATRIX"),
])
def test_malformed_request_is_a_clear_error_and_the_core_recovers(client, tamper, error, pattern):
    rng = np.random.default_rng(1)
    check_gemm(client, rng)
    client.transport.on_write = tamper
    with pytest.raises(error, match=pattern):
        client.load_matrix(rng.integers(0, 2, (4, 20)), 1, True)
    check_gemm(client, rng)  # after a lost reply the client waits for the core's idle timeout first


def test_corrupted_reply_is_a_framing_error_and_the_link_recovers(client):
    rng = np.random.default_rng(2)
    client.transport.flip_read = 7  # in the PING reply's payload: its CRC fails
    with pytest.raises(P.FramingError, match=r"no valid reply to PING.*corrupt frame"):
        client.ping()
    check_gemm(client, rng)


def test_reset_in_mid_request_is_a_clear_error_and_the_core_recovers(bridge, client):
    rng = np.random.default_rng(3)
    check_gemm(client, rng)

    def reset_halfway(port, frame):
        port.write(frame[:len(frame) // 2])
        bridge.reset_core()  # after the core has taken the first half
        port.write(frame[len(frame) // 2:])

    client.transport.on_write = reset_halfway
    with pytest.raises(P.LinkTimeout, match=r"no reply to LOAD_MATRIX"):
        client.load_matrix(rng.integers(0, 2, (8, 100)), 1, True)
    check_gemm(client, rng)


def test_reset_while_a_run_executes_loses_the_matrix_clearly(bridge, client):
    rng = np.random.default_rng(4)
    vectors, matrix = random_gemm(rng, 8, 200, 32, 2, 1)
    client.load_matrix(matrix, 1, True)

    def reset_after(port, frame):
        bridge.pause()  # the clock stands still until the reset: however fast the core, the
        port.write(frame)  # whole RUN is taken first and the reset lands while it executes
        bridge.reset_core()

    client.transport.on_write = reset_after
    with pytest.raises(P.LinkTimeout, match=r"no reply to RUN"):
        client.run(vectors, 2, False)
    with pytest.raises(P.CoreError, match=r"NO_MATRIX.*reset"):
        client.run(vectors, 2, False)
    check_gemm(client, rng)


def test_dropped_link_is_a_clear_error_and_a_new_link_works(bridge):
    rng = np.random.default_rng(5)
    transport = FaultyTransport(bridge.device)
    client = CoreClient(transport, timeout=TIMEOUT_S)
    check_gemm(client, rng)

    def drop_halfway(port, frame):
        port.write(frame[:len(frame) // 2])
        bridge.drop_link()
        port.write(frame[len(frame) // 2:])

    transport.on_write = drop_halfway
    with pytest.raises(P.LinkError, match=re.escape(bridge.device) + r".*device gone"):
        client.load_matrix(rng.integers(0, 2, (8, 100)), 1, True)
    transport.close()
    fresh = CoreClient(SerialTransport(bridge.reconnect(), timeout=TIMEOUT_S), timeout=TIMEOUT_S)
    try:
        check_gemm(fresh, rng)  # the half request was dropped by the core's idle timeout
    finally:
        fresh.close()


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


#: Two whole epochs of a limited digits set on the simulated core: 8 steps of 8 samples each,
#: every product of every step on the core, and each epoch's evaluation on its activation stage.
EPOCH_ARGS = ["--bits", "1,2,4", "--width", "0.25", "--batch-size", "8", "--train-limit", "64",
              "--test-limit", "32", "--seed", "3", "--no-progress", "--threads", "1", "--epochs", "2"]


def test_training_on_the_simulated_core_is_bit_identical_to_ref(tmp_path, capsys):
    assert main(["train", *EPOCH_ARGS, "--out", str(tmp_path / "ref"), "--backend", "ref"]) == 0
    ref_out = capsys.readouterr().out
    assert main(["train", *EPOCH_ARGS, "--out", str(tmp_path / "sim"), "--backend", "sim"]) == 0
    sim_out = capsys.readouterr().out
    assert re.search(r"epoch 2/2: .* samples/s", sim_out)
    _assert_same_weights(_weights(tmp_path / "ref"), _weights(tmp_path / "sim"))
    # The same losses and accuracies, evaluation included (float eval on ref, thresholds on the core).
    accuracies = re.compile(r"train loss (\S+) acc (\S+), test acc (\S+)")
    assert accuracies.findall(sim_out) == accuracies.findall(ref_out) != []


def test_the_bridge_counts_the_cycles_and_bytes_it_simulates(bridge):
    """Exact accounting: the bytes the core took and sent are the bytes the host wrote and read,
    and the cycles are at least what the GEMM's compute needs (its lower bound by formula)."""
    from hw.core import TrainingCore

    before = bridge.stats()
    client = CoreClient(SerialTransport(bridge.device, timeout=TIMEOUT_S))
    try:
        rows, cols, n, m_bits, v_bits = 32, 144, 64, 1, 2
        check_gemm(client, np.random.default_rng(11), n, cols, rows, v_bits, False, m_bits, True)
        after = bridge.stats()
        assert after["bytes_in"] - before["bytes_in"] == client.stats["bytes_out"] > 0
        assert after["bytes_out"] - before["bytes_out"] == client.stats["bytes_in"] > 0
        compute = TrainingCore(**SIM_CORE).run_cycles(n, rows, cols, m_bits, v_bits)
        assert after["cycles"] - before["cycles"] >= compute + client.stats["bytes_out"]
        assert after["simulating_s"] > before["simulating_s"]
    finally:
        client.close()


def test_inference_with_thresholds_on_the_simulated_core_is_bit_exact(tmp_path, capsys):
    assert main(["train", *TRAIN_ARGS, "--epochs", "1", "--out", str(tmp_path), "--backend", "ref"]) == 0
    capsys.readouterr()
    assert main(["infer", str(tmp_path / "checkpoint.pt"), "--backend", "sim", "--limit", "16"]) == 0
    out = capsys.readouterr().out
    assert "16 test samples" in out and "bit-exact" in out
    assert re.search(r"on the core's activation stage for 4 layer products, on the host for 0", out)


def test_link_failure_in_training_keeps_the_checkpoint_and_resume_is_exact(bridge, tmp_path, capsys,
                                                                           monkeypatch):
    """Epoch 2's 5th request is cut in half by a pulled cable: exit status 2
    with the error, epoch 1's checkpoint untouched; resumed on a new link,
    the run ends with the uninterrupted run's weights."""
    run = tmp_path / "hil"
    saved = {}

    class PulledCable(SerialTransport):
        writes_after_checkpoint = 0

        def write(self, data):
            checkpoint = run / "checkpoint.pt"
            if checkpoint.exists():
                saved.setdefault("sha", hashlib.sha256(checkpoint.read_bytes()).hexdigest())
                PulledCable.writes_after_checkpoint += 1
                if PulledCable.writes_after_checkpoint == 5:
                    super().write(data[:len(data) // 2])
                    bridge.drop_link()
                    data = data[len(data) // 2:]
            super().write(data)

    monkeypatch.setattr(driver, "SerialTransport", PulledCable)
    args = ["train", *TRAIN_ARGS, "--epochs", "2", "--out", str(run)]
    assert main([*args, "--backend", f"serial:{bridge.device}"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"error: .*device gone", err) and "Traceback" not in err
    assert hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest() == saved["sha"]

    monkeypatch.setattr(driver, "SerialTransport", SerialTransport)
    assert main([*args, "--resume", "--backend", f"serial:{bridge.reconnect()}"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert main(["train", *TRAIN_ARGS, "--epochs", "2", "--out", str(tmp_path / "ref"), "--backend", "ref"]) == 0
    _assert_same_weights(_weights(tmp_path / "ref"), _weights(run))


def test_the_cocotb_bridge_runs_the_core_under_icarus():
    small = dict(max_rows=6, max_cols=12, max_bits=8, pe=2, simd=4, max_payload=64, max_act_bits=3)
    with CocotbBridge(small, simulator="icarus") as icarus:
        transport = FaultyTransport(icarus.device)
        client = CoreClient(transport, timeout=20.0)
        try:
            assert client.ping().max_rows == 6
            rng = np.random.default_rng(6)
            check_gemm(client, rng, 5, 20, 9, 3, True, 2, False)  # tiled both ways
            # Its control channel as the simulated board's: paused, then reset while a RUN executes.
            vectors, matrix = random_gemm(rng, 4, 12, 6, 2, 1)
            client.load_matrix(matrix, 1, True)

            def reset_after(port, frame):
                icarus.pause()
                port.write(frame)
                icarus.reset_core()

            transport.on_write = reset_after
            client.timeout = TIMEOUT_S
            with pytest.raises(P.LinkTimeout, match=r"no reply to RUN"):
                client.run(vectors, 2, False)
            client.timeout = 20.0
            with pytest.raises(P.CoreError, match=r"NO_MATRIX.*reset"):
                client.run(vectors, 2, False)
            assert icarus.stats()["cycles"] > 0
        finally:
            client.close()


def test_bad_bridge_parameters_are_refused_before_any_build():
    with pytest.raises(ValueError, match="simulator must be one of verilator, icarus"):
        CocotbBridge(SIM_CORE, simulator="xsim")
    with pytest.raises(ValueError, match="pe"):
        VerilatorBridge(dict(SIM_CORE, pe=0))
    with pytest.raises(ValueError, match="window"):
        CocotbBridge(SIM_CORE, window=0)
