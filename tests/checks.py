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
