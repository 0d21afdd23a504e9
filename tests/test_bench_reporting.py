"""bench/reporting.py: the report files every benchmark writes."""

import json

from bench.reporting import write_report


def test_write_report_writes_json_and_table_and_prints_the_table(tmp_path, capsys):
    stem = tmp_path / "new" / "folder" / "core_x"  # folders made as needed
    result = {"cycles": 123, "nested": {"ratio": 0.5}}
    write_report(stem, result, "| a | b |\n")
    assert json.loads((tmp_path / "new" / "folder" / "core_x.json").read_text()) == result
    assert (tmp_path / "new" / "folder" / "core_x.md").read_text() == "| a | b |\n"
    assert capsys.readouterr().out == "| a | b |\n"
    # A stem with a dot keeps it: core_x.v2 -> core_x.v2.json (not core_x.json)
    write_report(tmp_path / "core_x.v2", {}, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["core_x.v2.json", "core_x.v2.md", "new"]
