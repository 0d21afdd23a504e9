"""The request scripts the core's benches share (``sw/core_scripts.py``)."""

import numpy as np
import pytest

from boards.top import CORE_PRESETS
from sw import protocol as P
from sw.contract.core import config_params
from sw.core_model import CoreModel
from sw.core_scripts import SUMS, bad_sums_requests, load_frames


@pytest.mark.parametrize("bits, chunk, tag", [(1, 1, 0), (6, 7, 200), (8, None, 255)])
def test_load_frames_carry_the_matrix_in_order(bits, chunk, tag):
    """Every code of a 32 x 256 matrix (a board preset's largest) arrives once, in order,
    in frames tagged ``tag``, ``tag + 1`` ... modulo 256: in chunks of one code that is
    8,192 frames, past the 256 values of a tag."""
    rng = np.random.default_rng(bits)
    matrix = rng.integers(0, 1 << bits, size=(32, 256))
    frames = load_frames(matrix, bits, True, chunk=chunk, tag=tag, max_payload=1024)
    events = P.FrameDecoder().feed(b"".join(frames))
    assert len(events) == len(frames)
    assert [e.tag for e in events] == [(tag + i) % 256 for i in range(len(frames))]
    loads = [P.decode_load_matrix_header(e.payload) for e in events]
    assert {(h.rows, h.cols, h.bits, h.signed) for h in loads} == {(32, 256, bits, True)}
    assert [h.offset for h in loads] == list(np.cumsum([0] + [h.count for h in loads[:-1]]))
    codes = np.concatenate([P.unpack_codes(h.data, bits, h.count) for h in loads])
    assert np.array_equal(codes, matrix.ravel())
    if chunk == 1:
        assert len(frames) == 32 * 256


@pytest.mark.parametrize("name", ["sums", "ulx3s"])
def test_bad_sums_requests_fit_a_frame_and_fail_as_named(name):
    """Every ACCUMULATE / READ_SUMS error request is one frame the core takes (within its
    ``max_payload``), and the count past the sums fails on the count, also on the ULX3S's
    16,384 sums, whose count past them has more codes than a frame carries."""
    params = SUMS if name == "sums" else CORE_PRESETS[name]
    model = CoreModel(**config_params(params))
    replies = {}
    for case, data in bad_sums_requests(params):
        (request,) = P.FrameDecoder().feed(data)
        assert len(request.payload) <= params["max_payload"], case
        (replies[case],) = P.FrameDecoder().feed(model.feed(data))
    past = replies["ACCUMULATE count past the sums"]
    assert (past.code, past.payload[1]) == (P.Status.BAD_PARAMS, P.Detail.COUNT)
    assert replies["ACCUMULATE signed|first (ok)"].code == P.Status.OK
