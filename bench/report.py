"""The sections of docs/benchmarks.md that one bench program owns.

``python -m bench`` writes the page's head; ``bench.intake`` and ``bench.shadow`` each own one
section between their markers (``<!-- intake: python -m bench.intake -->`` ... ``<!-- /intake -->``).
Running one program rewrites only its own section and keeps every other one.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["marked_sections", "write_section"]

_SECTION = re.compile(r"<!-- (\w+): python -m bench\.\1 -->\n.*?<!-- /\1 -->", re.DOTALL)


def _marks(name: str) -> tuple[str, str]:
    return f"<!-- {name}: python -m bench.{name} -->", f"<!-- /{name} -->"


def write_section(path: Path, name: str, lines: list[str]) -> str:
    """Put ``lines`` between ``name``'s markers in ``path`` (appended the first time); the text."""
    begin, end = _marks(name)
    section = "\n".join([begin, *lines, end])
    current = path.read_text() if path.exists() else ""
    if begin in current and end in current.split(begin, 1)[1]:
        before, rest = current.split(begin, 1)
        path.write_text(before + section + rest.split(end, 1)[1])
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + section + "\n")
    return section


def marked_sections(text: str) -> list[str]:
    """Every program's section in ``text``, in page order (``python -m bench`` keeps them)."""
    return [found.group(0) for found in _SECTION.finditer(text)]
