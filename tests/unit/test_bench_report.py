"""docs/benchmarks.md keeps every bench program's section: running one rewrites only its own
(the shadow bench once wrote over the intake section and then appended itself a second time)."""

from __future__ import annotations

from pathlib import Path

from bench.report import marked_sections, write_section


def test_each_program_rewrites_only_its_own_section(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nthe head\n")
    write_section(page, "intake", ["## Order intake", "2,964 accepted/s"])
    write_section(page, "shadow", ["## Shadow reads", "p50 1.08x"])
    write_section(page, "shadow", ["## Shadow reads", "p50 1.05x"])
    write_section(page, "intake", ["## Order intake", "3,100 accepted/s"])
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nthe head\n")
    sections = marked_sections(text)
    assert [s.splitlines()[1] for s in sections] == ["## Order intake", "## Shadow reads"]
    assert "3,100 accepted/s" in sections[0]
    assert "2,964" not in text
    assert "p50 1.05x" in sections[1]
    assert "1.08x" not in text


def test_the_head_program_keeps_the_sections_it_finds(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    write_section(page, "intake", ["## Order intake"])
    write_section(page, "shadow", ["## Shadow reads"])
    kept = marked_sections(page.read_text())
    page.write_text("\n".join(["# Benchmarks", "new head", *("\n" + s for s in kept)]) + "\n")
    assert marked_sections(page.read_text()) == kept
