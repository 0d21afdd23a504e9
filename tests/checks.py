"""Checks shared by the tests: a command line's one-line error, a PNG figure."""

import struct
from pathlib import Path

from sw.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fails(capsys, argv, *patterns):
    """``dorefa argv`` exits with status 2 and one line on stderr (no traceback) holding every
    pattern; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for pattern in patterns:
        assert pattern in lines[0], lines[0]
    return lines[0]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, after checking it is a plausible, complete PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    assert data.endswith(b"IEND\xaeB`\x82"), f"{path} is truncated"
    assert len(data) > 5000, f"{path}: only {len(data)} bytes"
    width, height = struct.unpack(">II", data[16:24])
    assert 200 <= width <= 5000 and 200 <= height <= 5000, (width, height)
    return width, height


def assert_training_step_matches_intref(engine, *, width: float = 1.0) -> None:
    """One digits training step (W,A,G = 1,2,6, batch 8, seeded) with ``engine`` gives
    every parameter the integer reference's gradient, exactly."""
    import copy

    import torch
    import torch.nn.functional as F

    from sw.intref import IntRefEngine
    from sw.models import digits_cnn
    from sw.quantizers import GradientNoise

    torch.manual_seed(5)
    reference = digits_cnn((1, 2, 6), width=width)
    on_engine = copy.deepcopy(reference)
    reference.set_engine(IntRefEngine())
    on_engine.set_engine(engine)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for model in (reference, on_engine):
        model.set_gradient_noise(GradientNoise(seed=3))
        F.cross_entropy(model(x), y).backward()
    for (name, p), q in zip(reference.named_parameters(), on_engine.parameters()):
        assert p.grad is not None and torch.equal(p.grad, q.grad), name
