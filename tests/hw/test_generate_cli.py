# amaranth: UnusedElaboratable=no
"""``dorefa generate``: Verilog files from the command line, with clear errors."""

import pytest

from sw.cli import main


def test_generate_writes_linted_verilog(tmp_path, capsys):
    out = tmp_path / "rtl" / "threshold.v"
    status = main(["generate", "threshold", "--bits", "3", "--set", "channels=4", "--set", "variant=search",
                   "-o", str(out), "--lint"])
    assert status == 0
    text = out.read_text()
    assert "module dorefa_threshold" in text
    assert "act_bits=3" in capsys.readouterr().out


def test_generate_top_name(tmp_path):
    out = tmp_path / "pc.v"
    assert main(["generate", "popcount", "--width", "100", "--top", "my_popcount", "-o", str(out)]) == 0
    assert "module my_popcount" in out.read_text()


def test_generate_core_bits_means_widest(tmp_path, capsys):
    out = tmp_path / "core.v"
    assert main(["generate", "core", "--bits", "1,2,4", "--pe", "2", "--simd", "4", "-o", str(out)]) == 0
    assert "max_bits=4, pe=2, simd=4" in capsys.readouterr().out
    assert "module dorefa_core" in out.read_text()


def test_list_names_every_unit(capsys):
    assert main(["generate", "--list"]) == 0
    listing = capsys.readouterr().out
    for unit in ("popcount", "dot_product", "mac_array", "threshold", "maxpool", "gradient_quantizer", "prng",
                 "uart_rx", "uart_tx", "core", "uart_core"):
        assert f"{unit}:" in listing
    assert "--bits -> max_bits (widest of N or W,A,G)" in listing
    assert "--board BOARD" in listing


@pytest.mark.parametrize("argv, message", [
    (["generate", "adder", "-o", "x.v"], "unknown unit 'adder'; allowed: popcount"),
    (["generate", "threshold"], "-o FILE.v"),
    (["generate"], "name a unit"),
    (["generate", "threshold", "--bits", "9", "-o", "x.v"], "1..8"),
    (["generate", "maxpool", "--set", "kernel=0", "-o", "x.v"], "kernel"),
    (["generate", "prng", "--set", "seed=0", "-o", "x.v"], "seed"),
    (["generate", "threshold", "--set", "colour=red", "-o", "x.v"], "no parameter 'colour'"),
    (["generate", "threshold", "--pe", "2", "-o", "x.v"], "--pe does not apply to threshold"),
    (["generate", "core", "--bits", "1,2,4", "--max-bits", "8", "-o", "x.v"], "disagree on max_bits"),
    # --board is for the core only; refused before the boards package is looked at
    (["generate", "popcount", "--board", "icebreaker", "-o", "x.v"],
     "--board applies only to the training core: dorefa generate core --board icebreaker (got unit 'popcount')"),
])
def test_bad_requests_exit_2_with_a_clear_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.v").exists()
