"""What every benchmark does with its result: ``STEM.json`` and ``STEM.md`` beside each other."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["write_report"]


def write_report(stem: Path, result: dict, text: str) -> None:
    """Write ``result`` to ``STEM.json`` and its table ``text`` to ``STEM.md`` (creating
    ``STEM``'s folder), and print the table."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_name(stem.name + ".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_name(stem.name + ".md").write_text(text)
    print(text, end="")
