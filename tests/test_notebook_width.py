"""Every notebook's code and printed output fit in 80 columns.

At 1280 pixels the book's HTML shows about 84 characters of a code cell or an output before it
scrolls sideways; 80 leaves a margin. Checked: every line of code, and every line of text a cell
prints (stdout, stderr) or returns (``text/plain`` results, unless a figure or table is shown in
their place). Wide characters (CJK) count as two columns, as in a monospace font.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
WIDTH = 80


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A figure or a table is what the reader sees; its text/plain fallback is not shown.
RICHER = ("image/png", "image/svg+xml", "image/jpeg", "text/html", "text/markdown", "text/latex")


def columns(line: str) -> int:
    """Display width in a monospace font: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def printed_text(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type in ("execute_result", "display_data"):
        data = output.get("data", {})
        if "text/plain" in data and not any(kind in data for kind in RICHER):
            return data["text/plain"]
    if output.output_type == "error":
        return "\n".join(output.traceback)
    return ""


def long_lines(path: Path) -> list[str]:
    """``cell N, code|output: (width) line`` for every line over the limit."""
    found = []
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        texts = [("code", cell.source)] + [("output", printed_text(o)) for o in cell.outputs]
        for kind, text in texts:
            # A carriage return redraws the line (progress bars): each part is seen on its own.
            for line in re.split(r"\r\n|\r|\n", ANSI.sub("", text)):
                width = columns(line.expandtabs())
                if width > WIDTH:
                    found.append(f"cell {index}, {kind}: ({width}) {line[:100]}")
    return found


def test_columns_counts_what_a_monospace_font_shows() -> None:
    assert columns("x" * 80) == 80 and columns("게이트") == 6 and columns("σ(Wx)") == 5


def test_long_lines_finds_code_and_output(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("short = 1\n" + "y = " + "1 + " * 30 + "1")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="ok\n" + "-" * 81 + "\n"),
        nbformat.v4.new_output("display_data", data={"image/png": "", "text/plain": "x" * 99}),
    ]
    nb.cells.append(cell)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    found = long_lines(path)
    assert [f.split(":")[0] for f in found] == ["cell 0, code", "cell 0, output"]
    assert "(125)" in found[0] and "(81)" in found[1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_and_printed_output_fit_in_80_columns(path: Path) -> None:
    found = long_lines(path)
    assert not found, f"{path.name}: {len(found)} lines over {WIDTH} columns:\n" + "\n".join(
        found[:20]
    )
